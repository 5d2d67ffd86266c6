"""Prometheus metrics of one node: what the scaler and the operators watch.

One registry per platform (never the library's global one), so two servers in
one process (tests) never mix their numbers. Counters and histograms are
updated on the hot path (a dict lookup and an add each); instance counts are
read from the worker only when someone scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Seconds: from a warm sub-millisecond call to the 900 s timeout.
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
)

# (namespace, function) -> {"idle": n, "busy": m}, for every function with instances
InstanceCounts = Callable[[], dict[tuple[str, str], dict[str, int]]]
# (namespace, function) -> unfinished asynchronous calls (queued, running, failed)
QueueDepth = Callable[[], dict[tuple[str, str], int]]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.invocations = Counter(
            "wuzhao_invocations",
            "Calls answered, by function and outcome (success or an error code).",
            ["namespace", "function", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "wuzhao_invocation_duration_seconds",
            "Time the handler ran (warm) or the instance started and the handler ran (cold).",
            ["namespace", "function"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.cold_starts = Counter(
            "wuzhao_cold_starts",
            "Calls that started a new instance.",
            ["namespace", "function"],
            registry=self.registry,
        )
        self.throttles = Counter(
            "wuzhao_throttles",
            "Calls refused for capacity: Throttled (concurrency) or QuotaExceeded (namespace quota).",
            ["namespace", "function", "reason"],
            registry=self.registry,
        )

        self.evictions = Counter(
            "wuzhao_evictions",
            "Idle instances stopped to make room: for a namespace's quota or the node's memory budget.",
            ["namespace", "function", "reason"],
            registry=self.registry,
        )

        self.async_outcomes = Counter(
            "wuzhao_async_outcomes",
            "Asynchronous calls by what happened: accepted, succeeded, retried (an attempt failed), "
            "postponed (not run: throttled or over quota; no attempt used), dead.",
            ["namespace", "function", "outcome"],
            registry=self.registry,
        )

        self.recursive_loops = Counter(
            "wuzhao_recursive_loops",
            "Calls not made because their chain of calls had already called the function "
            "max_chain_calls times (each recorded as a dead call, RecursiveLoop), by that function.",
            ["namespace", "function"],
            registry=self.registry,
        )

        self.function_api_calls = Counter(
            "wuzhao_function_api_calls",
            "Requests functions made of the platform through the in-function API (wuzhao.fn), by "
            "the calling function, operation (unknown for a name the worker does not know) and "
            "outcome (ok or the error code the function got).",
            ["namespace", "function", "op", "outcome"],
            registry=self.registry,
        )

    def function_api_call(self, namespace: str, function: str, op: str, outcome: str) -> None:
        self.function_api_calls.labels(namespace, function, op, outcome).inc()

    def async_outcome(self, namespace: str, function: str, outcome: str) -> None:
        self.async_outcomes.labels(namespace, function, outcome).inc()

    def recursive_loop(self, namespace: str, function: str) -> None:
        self.recursive_loops.labels(namespace, function).inc()

    def watch_queue(self, depth: QueueDepth, running: InstanceCounts) -> None:
        """The queue's depth (as of the last refresh) and the asynchronous attempts running."""
        self.registry.register(_QueueCollector(depth, running))

    def observe(self, namespace: str, function: str, *, outcome: str, seconds: float, cold: bool) -> None:
        self.invocations.labels(namespace, function, outcome).inc()
        if outcome in ("Throttled", "QuotaExceeded"):
            self.throttles.labels(namespace, function, outcome).inc()
            return
        self.duration.labels(namespace, function).observe(seconds)
        if cold:
            self.cold_starts.labels(namespace, function).inc()

    def watch_instances(self, counts: InstanceCounts) -> None:
        self.registry.register(_InstanceCollector(counts))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _InstanceCollector(Collector):
    def __init__(self, counts: InstanceCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "wuzhao_instances",
            "Live instances by function and state.",
            labels=["namespace", "function", "state"],
        )
        for (namespace, function), states in sorted(self._counts().items()):
            for state, count in sorted(states.items()):
                family.add_metric([namespace, function, state], count)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class _QueueCollector(Collector):
    def __init__(self, depth: QueueDepth, running: InstanceCounts) -> None:
        self._depth = depth
        self._running = running

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "wuzhao_async_queue_depth",
            "Unfinished asynchronous calls (queued, running, waiting for a retry) by function.",
            labels=["namespace", "function"],
        )
        for (namespace, function), count in sorted(self._depth().items()):
            depth.add_metric([namespace, function], count)
        yield depth
        running = GaugeMetricFamily(
            "wuzhao_async_running",
            "Asynchronous attempts running by function and kind (first or retry; retries are bounded "
            "by the retry budget).",
            labels=["namespace", "function", "kind"],
        )
        for (namespace, function), kinds in sorted(self._running().items()):
            for kind, count in sorted(kinds.items()):
                running.add_metric([namespace, function, kind], count)
        yield running

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
