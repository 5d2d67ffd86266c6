"""Instance states, the allowed transitions, and the pool's pure decisions."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class InstanceState(enum.StrEnum):
    STARTING = "starting"  # sandbox made, handler being imported
    IDLE = "idle"  # ready, waiting in its pool for a call
    BUSY = "busy"  # running exactly one call
    STOPPED = "stopped"  # killed and cleaned up; never serves again


TRANSITIONS: dict[InstanceState, frozenset[InstanceState]] = {
    # STARTING -> IDLE: a provisioned instance (min_instances) starts with no call waiting.
    InstanceState.STARTING: frozenset({InstanceState.BUSY, InstanceState.IDLE, InstanceState.STOPPED}),
    InstanceState.IDLE: frozenset({InstanceState.BUSY, InstanceState.STOPPED}),
    InstanceState.BUSY: frozenset({InstanceState.IDLE, InstanceState.STOPPED}),
    InstanceState.STOPPED: frozenset(),
}


def can_transition(current: InstanceState, new: InstanceState) -> bool:
    return new in TRANSITIONS[current]


class Placement(enum.StrEnum):
    REUSE = "reuse"  # hand the call a warm idle instance
    START = "start"  # start a new instance for the call (a cold start)
    WAIT = "wait"  # at the concurrency limit: wait for an instance to come free


def place_call(*, idle: int, active: int, max_concurrency: int) -> Placement:
    """Where a new call goes. ``active`` counts busy and starting instances.

    Warm instances always win: reusing one costs nothing, a cold start costs a
    sandbox. A new instance is started only while the function is under its limit.
    """
    if idle > 0:
        return Placement.REUSE
    if active < max_concurrency:
        return Placement.START
    return Placement.WAIT


@dataclass(frozen=True)
class IdleInstance:
    instance_id: str
    idle_since: float


def expired(
    instances: Iterable[IdleInstance], *, now: float, idle_timeout_s: float, surplus: int | None = None
) -> list[str]:
    """Ids of the idle instances that have been idle longer than the timeout.

    ``surplus`` caps how many may go (a function's live instances minus its
    ``min_instances``): the longest idle go first, the provisioned rest stays.
    """
    old = [i for i in instances if now - i.idle_since >= idle_timeout_s]
    if surplus is not None and len(old) > surplus:
        going = {i.instance_id for i in sorted(old, key=lambda i: i.idle_since)[: max(0, surplus)]}
        old = [i for i in old if i.instance_id in going]
    return [i.instance_id for i in old]


@dataclass(frozen=True)
class Candidate:
    """An idle instance that could be stopped to make room."""

    instance_id: str
    idle_since: float
    memory_mb: int


def evictions(idle: Iterable[Candidate], *, instances_over: int, memory_over_mb: int) -> list[str] | None:
    """Idle instances to stop, least recently used first, so a new one fits a budget.

    ``instances_over`` and ``memory_over_mb`` say by how much the budget would be
    exceeded with the new instance. Returns None when stopping every idle
    instance would still not be enough (the caller then refuses), else the
    shortest least-recently-used prefix that is enough ([] when nothing is over).
    """
    chosen: list[str] = []
    for candidate in sorted(idle, key=lambda c: c.idle_since):
        if instances_over <= 0 and memory_over_mb <= 0:
            break
        chosen.append(candidate.instance_id)
        instances_over -= 1
        memory_over_mb -= candidate.memory_mb
    if instances_over > 0 or memory_over_mb > 0:
        return None
    return chosen


def must_yield(
    usage_mb: Mapping[str, int], waiting: Iterable[str], *, namespace: str, need_mb: int, budget_mb: int
) -> bool:
    """Whether ``namespace`` must let others go first before growing by ``need_mb``.

    Fairness on a contended node: while another namespace has calls waiting for
    room, a namespace may grow only up to an equal share of the node's budget
    among the namespaces that hold or want instances. Without contention anyone
    may use the whole node.
    """
    others_waiting = {ns for ns in waiting if ns != namespace}
    if not others_waiting:
        return False
    contenders = {ns for ns, used in usage_mb.items() if used > 0} | others_waiting | {namespace}
    share = budget_mb // len(contenders)
    return usage_mb.get(namespace, 0) + need_mb > share
