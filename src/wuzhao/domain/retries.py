"""What happens to an asynchronous call after an attempt, and which attempts may start.

Every decision is here, without I/O: the clock's value and the random draw for
the jitter are passed in. The dispatcher (``worker/dispatcher.py``) carries
them out on the queue.

- An attempt that reached the function and failed (the handler raised, timed
  out, ran out of memory, crashed, could not import) uses one of the function's
  ``max_retries``; the next one waits ``retry_delay_s``, then twice that, and so
  on, each jittered, so calls that failed together do not come back together.
- An attempt the platform did not run (throttled, over quota, shutting down)
  uses nothing: the call is postponed, for as long as the event is younger than
  ``max_event_age_s``.
- A call whose function is gone goes dead at once; so does one whose retries
  are used up or whose event grew too old.
- An attempt that never answered (its lease expired, or the server was killed
  during it) counts like a crash: the queue records it as a ``LeaseExpired``
  attempt when it leases the call again, and the call runs again only while
  retries are left, at once (the lease already made it wait), so a call that
  kills its worker every time ends dead instead of being leased forever. A
  kill -9 of the server costs each call it interrupted one retry, no more.
- A redriven call (an operator asked for it again) is exempt from the age
  limit: its retries count from zero, its age would not.
- The retry budget: the retries of one function may hold only a share of its
  concurrency at once, so a function that always fails does not grow the
  resources it uses when its retries come due; its backlog waits.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from wuzhao.domain.functions import FunctionConfig

JITTER = 0.2  # a delay is drawn from [d·(1-JITTER), d·(1+JITTER))
MAX_RETRY_DELAY_S = 6 * 3600.0  # the doubling stops here (the event's age limit is 6 h at most)
# A throttled call waits a tenth of its age, within these bounds: a short spike
# costs a second, a long overload is not hammered.
MIN_THROTTLE_DELAY_S = 1.0
MAX_THROTTLE_DELAY_S = 60.0
# How long an over-budget call waits, at least, when its function's speed is unknown.
MIN_SPREAD_S = 0.05
MAX_SPREAD_S = 60.0


class Kind(enum.StrEnum):
    """What an attempt's outcome means for its call."""

    FAILED = "failed"  # the function ran (or tried to start) and failed: uses a retry
    THROTTLED = "throttled"  # not run for capacity: postponed, uses nothing
    INTERRUPTED = "interrupted"  # not run, the server is stopping: due again at once
    GONE = "gone"  # the function (or its qualifier) no longer exists


# Error codes (errors.py) by kind; any other code counts as FAILED, so that an
# unexpected error can never make a call loop without using its retries.
_KINDS = {
    "Throttled": Kind.THROTTLED,
    "QuotaExceeded": Kind.THROTTLED,
    "ServiceUnavailable": Kind.INTERRUPTED,
    "NotFound": Kind.GONE,
}


def classify(code: str) -> Kind:
    return _KINDS.get(code, Kind.FAILED)


class Action(enum.StrEnum):
    RETRY = "retry"  # failed, due again at ``at``
    POSTPONE = "postpone"  # not run, due again at ``at``
    DEAD = "dead"


class Reason(enum.StrEnum):
    """Why a call went dead (the ``condition`` its destination record names)."""

    RETRIES_EXHAUSTED = "RetriesExhausted"
    EVENT_AGE_EXCEEDED = "EventAgeExceeded"
    FUNCTION_GONE = "FunctionNotFound"


@dataclass(frozen=True)
class Policy:
    """A function's retry settings (from its configuration)."""

    max_retries: int = 2
    retry_delay_s: float = 60.0
    max_event_age_s: float = 21_600.0
    hold_key: bool = False  # a dead call keeps its ordering key held

    @classmethod
    def of(cls, config: FunctionConfig) -> Policy:
        return cls(config.max_retries, config.retry_delay_s, config.max_event_age_s, config.ordering_hold)


@dataclass(frozen=True)
class Decision:
    action: Action
    at: float | None = None  # when the call is due again (RETRY, POSTPONE)
    reason: Reason | None = None  # why it is dead (DEAD)


