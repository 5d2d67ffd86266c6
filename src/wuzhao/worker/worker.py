"""The worker: runs calls on sandboxed instances, one call per instance at a time.

Life of a call here: find the pool of the function's current revision, take a
warm idle instance or start one (a cold start), send the event, wait for the
answer within the function's timeout, release the instance (or stop it if the
call left it in doubt), and record the outcome off the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wuzhao.config import Settings
from wuzhao.control.packages import CodePackages
from wuzhao.domain.functions import FunctionRecord
from wuzhao.domain.instances import IdleInstance, expired
from wuzhao.domain.resources import cpu_quota_us, cpu_shares
from wuzhao.domain.uids import UidPool, UidsExhausted
from wuzhao.errors import (
    FunctionError,
    InvocationError,
    ServiceUnavailable,
    Throttled,
    WuzhaoError,
)
from wuzhao.observe.recorder import Recorder
from wuzhao.sandbox.api import Launcher, SandboxSpec
from wuzhao.store.api import InvocationRecord
from wuzhao.worker.channel import RuntimeChannel
from wuzhao.worker.instance import Instance
from wuzhao.worker.output import OutputCapture
from wuzhao.worker.pool import FunctionPool, PoolRetired

log = logging.getLogger("wuzhao.worker")

# Room for the header around the largest result we accept.
FRAME_SLACK = 64 * 1024


@dataclass(frozen=True)
class Outcome:
    invocation_id: str
    cold_start: bool
    duration_ms: float
    result: bytes | None = None
    error: WuzhaoError | None = None


@dataclass(frozen=True)
class InFlight:
    record: FunctionRecord
    started_at: float
    cold_start: bool


# The current record of a function (namespace, name); raises NotFound once deleted.
Lookup = Callable[[str, str], FunctionRecord]


class Worker:
    def __init__(
        self,
        settings: Settings,
        launcher: Launcher,
        packages: CodePackages,
        recorder: Recorder,
        lookup: Lookup,
    ) -> None:
        self._settings = settings
        self._lookup = lookup
        self._launcher = launcher
        self._packages = packages
        self._recorder = recorder
        self._uids = UidPool(settings.uid_base, settings.uid_count)
        self._pools: dict[tuple[str, str], FunctionPool] = {}
        self._draining: set[FunctionPool] = set()  # retired pools with calls still running
        self._stopping: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self.inflight: dict[str, InFlight] = {}

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_idle(), name="wuzhao-idle-reaper")

    # the hot path

    async def invoke(self, record: FunctionRecord, event: bytes) -> Outcome:
        invocation_id = str(uuid.uuid4())
        if self._closed:
            return Outcome(invocation_id, False, 0.0, error=ServiceUnavailable("the server is shutting down"))
        started = time.time()
        t0 = time.perf_counter()
        cold = False
        init_ms: float | None = None
        instance: Instance | None = None
        pool: FunctionPool | None = None
        healthy = False
        self.inflight[invocation_id] = InFlight(record, started, False)
        try:
            while True:
                pool = self._pool(record)
                try:
                    instance, cold = await pool.acquire(invocation_id, wait_s=self._settings.throttle_wait_s)
                    break
                except PoolRetired:  # updated or deleted while we waited
                    record = self._lookup(record.namespace, record.name)
            if cold:
                init_ms = (time.perf_counter() - t0) * 1000
                self.inflight[invocation_id] = InFlight(record, started, True)
            t1 = time.perf_counter()
            try:
                result = await instance.invoke(invocation_id, event)
            except FunctionError:
                healthy = True  # the handler raised; the runtime is fine
                raise
            healthy = True
            duration = (time.perf_counter() - t1) * 1000
            self._record(record, invocation_id, started, duration, cold, init_ms, None)
            return Outcome(invocation_id, cold, duration, result=result)
        except WuzhaoError as error:
            duration = (time.perf_counter() - t0) * 1000
            self._record(record, invocation_id, started, duration, cold, init_ms, error)
            return Outcome(invocation_id, cold, duration, error=error)
        finally:
            del self.inflight[invocation_id]
            if instance is not None and pool is not None:
                pool.release(instance, healthy=healthy)

    def namespace_usage(self, namespace: str) -> dict[str, int]:
        """Live instances of a namespace and the memory they hold (what its quotas limit)."""
        pools = [p for p in (*self._pools.values(), *self._draining) if p.record.namespace == namespace]
        instances = sum(len(p.idle) + len(p.busy) + p.starting for p in pools)
        memory = sum((len(p.idle) + len(p.busy) + p.starting) * p.record.config.memory_mb for p in pools)
        return {"instances": instances, "memory_mb": memory}

    def instance_counts(self, namespace: str, name: str) -> dict[str, int]:
        pool = self._pools.get((namespace, name))
        idle = len(pool.idle) if pool else 0
        busy = (len(pool.busy) + pool.starting) if pool else 0
        busy += sum(
            len(p.busy) for p in self._draining if p.record.namespace == namespace and p.record.name == name
        )
        return {"idle": idle, "busy": busy}

    async def function_changed(self, old: FunctionRecord, new: FunctionRecord | None) -> None:
        """Retire the old revision's instances: idle ones now, busy ones after their call."""
        pool = self._pools.pop((old.namespace, old.name), None)
        if pool is not None:
            pool.retire()
            if pool.busy or pool.starting:
                self._draining.add(pool)

    async def close(self) -> None:
        """Stop every instance (in-flight calls should have finished: the server drains first)."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for pool in [*self._pools.values(), *self._draining]:
            pool.retire()
            for instance in list(pool.busy):
                self._stop_soon(instance)
        self._pools.clear()
        self._draining.clear()
        while self._stopping:
            await asyncio.gather(*list(self._stopping), return_exceptions=True)

    # instances

    def _pool(self, record: FunctionRecord) -> FunctionPool:
        key = (record.namespace, record.name)
        pool = self._pools.get(key)
        if pool is None or pool.record.revision < record.revision:
            if pool is not None:  # the caller's record is newer than ours: it was just updated
                pool.retire()
                self._draining.add(pool)
            pool = FunctionPool(
                record,
                start=self._start_instance,
                stop=self._stop_soon,
                max_concurrency=self._settings.max_concurrency,
            )
            self._pools[key] = pool
        return pool

    async def _start_instance(self, record: FunctionRecord, invocation_id: str) -> Instance:
        try:
            uid = self._uids.acquire()
        except UidsExhausted as exc:
            raise Throttled(str(exc)) from None
        instance_id = uuid.uuid4().hex[:16]
        config = record.config
        try:
            code_dir, code_image = await asyncio.to_thread(self._code, record.code_sha256)
            spec = SandboxSpec(
                instance_id=instance_id,
                code_dir=str(code_dir),
                code_image=None if code_image is None else str(code_image),
                uid=uid,
                memory_mb=config.memory_mb,
                cpu_shares=cpu_shares(config.memory_mb),
                cpu_quota_us=cpu_quota_us(config.memory_mb) if self._settings.cpu_hard_limit else None,
                pids_max=self._settings.pids_max,
                tmp_size_mb=self._settings.tmp_size_mb,
                env=runtime_environment(record),
                network=config.network,
            )
            process = await self._launcher.launch(spec)
        except BaseException:
            self._uids.release(uid)
            raise
        channel = await RuntimeChannel.connect(
            process.channel, max_body=self._settings.max_response_bytes + FRAME_SLACK
        )
        namespace, name = record.namespace, record.name
        output = OutputCapture(
            process.stdout_fd,
            process.stderr_fd,
            lambda stream, inv, text: self._recorder.log(namespace, name, inv, stream, text),
            cap=self._settings.log_bytes_per_call,
        )
        output.start()
        instance = Instance(instance_id, record, process, channel, output, uid)
        try:
            await instance.initialize(invocation_id, self._settings.init_timeout_s)
        except BaseException:
            self._stop_soon(instance)
            raise
        return instance

    def _code(self, sha256: str) -> tuple[Path, Path | None]:
        """The unpacked tree of a package and its image (None where images cannot be made)."""
        return self._packages.code_dir(sha256), self._packages.code_image(sha256)

    def _stop_soon(self, instance: Instance) -> None:
        async def stop() -> None:
            try:
                await instance.stop()
            except Exception:
                log.exception("could not stop instance %s", instance.id)
            finally:
                self._uids.release(instance.uid)
                self._forget_drained()

        task = asyncio.get_running_loop().create_task(stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _forget_drained(self) -> None:
        self._draining = {p for p in self._draining if not p.empty}

    async def _reap_idle(self) -> None:
        timeout = self._settings.idle_timeout_s
        period = max(0.05, min(1.0, timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for pool in list(self._pools.values()):
                idle = [IdleInstance(i.id, i.idle_since) for i in pool.idle]
                ids = set(expired(idle, now=now, idle_timeout_s=timeout))
                for instance in pool.take_expired(ids):
                    self._stop_soon(instance)

    def _record(
        self,
        record: FunctionRecord,
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
                namespace=record.namespace,
                function=record.name,
                revision=record.revision,
                status="failed" if error else "succeeded",
                started_at=started,
                duration_ms=round(duration_ms, 3),
                cold_start=cold,
                init_duration_ms=None if init_ms is None else round(init_ms, 3),
                error=error.to_body()["error"] if error else None,
            )
        )
        if isinstance(error, InvocationError):
            log.info(
                "invocation %s of %s failed: %s %s", invocation_id, record.name, error.code, error.message
            )


def runtime_environment(record: FunctionRecord) -> dict[str, str]:
    """The whole environment of an instance: the function's env and documented runtime variables.

    Names follow Lambda's so that existing functions that read them move over
    unchanged; nothing here names the platform's host, port or data.
    """
    config = record.config
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "HOME": "/tmp",
        "LAMBDA_TASK_ROOT": "/var/task",
        # The runtime's own libpython for a Python the function starts (its run path names a
        # host directory that is not there inside).
        "LD_LIBRARY_PATH": "/var/lang/lib",
        "AWS_LAMBDA_FUNCTION_NAME": record.name,
        "AWS_LAMBDA_FUNCTION_VERSION": str(record.revision),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_EXECUTION_ENV": f"wuzhao_{config.runtime}",
        "_HANDLER": config.handler,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(config.env)
    return env
