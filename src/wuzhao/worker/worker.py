"""The worker: runs calls on sandboxed instances, one call per instance at a time.

Life of a call here: find the pool of the executable (a function at one
version), take a warm idle instance or start one (a cold start, within the
function's concurrency and the namespace's quotas), send the event, wait for
the answer within the function's timeout, release the instance (or stop it if
the call left it in doubt), and record the outcome off the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from wuzhao.config import Settings
from wuzhao.domain import chains
from wuzhao.domain.chains import Chain
from wuzhao.domain.functions import FunctionRecord
from wuzhao.domain.instances import IdleInstance, expired
from wuzhao.domain.versions import LATEST, Executable
from wuzhao.errors import (
    FunctionError,
    InvocationError,
    ServiceUnavailable,
    WuzhaoError,
)
from wuzhao.observe.metrics import Metrics
from wuzhao.observe.recorder import Recorder
from wuzhao.runtimes.protocol import Frame
from wuzhao.store.api import InvocationRecord, NamespaceRecord
from wuzhao.worker.capacity import NodeCapacity
from wuzhao.worker.factory import InstanceFactory
from wuzhao.worker.function_api import Caller, FunctionApi, Reply
from wuzhao.worker.instance import Instance
from wuzhao.worker.pool import FunctionPool, PoolRetired

log = logging.getLogger("wuzhao.worker")

# The current executable of (namespace, function, version); raises NotFound once gone.
Resolver = Callable[[str, str, str], Executable]
# The record of a namespace, with its quotas.
QuotaLookup = Callable[[str], NamespaceRecord]


@dataclass(frozen=True)
class Outcome:
    invocation_id: str
    cold_start: bool
    duration_ms: float
    version: str
    result: bytes | None = None
    error: WuzhaoError | None = None


@dataclass(frozen=True)
class InFlight:
    target: Executable
    started_at: float
    cold_start: bool
    # The chain of calls it belongs to: what the calls it makes (the in-function API) continue.
    # None for a call a client made: its chain starts with it, built only if it makes a call.
    chain: Chain | None

    def chain_of(self, invocation_id: str) -> Chain:
        if self.chain is None:
            return chains.start(self.target.function, invocation_id)
        return self.chain


class Worker:
    def __init__(
        self,
        settings: Settings,
        factory: InstanceFactory,
        recorder: Recorder,
        *,
        resolve: Resolver,
        quotas: QuotaLookup,
        node_memory_mb: int,
        provisioned: Callable[[], list[Executable]] = list,
        metrics: Metrics | None = None,
    ) -> None:
        self._provisioned = provisioned  # the executables that keep min_instances started
        self._metrics = metrics
        self._capacity = NodeCapacity(
            pools=self._all_pools,
            quotas=quotas,
            node_memory_mb=node_memory_mb,
            stop=self._stop_soon,
            metrics=metrics,
        )
        self._settings = settings
        self._factory = factory
        self._recorder = recorder
        self._resolve = resolve
        self._pools: dict[tuple[str, str, str], FunctionPool] = {}
        self._draining: set[FunctionPool] = set()  # retired pools with calls still running
        self._stopping: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self.inflight: dict[str, InFlight] = {}
        self._api: FunctionApi | None = None  # what functions' requests go to (the in-function API)

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_idle(), name="wuzhao-idle-reaper")

    def serve_calls(self, api: FunctionApi) -> None:
        """Let running functions make requests of the platform (``wuzhao.fn``) through ``api``;
        without it, a request is a protocol violation."""
        self._api = api

    # the hot path

    async def invoke(
        self,
        target: Executable,
        event: bytes,
        invocation_id: str | None = None,
        *,
        chain: Chain | None = None,
    ) -> Outcome:
        """Run one call. ``invocation_id``: an asynchronous call's own id, so that each attempt's
        record and log lines (and the handler's request id) carry it; the caller never runs
        two attempts with one id at once. Otherwise a new UUID.

        ``chain``: the chain of calls it belongs to (``domain/chains.py``), kept in
        ``inflight`` while it runs; None: a call a client made, which starts one."""
        invocation_id = invocation_id or str(uuid.uuid4())
        if self._closed:
            error = ServiceUnavailable("the server is shutting down")
            return Outcome(invocation_id, False, 0.0, target.version, error=error)
        started = time.time()
        t0 = time.perf_counter()
        cold = False
        init_ms: float | None = None
        instance: Instance | None = None
        pool: FunctionPool | None = None
        healthy = False
        self.inflight[invocation_id] = InFlight(target, started, False, chain)
        try:
            while True:
                pool = self._pool(target)
                try:
                    instance, cold = await pool.acquire(invocation_id, wait_s=self._settings.throttle_wait_s)
                    break
                except PoolRetired:  # updated or deleted while we waited
                    target = self._resolve(target.namespace, target.function, target.version)
            if cold:
                init_ms = (time.perf_counter() - t0) * 1000
                self.inflight[invocation_id] = InFlight(target, started, True, chain)
            t1 = time.perf_counter()
            try:
                result = await instance.invoke(
                    invocation_id, event, None if self._api is None else self._serve_call
                )
            except FunctionError:
                healthy = True  # the handler raised; the runtime is fine
                raise
            healthy = True
            duration = (time.perf_counter() - t1) * 1000
            self._record(target, invocation_id, started, duration, cold, init_ms, None)
            return Outcome(invocation_id, cold, duration, target.version, result=result)
        except WuzhaoError as error:
            duration = (time.perf_counter() - t0) * 1000
            self._record(target, invocation_id, started, duration, cold, init_ms, error)
            return Outcome(invocation_id, cold, duration, target.version, error=error)
        finally:
            del self.inflight[invocation_id]
            if instance is not None and pool is not None:
                pool.release(instance, healthy=healthy)

    def _serve_call(self, invocation_id: str, frame: Frame) -> asyncio.Future[Reply]:
        """A request made by the running call ``invocation_id``: performed as that function, in
        its namespace, continuing its chain of calls."""
        assert self._api is not None
        running = self.inflight[invocation_id]
        chain = running.chain_of(invocation_id)
        caller = Caller(running.target.namespace, running.target.function, invocation_id, chain)
        return self._api.start(caller, frame)

    def chain_of(self, invocation_id: str) -> Chain | None:
        """The chain of a call running here, which the calls it makes continue (the in-function
        API passes it to ``Objects``, ``Notifications`` and ``Deliveries``); None once it ended."""
        running = self.inflight.get(invocation_id)
        return None if running is None else running.chain_of(invocation_id)

    # what the API shows

    def namespace_usage(self, namespace: str) -> dict[str, int]:
        """Live instances of a namespace and the memory they hold (what its quotas limit)."""
        return self._capacity.usage(namespace)

    def all_instance_counts(self) -> dict[tuple[str, str], dict[str, int]]:
        """Idle and busy instances of every function that has any (for the metrics)."""
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for pool in self._all_pools():
            entry = counts.setdefault((pool.target.namespace, pool.target.function), {"idle": 0, "busy": 0})
            entry["idle"] += len(pool.idle)
            entry["busy"] += len(pool.busy) + pool.starting
        return counts

    def instance_counts(self, namespace: str, name: str) -> dict[str, int]:
        idle = busy = 0
        for pool in self._all_pools():
            if pool.target.namespace == namespace and pool.target.function == name:
                idle += len(pool.idle)
                busy += len(pool.busy) + pool.starting
        return {"idle": idle, "busy": busy}

    # changes

    async def function_changed(self, old: FunctionRecord, new: FunctionRecord | None) -> None:
        """Retire what no longer exists: $LATEST's old revision, or every version once deleted.

        Idle instances stop now, busy ones after their call.
        """
        for key, pool in list(self._pools.items()):
            namespace, function, version = key
            if (namespace, function) != (old.namespace, old.name):
                continue
            if version == LATEST or new is None:
                del self._pools[key]
                self._retire(pool)

    async def close(self) -> None:
        """Stop every instance (in-flight calls should have finished: the server drains first)."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for pool in self._all_pools():
            pool.retire()
            for instance in list(pool.busy):
                self._stop_soon(instance)
        self._pools.clear()
        self._draining.clear()
        while self._stopping:
            await asyncio.gather(*list(self._stopping), return_exceptions=True)

    # instances

    def _all_pools(self) -> list[FunctionPool]:
        return [*self._pools.values(), *self._draining]

    def _pool(self, target: Executable) -> FunctionPool:
        key = target.pool_key
        pool = self._pools.get(key)
        if pool is None or pool.target.revision < target.revision:
            if pool is not None:  # the caller's $LATEST is newer than ours: it was just updated
                self._retire(pool)
            limit = target.config.max_concurrency
            pool = FunctionPool(
                target,
                start=self._factory.start,
                stop=self._stop_soon,
                capacity=self._capacity,
                released=self._capacity.freed,
                max_concurrency=self._settings.max_concurrency if limit is None else limit,
            )
            self._pools[key] = pool
        return pool

    def _retire(self, pool: FunctionPool) -> None:
        pool.retire()
        if pool.busy or pool.starting:
            self._draining.add(pool)

    def _stop_soon(self, instance: Instance) -> None:
        async def stop() -> None:
            await self._factory.stop(instance)
            self._draining = {p for p in self._draining if not p.empty}
            self._capacity.freed()

        task = asyncio.get_running_loop().create_task(stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _reap_idle(self) -> None:
        """Scale to zero, but never below ``min_instances`` (which are started here too)."""
        period = max(0.05, min(1.0, self._settings.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for pool in list(self._pools.values()):
                timeout = pool.target.config.idle_timeout_s or self._settings.idle_timeout_s
                idle = [IdleInstance(i.id, i.idle_since) for i in pool.idle]
                surplus = None
                if pool.target.version == LATEST and pool.target.config.min_instances:
                    surplus = _live(pool) - pool.target.config.min_instances
                ids = set(expired(idle, now=now, idle_timeout_s=timeout, surplus=surplus))
                for instance in pool.take_expired(ids):
                    self._stop_soon(instance)
            await self._provision()

    async def _provision(self) -> None:
        for target in self._provisioned():
            pool = self._pool(target)
            for _ in range(target.config.min_instances - _live(pool)):
                try:
                    await pool.provision()
                except WuzhaoError as error:  # e.g. InitError: the next period tries again
                    log.warning("could not provision %s: %s %s", target.function, error.code, error.message)
                    break

    def _record(
        self,
        target: Executable,
        invocation_id: str,
        started: float,
        duration_ms: float,
        cold: bool,
        init_ms: float | None,
        error: WuzhaoError | None,
    ) -> None:
        self._recorder.record(
            InvocationRecord(
                id=invocation_id,
                namespace=target.namespace,
                function=target.function,
                revision=target.revision,
                status="failed" if error else "succeeded",
                started_at=started,
                duration_ms=round(duration_ms, 3),
                cold_start=cold,
                init_duration_ms=None if init_ms is None else round(init_ms, 3),
                error=error.to_body()["error"] if error else None,
                version=target.version,
            )
        )
        if self._metrics is not None:
            seconds = (duration_ms + (init_ms or 0.0)) / 1000
            outcome = error.code if error else "success"
            self._metrics.observe(
                target.namespace, target.function, outcome=outcome, seconds=seconds, cold=cold
            )
        if isinstance(error, InvocationError):
            log.info(
                "invocation %s of %s failed: %s %s", invocation_id, target.function, error.code, error.message
            )


def _live(pool: FunctionPool) -> int:
    return len(pool.idle) + len(pool.busy) + pool.starting
