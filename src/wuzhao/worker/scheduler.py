"""The scheduler: fires the ticks of ``cron`` triggers as asynchronous calls.

One loop looks at every timer (``control/triggers.py``), asks
``domain.schedules.due`` what is due given the last tick it fired, enqueues
each tick as an asynchronous call of the trigger's function (the dispatcher
runs it, with the function's retries), then records the last tick durably,
and sleeps until the next tick of any timer or until a trigger changes.

Once per tick, also across restarts: a tick is enqueued with the idempotency
key ``cron:<trigger>:<tick>`` *before* it is recorded, so a crash between the
two makes the next start enqueue it again, and the queue answers with the call
already made instead of a second one (``queue/api.py``, guarantee 5). A crash
before the enqueue loses nothing either: the tick is still after the last one
recorded, so it is due at the next start (on time, late, or missed and then
handled by the missed-ticks policy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from wuzhao.config import Settings
from wuzhao.control.triggers import Triggers
from wuzhao.domain import chains, schedules
from wuzhao.domain import triggers as rules
from wuzhao.domain.triggers import CronTrigger
from wuzhao.domain.versions import Executable
from wuzhao.errors import NotFound
from wuzhao.queue.api import AsyncCall, AsyncQueue
from wuzhao.store.api import TriggerRecord
from wuzhao.worker.dispatcher import lease_seconds

log = logging.getLogger("wuzhao.scheduler")

MAX_SLEEP_S = 60.0  # a safety net: a change of any trigger wakes the loop anyway
RETRY_S = 5.0  # after a failure (the queue or the store refused), look at that timer again this soon
LONGEST_TIMEOUT_S = 900  # the lease of a call whose qualifier no longer resolves (it goes dead)
# The current executable of (namespace, function, qualifier); NotFound once gone.
Resolver = Callable[[str, str, str | None], Executable]


class Scheduler:
    def __init__(
        self,
        triggers: Triggers,
        queue: AsyncQueue,
        settings: Settings,
        *,
        resolve: Resolver,
        wake: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._triggers = triggers
        self._queue = queue
        self._settings = settings
        self._resolve = resolve
        self._wake_dispatcher = wake
        self._clock = clock
        # Per timer: the record it was computed for and its next due tick (or retry time).
        self._next: dict[tuple[str, str], tuple[TriggerRecord, float]] = {}
        self._changed = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        triggers.on_change(self._changed.set)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wuzhao-scheduler")

    async def stop(self) -> None:
        """Finish the pass under way (asked, not cancelled: it may be between an enqueue and its
        record, which is safe, but needless), then stop."""
        self._stopping = True
        self._changed.set()
        if self._task is not None:
            await self._task

    async def run_once(self) -> float:
        """Fire what is due now; the time of the next tick of any timer."""
        now = self._clock()
        timers = self._triggers.timers()
        current = {_key(record) for record, _ in timers}
        self._next = {key: entry for key, entry in self._next.items() if key in current}  # deleted: gone
        earliest = now + MAX_SLEEP_S
        for record, spec in timers:
            if self._stopping:
                break
            cached = self._next.get(_key(record))
            if cached is not None and cached[0] is record and cached[1] > now:
                earliest = min(earliest, cached[1])
                continue
            try:
                upcoming: float = await self._fire(record, spec, now)
            except Exception:  # this timer waits a little; the others go on
                log.exception("cron trigger %s/%s: could not fire its due ticks", *_key(record))
                upcoming = now + RETRY_S
            self._next[_key(record)] = (record, upcoming)
            earliest = min(earliest, upcoming)
        return earliest

    async def _run(self) -> None:
        while not self._stopping:
            self._changed.clear()
            try:
                earliest = await self.run_once()
            except Exception:  # pragma: no cover - run_once handles each timer's failures
                log.exception("the scheduler's pass failed")
                earliest = self._clock() + RETRY_S
            timeout = max(0.0, earliest - self._clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def _fire(self, record: TriggerRecord, spec: CronTrigger, now: float) -> int:
        namespace, name = _key(record)
        decision = schedules.due(
            rules.schedule(spec),
            anchor=record.updated_at,
            last=self._triggers.last_tick(namespace, name),
            now=now,
            policy=rules.missed_ticks(spec, self._settings.cron_missed_ticks),
            grace=self._settings.cron_grace_s,
        )
        for tick in decision.fire:
            await self._enqueue(record, spec, tick, catch_up=tick == decision.catch_up)
        if decision.last is not None:
            await self._triggers.record_tick(namespace, name, decision.last)
        if decision.fire:
            self._wake_dispatcher()
        return decision.next

    async def _enqueue(self, record: TriggerRecord, spec: CronTrigger, tick: int, *, catch_up: bool) -> None:
        namespace, name = _key(record)
        try:
            timeout_s = self._resolve(namespace, spec.function, spec.qualifier).config.timeout_s
        except NotFound:  # its alias or version is gone: enqueued all the same, it goes dead, visibly
            timeout_s = LONGEST_TIMEOUT_S
        call_id = str(uuid.uuid4())
        stored_id, created = await self._queue.enqueue(
            AsyncCall(
                id=call_id,
                namespace=namespace,
                function=spec.function,
                event=schedules.scheduled_event(namespace, name, tick, catch_up=catch_up),
                enqueued_at=self._clock(),
                qualifier=spec.qualifier,
                idempotency_key=f"cron:{name}:{tick}",
                lease_s=lease_seconds(self._settings, timeout_s),
                # A tick starts a chain of its own (domain/chains.py), and says which trigger fired it.
                origin={**chains.start(spec.function, call_id).to_origin(), "trigger": name},
            )
        )
        if not created:  # enqueued before a crash, not recorded: the queue kept the first call
            log.info(
                "cron trigger %s/%s: tick %s was already call %s",
                namespace,
                name,
                schedules.iso(tick),
                stored_id,
            )


def _key(record: TriggerRecord) -> tuple[str, str]:
    return (record.namespace, record.name)
