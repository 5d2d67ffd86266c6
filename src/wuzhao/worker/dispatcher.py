"""The dispatcher: runs the queued asynchronous calls, each until it succeeds or goes dead.

One loop leases due calls from the queue (``queue/api.py``) and starts one
task per call, within ``async_concurrency`` in all. A task resolves the call's
qualifier, runs the attempt through ``Worker.invoke`` under the call's own id
(so the attempt's invocation record, log lines and request id are the call's),
asks ``domain.retries`` what comes next and acks: ``complete``, ``retry``,
``postpone`` or ``dead_letter``. A call finished for good may send its record
to a destination (``domain.destinations``), enqueued before the ack, under an
idempotency key, so that a crash between the two neither loses nor doubles it; it
continues the call's chain (``worker/deliveries.py``), so a loop of destinations stops.

The loop wakes at once when this process enqueues, when an attempt ends, and
otherwise sleeps until the queue's next due time (at most ``POLL_S``).

What may start: a function's attempts never exceed its concurrency, and its
retries only a share of it (the retry budget, ``domain.retries``). Functions
with no room are left out of the lease. A leased batch can still bring more of
a function than it has room for: those wait here, leased, and start as its
attempts end (while a function has calls waiting, the lease leaves it out, so
its backlog is not leased again and again). Past ``async_concurrency`` waiting
calls in all, the rest go back to the queue, each due about when a slot should
be free for it (``retries.spread``). Neither uses an attempt.

Order: the queue hands out only the head of an ordering key, so two calls of
one key never run together; the dispatcher never runs one call twice at once
(a call leased again while its attempt still runs here waits for it).

Shutdown: ``stop`` leases nothing more, lets running attempts finish within
the grace, then interrupts the rest and gives their calls back, due at once
and with no attempt used. A crash gives them back too: the queue recovers the
dead process's leases when it opens, and each counts as a ``LeaseExpired``
attempt (as does a lease that ran out here), so a call whose attempts keep
killing the server goes dead when its retries are used up
(``retries.before_attempt``); one with retries left runs again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from wuzhao.config import Settings
from wuzhao.domain import chains, destinations, retries
from wuzhao.domain.versions import Executable
from wuzhao.errors import LeaseExpired, LeaseLost, NotFound, WuzhaoError
from wuzhao.observe.metrics import Metrics
from wuzhao.queue.api import AsyncCall, AsyncQueue, Attempt, Lease
from wuzhao.worker.deliveries import LEASE_MARGIN_S, Deliveries, lease_seconds
from wuzhao.worker.worker import Outcome, Worker

__all__ = ["Dispatcher", "lease_seconds"]  # lease_seconds: where the gateway and scheduler know it

log = logging.getLogger("wuzhao.dispatcher")

POLL_S = 1.0  # the longest sleep: a safety net, every change of ours wakes the loop anyway
RESULT_CAP = 256 * 1024  # results kept for GET /v1/invocations/{id}; a larger one is kept as null
FIRST_GUESS_S = 0.5  # an attempt's duration before one of the function's was measured
PURGE_EVERY_S = 300.0

FunctionKey = tuple[str, str]  # (namespace, function)
# The executable a call's (namespace, function, qualifier) runs now; NotFound once gone.
Resolver = Callable[[str, str, str | None], Executable]


@dataclass
class _Load:
    """The attempts of one function running here, and its leased calls waiting for room (kept
    once seen: its mean duration)."""

    running: int = 0
    retries: int = 0
    mean_s: float = FIRST_GUESS_S  # moving average of its attempts' durations
    waiting: deque[tuple[Lease, Executable]] = field(default_factory=deque)  # first attempts
    waiting_retries: deque[tuple[Lease, Executable]] = field(default_factory=deque)


class Dispatcher:
    def __init__(
        self,
        queue: AsyncQueue,
        worker: Worker,
        settings: Settings,
        *,
        resolve: Resolver,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        draw: Callable[[], float] = random.random,
        consumer: str | None = None,
        deliveries: Deliveries | None = None,
    ) -> None:
        self._queue = queue
        self._worker = worker
        self._settings = settings
        self._resolve = resolve
        self._metrics = metrics
        self._clock = clock
        self._draw = draw
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._limit = settings.async_concurrency
        self._tasks: dict[str, asyncio.Task[None]] = {}  # by call id
        self._leases: dict[str, Lease] = {}  # the lease each task works under
        self._load: dict[FunctionKey, _Load] = {}
        self._waiting = 0  # leased calls waiting for room, all functions together
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.Task[None] | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self.depth: dict[FunctionKey, int] = {}  # unfinished calls, as of the last refresh
        # Destination records go out through it; so do triggers' events (platform.py).
        self.deliveries = deliveries or Deliveries(
            queue, settings, resolve=resolve, metrics=metrics, wake=self.wake, clock=clock
        )

    # lifecycle

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="wuzhao-dispatcher")
        self._housekeeping = asyncio.create_task(self._purge_old(), name="wuzhao-queue-purge")

    def wake(self) -> None:
        """Something was enqueued: look at the queue now."""
        self._wake.set()

    async def stop(self, grace_s: float) -> None:
        self._stopping = True
        self._wake.set()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        if self._loop is not None:
            await self._loop  # asked, not cancelled: it may be in the middle of an ack
        unstarted = [
            lease for load in self._load.values() for lease, _ in (*load.waiting, *load.waiting_retries)
        ]
        for load in self._load.values():
            load.waiting.clear()
            load.waiting_retries.clear()
        self._waiting = 0
        await self._give_back(unstarted)
        tasks = dict(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks.values(), timeout=grace_s)
        interrupted = [self._leases[call_id] for call_id, task in tasks.items() if task in pending]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._give_back(interrupted)
        if interrupted:
            log.info("gave back %d asynchronous calls interrupted by the shutdown", len(interrupted))

    async def _give_back(self, leases: list[Lease]) -> None:
        """Not run (to the end): due again at once, no attempt used."""
        now = self._clock()
        for lease in leases:
            with contextlib.suppress(LeaseLost):
                await self._queue.postpone(lease.token, at=now)

    # what the metrics show

    async def refresh_depth(self) -> None:
        self.depth = await self._queue.depth()

    def running(self) -> dict[FunctionKey, dict[str, int]]:
        """Attempts running here by function: first attempts and retries."""
        return {
            key: {"first": load.running - load.retries, "retry": load.retries}
            for key, load in self._load.items()
            if load.running
        }

    # the loop

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                now = self._clock()
                if await self._lease_and_start(now):
                    continue  # the lease was full: there may be more due at once
                await self._sleep(leased_at=now)
            except Exception:  # the queue may come back; keep the loop alive
                log.exception("the dispatcher could not lease asynchronous calls; trying again")
                await asyncio.sleep(POLL_S)

    async def _lease_and_start(self, now: float) -> bool:
        """Lease what is due and start it; True when the lease brought all it was asked for."""
        free = self._limit - len(self._tasks)
        if free <= 0:
            return False
        leased = await self._queue.lease(
            now, free, consumer=self.consumer, exclude=self._full(), exclude_retries=self._over_budget()
        )
        await self._admit(leased)
        return len(leased) == free

    async def _sleep(self, *, leased_at: float) -> None:
        timeout = POLL_S
        if len(self._tasks) < self._limit:
            due = await self._queue.next_due()
            if due is not None and due > leased_at:
                # Due after the lease looked (perhaps already): sleep until then at most.
                timeout = min(POLL_S, max(0.0, due - self._clock()))
            # else due when the lease looked, yet not handed out: those calls wait for room
            # (or for their key). An ending attempt wakes us; do not spin meanwhile.
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _max_concurrency(self, target: Executable) -> int:
        limit = target.config.max_concurrency
        return self._settings.max_concurrency if limit is None else limit

    def _full(self) -> list[FunctionKey]:
        """Functions the lease leaves out: at their concurrency, or with calls waiting for it."""
        full = []
        for key, load in self._load.items():
            if load.waiting:
                full.append(key)
                continue
            target = self._current(key) if load.running else None
            if target is not None and load.running >= self._max_concurrency(target):
                full.append(key)
        return full

    def _over_budget(self) -> list[FunctionKey]:
        """Functions whose retries the lease leaves out: budget used, or retries waiting for it."""
        over = []
        for key, load in self._load.items():
            if load.waiting_retries:
                over.append(key)
                continue
            target = self._current(key) if load.retries else None
            if target is not None and load.retries >= self._budget(target):
                over.append(key)
        return over

    def _current(self, key: FunctionKey) -> Executable | None:
        try:
            return self._resolve(key[0], key[1], None)
        except NotFound:
            return None

    def _budget(self, target: Executable) -> int:
        return retries.retry_budget(self._max_concurrency(target), self._settings.retry_budget)

    async def _admit(self, leased: list[Lease]) -> None:
        """Start what has room; keep the rest waiting for it, or, past the bound of waiting
        calls, give them back, each due about when there will be room."""
        excess: dict[tuple[FunctionKey, bool], int] = {}
        for lease in leased:
            call = lease.call
            key = (call.namespace, call.function)
            facts = _facts(lease)
            retry = lease.attempts > 0 or lease.retries_used > 0
            try:
                target = self._resolve(call.namespace, call.function, call.qualifier)
            except NotFound as error:
                await self._dead(lease, None, retries.Reason.FUNCTION_GONE, error=error)
                continue
            policy = retries.Policy.of(target.config)
            early = retries.before_attempt(facts, policy, now=self._clock())
            if early is not None:
                assert early.reason is not None
                lost = None
                if early.reason is retries.Reason.RETRIES_EXHAUSTED:  # its last attempt was lost
                    lost = LeaseExpired(
                        f"attempt {lease.attempts} never answered (its worker died or hung) and it "
                        f"had no retry left (max_retries {policy.max_retries})"
                    )
                await self._dead(lease, target, early.reason, error=lost)
                continue
            load = self._load.setdefault(key, _Load())
            limit = self._max_concurrency(target)
            budget = self._budget(target)
            # A disabled function (max_concurrency 0) runs its attempt: it is throttled at
            # once and postponed like any throttled call, within its event's age.
            waiting = load.waiting_retries if retry else load.waiting
            if call.id in self._tasks or limit == 0 or (not waiting and self._may_start(load, target, retry)):
                self._spawn(lease, target, retry)
                continue
            if self._waiting < self._limit:
                waiting.append((lease, target))
                self._waiting += 1
                continue
            position = excess.get((key, retry), 0)
            excess[(key, retry)] = position + 1
            delay = retries.spread(position, budget if retry else limit, load.mean_s, self._draw())
            await self._ack(self._queue.postpone(lease.token, at=self._clock() + delay))

    def _spawn(self, lease: Lease, target: Executable, retry: bool) -> None:
        call = lease.call
        key = (call.namespace, call.function)
        load = self._load.setdefault(key, _Load())
        load.running += 1
        load.retries += retry
        earlier = self._tasks.get(call.id)
        task = asyncio.create_task(self._attempt(lease, target, earlier), name=f"wuzhao-async-{call.id}")
        self._tasks[call.id] = task
        self._leases[call.id] = lease

        def done(_: asyncio.Task[None]) -> None:
            load.running -= 1
            load.retries -= retry
            if self._tasks.get(call.id) is task:
                del self._tasks[call.id]
                del self._leases[call.id]
            if not self._stopping:
                self._start_waiting(load)
            self._wake.set()

        task.add_done_callback(done)

    def _may_start(self, load: _Load, target: Executable, retry: bool) -> bool:
        return retries.may_start(
            retry=retry,
            running=load.running,
            running_retries=load.retries,
            max_concurrency=self._max_concurrency(target),
            budget=self._budget(target),
        )

    def _start_waiting(self, load: _Load) -> None:
        """A function's attempt ended: start its waiting calls that have room now, oldest first."""
        while True:
            queues = [q for q in (load.waiting, load.waiting_retries) if q]
            startable = [q for q in queues if self._may_start(load, q[0][1], q is load.waiting_retries)]
            if not startable:
                return
            oldest = min(startable, key=lambda q: q[0][0].call.enqueued_at)
            lease, target = oldest.popleft()
            self._waiting -= 1
            self._spawn(lease, target, oldest is load.waiting_retries)

    # one attempt

    async def _attempt(self, lease: Lease, target: Executable, earlier: asyncio.Task[None] | None) -> None:
        if earlier is not None:
            # Leased again while its attempt still runs here (its lease outlived): after it.
            await asyncio.gather(earlier, return_exceptions=True)
        try:
            await self._run_attempt(lease, target)
        except Exception:
            # An ack that failed leaves the call leased: it comes back when the lease ends.
            log.exception("asynchronous call %s: could not finish its attempt", lease.call.id)

    async def _run_attempt(self, lease: Lease, target: Executable) -> None:
        call = lease.call
        if lease.deadline - self._clock() < call.lease_s - LEASE_MARGIN_S / 2:
            # It waited here for room so long that its lease might end mid-attempt: give it back.
            await self._give_back([lease])
            return
        started = self._clock()
        t0 = time.perf_counter()
        try:
            outcome = await self._worker.invoke(target, call.event, call.id, chain=_chain(call))
        except Exception:
            log.exception("asynchronous call %s: the attempt broke", call.id)
            outcome = Outcome(call.id, False, 0.0, target.version, error=WuzhaoError("internal error"))
        duration_ms = round((time.perf_counter() - t0) * 1000, 3)
        load = self._load.get((call.namespace, call.function))
        if load is not None:
            load.mean_s = 0.8 * load.mean_s + 0.2 * duration_ms / 1000
        number = lease.attempts + 1
        if outcome.error is None:
            attempt = Attempt(number, started, duration_ms, "success")
            result = outcome.result or b"null"
            kept = result if len(result) <= RESULT_CAP else None
            await self._send_on(lease, target, destinations.SUCCESS, number, result=result)
            if await self._ack(self._queue.complete(lease.token, attempt, kept)):
                self._count(call, "succeeded")
            return
        error = outcome.error
        body = error.to_body()["error"]
        attempt = Attempt(number, started, duration_ms, error.code, body)
        kind = retries.classify(error.code)
        decision = retries.after_failure(
            _facts(lease), retries.Policy.of(target.config), error.code, now=self._clock(), draw=self._draw()
        )
        if decision.action is retries.Action.RETRY:
            assert decision.at is not None
            if await self._ack(self._queue.retry(lease.token, attempt, at=decision.at)):
                self._count(call, "retried")
        elif decision.action is retries.Action.POSTPONE:
            assert decision.at is not None
            if await self._ack(self._queue.postpone(lease.token, at=decision.at)):
                self._count(call, "postponed")
        else:
            assert decision.reason is not None
            ran = kind is retries.Kind.FAILED
            await self._dead(
                lease,
                None if kind is retries.Kind.GONE else target,
                decision.reason,
                attempt=attempt if ran else None,
                error=error,
                version=outcome.version,
            )

    async def _dead(
        self,
        lease: Lease,
        target: Executable | None,
        reason: retries.Reason,
        *,
        attempt: Attempt | None = None,
        error: WuzhaoError | None = None,
        version: str | None = None,
    ) -> None:
        """Give the call up; its record goes to the function's on_failure destination, if any.

        ``error``: what failed last (None: nothing did). The dead letter keeps, as its error,
        the attempt's, or without an attempt one that says why it died (``_why_dead``).
        """
        call = lease.call
        why = attempt.error if attempt is not None and attempt.error else None
        if why is None:
            why = _why_dead(reason, lease, target, error, now=self._clock())
        if target is not None:
            attempts = lease.attempts + (attempt is not None)
            await self._send_on(
                lease,
                target,
                str(reason),
                attempts,
                error=why,
                status=error.status if error is not None else 500,
                version=version,
            )
        hold = target is not None and target.config.ordering_hold and call.ordering_key is not None
        if await self._ack(self._queue.dead_letter(lease.token, attempt, hold_key=hold, error=why)):
            self._count(call, "dead")
            log.info("asynchronous call %s of %s is dead: %s", call.id, call.function, reason)

    async def _send_on(
        self,
        lease: Lease,
        target: Executable,
        condition: str,
        attempts: int,
        *,
        result: bytes | None = None,
        error: dict[str, Any] | None = None,
        status: int = 200,
        version: str | None = None,
    ) -> None:
        """Enqueue the destination's call, before the ack: a crash in between re-runs the
        call, and the idempotency key keeps that from sending the record twice."""
        call = lease.call
        name = destinations.destination(target.config, condition == destinations.SUCCESS)
        if name is None:
            return
        finished = destinations.Finished(
            call_id=call.id,
            namespace=call.namespace,
            function=call.function,
            qualifier=call.qualifier,
            event=call.event,
            version=version or target.version,
            attempts=attempts,
            condition=condition,
            result=result,
            error=error,
            status=status,
        )
        record = destinations.record(finished, now=self._clock(), limit=self._settings.max_request_bytes)
        # A destination that does not exist yet gets it all the same: a dead letter under its
        # name until it does. The record continues the call's chain: a function that names
        # itself (or a cycle of them) is stopped by the loop rule.
        await self.deliveries.send(
            call.namespace,
            name,
            record,
            idempotency_key=f"wuzhao-destination:{call.id}:{condition}:{attempts}",
            cause=_chain(call),
            origin={"from": call.id},
        )

    async def _ack(self, ack: Awaitable[None]) -> bool:
        """Await an ack; False when the lease was lost (another delivery has the call now)."""
        try:
            await ack
        except LeaseLost as error:
            log.warning("an asynchronous call's lease was lost before its ack: %s", error.message)
            return False
        return True

    def _count(self, call: AsyncCall, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.async_outcome(call.namespace, call.function, outcome)

    # housekeeping

    async def _purge_old(self) -> None:
        """Forget succeeded calls past their retention (dead ones wait for an operator)."""
        retention = self._settings.async_retention_s
        while True:
            try:
                purged = await self._queue.purge(finished_before=self._clock() - retention)
                if purged:
                    log.info("purged %d succeeded asynchronous calls", purged)
            except Exception:
                log.exception("could not purge old asynchronous calls")
            await asyncio.sleep(min(PURGE_EVERY_S, max(1.0, retention / 10)))


def _chain(call: AsyncCall) -> chains.Chain:
    """The chain of calls ``call`` belongs to (a call queued before chains starts its own)."""
    return chains.from_origin(call.origin, call.id, call.function)


def _facts(lease: Lease) -> retries.Call:
    return retries.Call(lease.call.enqueued_at, lease.retries_used, lease.attempts, lost=lease.lost)


def _why_dead(
    reason: retries.Reason,
    lease: Lease,
    target: Executable | None,
    error: WuzhaoError | None,
    *,
    now: float,
) -> dict[str, Any]:
    """The error of a call given up with no attempt of its own to say why (``GET
    /v1/invocations/{id}``, ``wuzhao dlq show``, the destination record)."""
    if reason is retries.Reason.EVENT_AGE_EXCEEDED:
        age = now - lease.call.enqueued_at
        limit = f" ({target.config.max_event_age_s} s)" if target is not None else ""
        message = f"the event is {age:.1f} s old; it cannot run within max_event_age_s{limit}"
        if error is not None:  # why the last try did not run
            message += f"; last not run: {error.code}: {error.message}"
        return {"code": str(reason), "message": message}
    if error is not None:  # the function is gone (NotFound), a lost last attempt (LeaseExpired)
        body: dict[str, Any] = error.to_body()["error"]
        return body
    return {"code": str(reason), "message": f"given up: {reason}"}
