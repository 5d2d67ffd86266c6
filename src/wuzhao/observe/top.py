"""What `wuzhao top` shows, computed from two scrapes of /metrics (pure: no I/O).

Rates and percentiles come from the *difference* between two snapshots, so the
table shows the last interval, not the whole life of the server.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, str]  # (namespace, function)
K = TypeVar("K")


@dataclass
class Snapshot:
    calls: dict[Key, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))  # outcome -> n
    buckets: dict[Key, dict[float, float]] = field(default_factory=lambda: defaultdict(dict))  # le -> n
    instances: dict[Key, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))  # state -> n


@dataclass(frozen=True)
class Row:
    namespace: str
    function: str
    rate: float  # calls per second
    errors: float  # failed calls per second (any outcome but success)
    p50_ms: float | None
    p99_ms: float | None
    idle: int
    busy: int


def parse(text: str) -> Snapshot:
    snapshot = Snapshot()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if "function" not in labels:
                continue
            key = (labels["namespace"], labels["function"])
            if sample.name == "wuzhao_invocations_total":
                snapshot.calls[key][labels["outcome"]] = sample.value
            elif sample.name == "wuzhao_invocation_duration_seconds_bucket":
                snapshot.buckets[key][float(labels["le"])] = sample.value
            elif sample.name == "wuzhao_instances":
                snapshot.instances[key][labels["state"]] = sample.value
    return snapshot


def rows(before: Snapshot, after: Snapshot, seconds: float) -> list[Row]:
    """One row per function seen in ``after``, busiest first."""
    keys = set(after.calls) | set(after.instances)
    table = []
    for key in keys:
        calls = _delta(before.calls.get(key, {}), after.calls.get(key, {}))
        buckets = _delta(before.buckets.get(key, {}), after.buckets.get(key, {}))
        states = after.instances.get(key, {})
        table.append(
            Row(
                namespace=key[0],
                function=key[1],
                rate=sum(calls.values()) / seconds,
                errors=sum(n for outcome, n in calls.items() if outcome != "success") / seconds,
                p50_ms=_quantile(buckets, 0.50),
                p99_ms=_quantile(buckets, 0.99),
                idle=int(states.get("idle", 0)),
                busy=int(states.get("busy", 0)),
            )
        )
    return sorted(table, key=lambda r: (-r.rate, -r.busy, r.namespace, r.function))


def _delta(before: Mapping[K, float], after: Mapping[K, float]) -> dict[K, float]:
    # A restarted server starts its counters at 0 again: never show negative traffic.
    return {k: max(0.0, v - before.get(k, 0.0)) for k, v in after.items()}


def _quantile(cumulative: dict[float, float], q: float) -> float | None:
    """The q-quantile in ms from cumulative histogram buckets, interpolated inside its bucket."""
    if not cumulative:
        return None
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower_bound * 1000  # beyond the last finite bucket: its bound is all we know
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return (lower_bound + (bound - lower_bound) * share) * 1000
        lower_bound, lower_count = bound, count
    return lower_bound * 1000
