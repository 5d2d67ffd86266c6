"""The async-call queue contract: every accepted asynchronous call, until it is done.

Implementations: ``queue.sqlite.SqliteQueue`` (embedded, the default). A cluster
backend (NATS JetStream, PostgreSQL) implements the same protocol and passes the
same contract tests (``tests/contract/test_queue.py``).

Life of a call: ``enqueue`` (status ``queued``) -> ``lease`` (``running``) ->
one of ``complete`` (``succeeded``), ``retry`` (``failed``, due again at a
time), ``postpone`` (``queued`` again, no attempt used: throttled) or
``dead_letter`` (``dead``); ``redrive`` puts a dead call back to ``queued``.

Guarantees every queue gives:

1. ``enqueue`` returns only once the call is durable (committed to disk); a
   crash of the process at any later moment does not lose it.
2. At-least-once delivery: a leased call whose lease deadline passes without an
   ack (its worker died or hung) is leased again. ``recover`` gives back at once
   every lease of a consumer known to be dead (the embedded queue calls it for
   its previous process when it opens). Such a lost lease is not free: the
   next ``lease`` of the call records it as an attempt with outcome
   ``LeaseExpired`` (``LEASE_EXPIRED``), counted in ``retries_used`` like a
   crash, and says so (``Lease.lost``), so that a call whose attempts keep
   killing their worker uses up its retries instead of being leased forever.
   An ack ends a lease for good: ``postpone`` (given back unrun) costs nothing.
3. An ack (``complete``, ``retry``, ``postpone``, ``dead_letter``) takes the
   lease's token; a token whose lease was lost (expired and leased again, or
   recovered) raises ``errors.LeaseLost`` and changes nothing.
4. Per-key order: among calls of one function with the same ``ordering_key``,
   ``lease`` hands out only the oldest unfinished one (``queued``, ``running``
   or ``failed``), and so the others wait while it waits for a retry. A ``dead``
   call lets its key continue, unless it was dead-lettered with
   ``hold_key=True``: then the key waits until it is redriven or deleted.
   Calls without a key, and other keys, are not held back.
5. Idempotency: a second ``enqueue`` with the same (namespace, function,
   ``idempotency_key``) within ``IDEMPOTENCY_WINDOW_S`` of the first returns the
   first call's id and stores nothing.
6. ``lease`` returns due calls oldest first (by enqueue order, then due time).
7. A call may be enqueued already ``dead`` (``enqueue(call, dead=error)``): a
   call the platform decided not to make (a loop stopped by ``domain.chains``)
   is kept like any dead letter, to be read, redriven or deleted, but is never
   leased and holds no ordering key. Idempotency applies as to any enqueue.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal, Protocol

import msgspec

from wuzhao.errors import LeaseLost

__all__ = ["LeaseLost"]  # raised by every implementation's acks

IDEMPOTENCY_WINDOW_S = 24 * 3600.0
# The outcome of the attempt a lease recorded for the lease before it, lost without an ack
# (``errors.LeaseExpired``'s code).
LEASE_EXPIRED = "LeaseExpired"

Status = Literal["queued", "running", "succeeded", "failed", "dead"]
FINISHED: frozenset[str] = frozenset({"succeeded", "dead"})


class AsyncCall(msgspec.Struct, frozen=True):
    """One accepted asynchronous call, as the caller sent it."""

    id: str
    namespace: str
    function: str
    event: bytes
    enqueued_at: float
    qualifier: str | None = None  # "$LATEST", a version or an alias; resolved at each attempt
    ordering_key: str | None = None
    idempotency_key: str | None = None
    lease_s: float = 960.0  # how long one attempt may hold the call: above the function's timeout
    # Where it came from: its chain of calls (``domain.chains.Chain.to_origin``), and what made
    # it (a trigger's name...), for loop detection and for whoever reads it.
    origin: dict[str, Any] = msgspec.field(default_factory=dict)


class Attempt(msgspec.Struct, frozen=True):
    """One delivery of a call to the function, as it ended."""

    number: int  # 1, 2, ... in order of start
    started_at: float
    duration_ms: float
    outcome: str  # "success" or the error code (FunctionError, Timeout, OutOfMemory, LeaseExpired...)
    error: dict[str, Any] | None = None  # the error body ({"code", "message", ...})


class CallState(msgspec.Struct, frozen=True):
    """Where a call is now, with its history."""

    call: AsyncCall
    status: Status
    attempts: tuple[Attempt, ...]
    due_at: float  # when it may be leased next (queued / failed)
    updated_at: float
    result: bytes | None = None  # the function's answer once succeeded (capped by the caller)
    error: dict[str, Any] | None = None  # the last error, once failed or dead
    retries_used: int = 0  # attempts counted against max_retries since the last redrive
    hold_key: bool = False  # dead and holding its ordering key
    deliveries: int = 0  # leases handed out, acked or lost


class Lease(msgspec.Struct, frozen=True):
    call: AsyncCall
    token: str
    deadline: float
    retries_used: int  # attempts already consumed (0 on the first delivery)
    attempts: int  # attempts made so far (for numbering the next)
    deliveries: int = 1  # this lease's number among the call's leases, 1 for the first
    # The lease before this one was lost (expired or recovered, never acked): already recorded
    # as a LeaseExpired attempt and counted in ``retries_used`` and ``attempts``.
    lost: bool = False


class AsyncQueue(Protocol):
    async def open(self) -> None:
        """Make the queue usable; the embedded queue recovers its previous process's leases here."""

    async def close(self) -> None: ...

    async def enqueue(self, call: AsyncCall, *, dead: dict[str, Any] | None = None) -> tuple[str, bool]:
        """Store ``call`` durably. Returns (id, created): the first call's id and False
        for an idempotent repeat (guarantee 5).

        ``dead``: store it ``dead`` at once, with that error (``{"code", "message"}``), no
        attempt and no lease ever (guarantee 7)."""

    async def lease(
        self,
        now: float,
        limit: int,
        *,
        consumer: str,
        exclude: Collection[tuple[str, str]] = (),
        exclude_retries: Collection[tuple[str, str]] = (),
    ) -> list[Lease]:
        """Up to ``limit`` due calls, now ``running`` under ``consumer`` until ``now + call.lease_s``.

        ``exclude``: (namespace, function) pairs to leave alone for now (e.g. at
        capacity); ``exclude_retries``: pairs whose retries (calls with
        ``retries_used`` > 0 or attempts made) must wait, their first
        attempts not (the retry budget).
        """

    async def recover(self, consumer: str) -> int:
        """Give back every lease held by ``consumer`` (known dead); the number given back."""

    async def complete(self, token: str, attempt: Attempt, result: bytes | None) -> None: ...

    async def retry(self, token: str, attempt: Attempt, *, at: float) -> None:
        """The attempt failed and counts: ``failed``, due again at ``at``."""

    async def postpone(self, token: str, *, at: float) -> None:
        """Not run (throttled, shutting down): ``queued`` again, due at ``at``, no attempt used."""

    async def dead_letter(
        self,
        token: str,
        attempt: Attempt | None,
        *,
        hold_key: bool = False,
        error: dict[str, Any] | None = None,
    ) -> None:
        """Give up: ``dead``, kept for inspection (``attempt`` None: given up without running,
        e.g. the function was deleted or the event grew too old while throttled).

        ``error`` becomes the call's ``error``: why it died, for a call that died without an
        attempt saying so (``{"code": "EventAgeExceeded", "message": ...}``). None keeps the
        attempt's error, or without one the last error the call had.
        """

    async def get(self, call_id: str) -> CallState | None: ...

    async def dead_letters(
        self, namespace: str, function: str, *, limit: int = 100, after: str | None = None
    ) -> list[CallState]:
        """Dead calls of one function, oldest first; ``after`` is the last id of the previous page."""

    async def redrive(self, namespace: str, function: str, call_id: str, *, now: float) -> bool:
        """A dead call back to ``queued`` now, with its retries counted from zero (its attempts stay)."""

    async def delete_dead(self, namespace: str, function: str, call_id: str) -> bool: ...

    async def depth(self) -> dict[tuple[str, str], int]:
        """Unfinished calls (queued, running, failed) by (namespace, function)."""

    async def next_due(self) -> float | None:
        """The earliest ``due_at`` (or lease deadline) of an unfinished call; None when there is none."""

    async def purge(self, *, finished_before: float) -> int:
        """Forget succeeded calls (and idempotency keys) that finished before that time."""
