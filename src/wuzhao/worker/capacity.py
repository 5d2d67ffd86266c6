"""Room for new instances: the namespace's quotas and the node's memory budget.

The sum of ``memory_mb`` of live instances (idle, busy and starting) never goes
over the node's budget, and a namespace never over its quotas. To fit a new
instance, idle instances are stopped least recently used first
(``domain.instances.evictions`` decides which): first within the namespace for
its quota, then anywhere on the node for the budget. When nothing idle is left
to stop, a namespace over its quota is refused at once (429 QuotaExceeded) and a
call on a full node waits for room up to its deadline (then 429 Throttled).
While calls of another namespace wait for room, a namespace may not grow past
an equal share of the node (``domain.instances.must_yield``): one tenant cannot
take the whole node from the others.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable

from wuzhao.domain.instances import Candidate, evictions, must_yield
from wuzhao.domain.versions import Executable
from wuzhao.errors import QuotaExceeded
from wuzhao.observe.metrics import Metrics
from wuzhao.store.api import NamespaceRecord
from wuzhao.worker.instance import Instance
from wuzhao.worker.pool import FunctionPool


class NodeCapacity:
    def __init__(
        self,
        *,
        pools: Callable[[], Iterable[FunctionPool]],
        quotas: Callable[[str], NamespaceRecord],
        node_memory_mb: int,
        stop: Callable[[Instance], None],
        metrics: Metrics | None = None,
    ) -> None:
        self._pools = pools
        self._quotas = quotas
        self.node_memory_mb = node_memory_mb
        self._stop = stop
        self._metrics = metrics
        self._waiters: list[asyncio.Future[None]] = []
        self._waiting: Counter[str] = Counter()  # namespaces with calls waiting for room

    def usage(self, namespace: str | None = None) -> dict[str, int]:
        """Live instances and their memory, of one namespace or of the whole node."""
        instances = memory = 0
        for pool in self._pools():
            if namespace is None or pool.target.namespace == namespace:
                count = len(pool.idle) + len(pool.busy) + pool.starting
                instances += count
                memory += count * pool.target.config.memory_mb
        return {"instances": instances, "memory_mb": memory}

    def admit(self, target: Executable) -> bool:
        self._fit_quota(target)
        memory = target.config.memory_mb
        usage_mb = {ns: self.usage(ns)["memory_mb"] for ns in {p.target.namespace for p in self._pools()}}
        waiting = [ns for ns, count in self._waiting.items() if count]
        if must_yield(
            usage_mb, waiting, namespace=target.namespace, need_mb=memory, budget_mb=self.node_memory_mb
        ):
            return False  # others wait and this namespace is over its share: they go first
        over = sum(usage_mb.values()) + memory - self.node_memory_mb
        if over <= 0:
            return True
        return self._evict(self._idle(), instances_over=0, memory_over=over, reason="node")

    async def wait(self, target: Executable, deadline: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._waiting[target.namespace] += 1
        try:
            await asyncio.wait_for(waiter, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            pass
        finally:
            self._waiting[target.namespace] -= 1
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def freed(self) -> None:
        """An instance was released or stopped: every waiting call looks again."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _fit_quota(self, target: Executable) -> None:
        quotas = self._quotas(target.namespace)
        if quotas.max_instances is None and quotas.max_memory_mb is None:
            return
        usage = self.usage(target.namespace)
        instances_over = memory_over = 0
        if quotas.max_instances is not None:
            instances_over = usage["instances"] + 1 - quotas.max_instances
        if quotas.max_memory_mb is not None:
            memory_over = usage["memory_mb"] + target.config.memory_mb - quotas.max_memory_mb
        idle = self._idle(target.namespace)
        if not self._evict(idle, instances_over=instances_over, memory_over=memory_over, reason="quota"):
            limits = []
            if quotas.max_instances is not None:
                limits.append(f"{quotas.max_instances} instances")
            if quotas.max_memory_mb is not None:
                limits.append(f"{quotas.max_memory_mb} MB")
            raise QuotaExceeded(
                f"namespace {target.namespace!r} is at its quota of {' and '.join(limits)}: it runs "
                f"{usage['instances']} busy instances using {usage['memory_mb']} MB, "
                f"a new one needs {target.config.memory_mb} MB"
            )

    def _idle(self, namespace: str | None = None) -> dict[str, tuple[FunctionPool, Instance]]:
        return {
            instance.id: (pool, instance)
            for pool in self._pools()
            if not pool.retired and (namespace is None or pool.target.namespace == namespace)
            for instance in pool.idle
        }

    def _evict(
        self,
        idle: dict[str, tuple[FunctionPool, Instance]],
        *,
        instances_over: int,
        memory_over: int,
        reason: str,
    ) -> bool:
        candidates = (Candidate(i.id, i.idle_since, i.target.config.memory_mb) for _, i in idle.values())
        chosen = evictions(candidates, instances_over=instances_over, memory_over_mb=memory_over)
        if chosen is None:
            return False
        for instance_id in chosen:
            pool, _ = idle[instance_id]
            for taken in pool.take_expired({instance_id}):
                if self._metrics is not None:
                    target = taken.target
                    self._metrics.evictions.labels(target.namespace, target.function, reason).inc()
                self._stop(taken)
        return True