@dataclass(frozen=True)
class Call:
    """What the decisions need to know about a call."""

    enqueued_at: float
    retries_used: int  # attempts that counted since the last redrive, before this one
    attempts: int  # attempts made before this one, redrives or not
    # Its last attempt never answered (lease lost): recorded as LeaseExpired, counted in both above.
    lost: bool = False

    @property
    def redriven(self) -> bool:
        # Only a redrive resets the count of retries used while keeping the attempts.
        return self.attempts > self.retries_used


def jittered(delay: float, draw: float) -> float:
    """``delay`` spread by ±JITTER; ``draw`` is uniform in [0, 1)."""
    return delay * (1 - JITTER + 2 * JITTER * draw)


def retry_delay(retry: int, base: float, draw: float) -> float:
    """The wait before retry number ``retry`` (1, 2, ...): base, 2·base, 4·base, ..., jittered."""
    doubled = base * 2.0 ** min(retry - 1, 32)
    return jittered(min(doubled, MAX_RETRY_DELAY_S), draw)


def throttle_delay(age: float, draw: float) -> float:
    """The wait of a call not run for capacity: a tenth of its age, bounded, jittered."""
    return jittered(min(MAX_THROTTLE_DELAY_S, max(MIN_THROTTLE_DELAY_S, age / 10)), draw)


def too_old(call: Call, policy: Policy, *, at: float) -> bool:
    """Would the event be over its age limit at ``at``? (Never for a redriven call.)"""
    return not call.redriven and at - call.enqueued_at > policy.max_event_age_s


def before_attempt(call: Call, policy: Policy, *, now: float) -> Decision | None:
    """A call just leased: None to run it, else what to do instead: it waited too long, or its
    last attempt was lost and that one used its last retry."""
    if call.lost and call.retries_used > policy.max_retries:
        return Decision(Action.DEAD, reason=Reason.RETRIES_EXHAUSTED)
    if too_old(call, policy, at=now):
        return Decision(Action.DEAD, reason=Reason.EVENT_AGE_EXCEEDED)
    return None


def after_failure(call: Call, policy: Policy, code: str, *, now: float, draw: float) -> Decision:
    """What to do with a call whose attempt ended with the error ``code``."""
    kind = classify(code)
    if kind is Kind.GONE:
        return Decision(Action.DEAD, reason=Reason.FUNCTION_GONE)
    if kind is Kind.INTERRUPTED:
        return Decision(Action.POSTPONE, at=now)  # due at once when the server is back
    if kind is Kind.THROTTLED:
        at = now + throttle_delay(now - call.enqueued_at, draw)
        if too_old(call, policy, at=at):
            return Decision(Action.DEAD, reason=Reason.EVENT_AGE_EXCEEDED)
        return Decision(Action.POSTPONE, at=at)
    used = call.retries_used + 1
    if used > policy.max_retries:
        return Decision(Action.DEAD, reason=Reason.RETRIES_EXHAUSTED)
    at = now + retry_delay(used, policy.retry_delay_s, draw)
    if too_old(call, policy, at=at):
        return Decision(Action.DEAD, reason=Reason.EVENT_AGE_EXCEEDED)
    return Decision(Action.RETRY, at=at)


# -- which leased calls may start now --


def retry_budget(max_concurrency: int, share: float) -> int:
    """Instances a function's retries may hold at once: ``share`` of its concurrency, at least one."""
    return max(1, math.floor(max_concurrency * share + 1e-9))


def may_start(*, retry: bool, running: int, running_retries: int, max_concurrency: int, budget: int) -> bool:
    """May one more attempt of a function start, with ``running`` of its attempts running
    (``running_retries`` of them retries)? First attempts are bounded by the function's
    concurrency, retries also by the retry budget."""
    if running >= max_concurrency:
        return False
    return not retry or running_retries < budget


def spread(position: int, slots: int, mean_duration_s: float, draw: float) -> float:
    """How long the ``position``-th (0, 1, ...) call that found no room waits before it is due again.

    Calls of one function are leased in batches; those beyond its room go back
    to the queue, each due about when a slot should be free for it (``slots``
    of them, each free every ``mean_duration_s``), so they are neither run over
    the limit nor leased again and again while the room is full.
    """
    turns = position // max(1, slots) + 1
    delay = min(MAX_SPREAD_S, max(MIN_SPREAD_S, turns * mean_duration_s))
    return jittered(delay, draw)
