"""The instances of one executable (a function at one version), and who gets which.

Placement is decided by ``domain.instances.place_call``; this module only
carries the decision out. A retired pool (its function was updated or deleted)
takes no new calls: its idle instances stop at once and busy ones stop when
their call ends, so no instance ever serves two revisions.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from wuzhao.domain.instances import InstanceState, Placement, place_call
from wuzhao.domain.versions import Executable
from wuzhao.errors import Throttled
from wuzhao.worker.instance import Instance

# Starts and initialises a new instance for a call (the call's id is given so
# init output is attributed to it).
Starter = Callable[[Executable, str | None], Awaitable[Instance]]
Stopper = Callable[[Instance], None]


class Capacity(Protocol):
    """Room on the node for new instances (the worker: quotas and the memory budget)."""

    def admit(self, target: Executable) -> bool:
        """Make room for one more instance (stopping idle ones) and say whether it fits.

        Synchronous, so the caller counts the new instance before anyone else
        checks. Raises QuotaExceeded when the namespace's quota can never fit it.
        """

    async def wait(self, target: Executable, deadline: float) -> None:
        """Return when room may have been freed, or at the deadline (monotonic)."""


class PoolRetired(Exception):
    """The pool was retired while a call waited in it: look the function up again."""


class FunctionPool:
    def __init__(
        self,
        target: Executable,
        *,
        start: Starter,
        stop: Stopper,
        max_concurrency: int,
        capacity: Capacity | None = None,
        released: Callable[[], None] | None = None,
    ) -> None:
        self.target = target
        self._start = start
        self._stop = stop
        self._capacity = capacity
        self._released = released  # told whenever an instance is released or fails to start
        self._max = max_concurrency
        self.idle: list[Instance] = []  # most recently used last: reused first, stays warm
        self.busy: set[Instance] = set()
        self.starting = 0
        self.retired = False
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, invocation_id: str, *, wait_s: float) -> tuple[Instance, bool]:
        """An instance for one call, and whether it was a cold start."""
        if self._max == 0:
            raise Throttled(f"function {self.target.function!r} is disabled (max_concurrency is 0)")
        deadline = time.monotonic() + wait_s
        while True:
            if self.retired:
                raise PoolRetired()
            placement = place_call(
                idle=len(self.idle), active=len(self.busy) + self.starting, max_concurrency=self._max
            )
            if placement is Placement.REUSE:
                instance = self.idle.pop()
                instance.move(InstanceState.BUSY)
                self.busy.add(instance)
                return instance, False
            capacity = self._capacity
            if placement is Placement.START and capacity is not None and not capacity.admit(self.target):
                if time.monotonic() >= deadline:
                    raise Throttled(
                        f"the node has no memory free for another instance of {self.target.function!r} "
                        f"({self.target.config.memory_mb} MB); retry"
                    )
                await capacity.wait(self.target, deadline)
                continue  # look again: an instance of ours may have come free meanwhile
            if placement is Placement.START:
                self.starting += 1
                try:
                    instance = await self._start(self.target, invocation_id)
                finally:
                    self.starting -= 1
                    self._wake_one()
                    if self._released is not None:
                        self._released()
                instance.move(InstanceState.BUSY)
                self.busy.add(instance)
                return instance, True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Throttled(
                    f"function {self.target.function!r} is at its concurrency limit ({self._max}); retry"
                )
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def provision(self) -> None:
        """Start one instance with no call waiting (``min_instances``), if it fits now."""
        if self.retired or (self._capacity is not None and not self._capacity.admit(self.target)):
            return
        self.starting += 1
        try:
            instance = await self._start(self.target, None)
        finally:
            self.starting -= 1
            self._wake_one()
            if self._released is not None:
                self._released()
        if self.retired:
            self._stop(instance)
            return
        instance.move(InstanceState.IDLE)
        self.idle.append(instance)
        self._wake_one()

    def release(self, instance: Instance, *, healthy: bool) -> None:
        self.busy.discard(instance)
        if healthy and not self.retired:
            instance.move(InstanceState.IDLE)
            self.idle.append(instance)
        else:
            self._stop(instance)
        self._wake_one()
        if self._released is not None:
            self._released()

    def retire(self) -> None:
        self.retired = True
        idle, self.idle = self.idle, []
        for instance in idle:
            self._stop(instance)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def take_expired(self, ids: set[str]) -> list[Instance]:
        """Remove and return the idle instances named by ``ids``."""
        taken = [i for i in self.idle if i.id in ids]
        self.idle = [i for i in self.idle if i.id not in ids]
        return taken

    @property
    def empty(self) -> bool:
        return not (self.idle or self.busy or self.starting)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
