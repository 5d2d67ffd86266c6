"""`wuzhao top`'s numbers: rates, errors and latency percentiles from two scrapes."""

from __future__ import annotations

import pytest

from wuzhao.observe.top import parse, rows

BUCKETS = (0.001, 0.01, 0.1, float("inf"))


def scrape(calls: dict[str, int], latencies: list[float], idle: int = 1, busy: int = 0) -> str:
    """Exposition text of one function, as the server's registry would write it."""
    lines = []
    for outcome, n in calls.items():
        lines.append(f'wuzhao_invocations_total{{function="f",namespace="ns",outcome="{outcome}"}} {n}')
    for bound in BUCKETS:
        le = "+Inf" if bound == float("inf") else repr(bound)
        count = sum(1 for x in latencies if x <= bound)
        lines.append(
            f'wuzhao_invocation_duration_seconds_bucket{{function="f",le="{le}",namespace="ns"}} {count}'
        )
    lines.append(f'wuzhao_instances{{function="f",namespace="ns",state="idle"}} {idle}')
    lines.append(f'wuzhao_instances{{function="f",namespace="ns",state="busy"}} {busy}')
    return "\n".join(lines) + "\n"


def test_rates_and_errors_come_from_the_difference_between_scrapes():
    before = parse(scrape({"success": 10, "FunctionError": 1}, [0.0005] * 11))
    after = parse(scrape({"success": 30, "FunctionError": 5}, [0.0005] * 35, idle=2, busy=1))
    (row,) = rows(before, after, 2.0)
    assert (row.namespace, row.function) == ("ns", "f")
    assert row.rate == pytest.approx((20 + 4) / 2)
    assert row.errors == pytest.approx(4 / 2)
    assert (row.idle, row.busy) == (2, 1)


@pytest.mark.parametrize(
    ("latencies", "p50", "p99"),
    [
        ([0.0005] * 100, 0.5, 0.99),  # all in the first bucket [0, 1 ms]: interpolated inside it
        ([0.005] * 100, 5.5, 9.91),  # all in (1, 10] ms
        ([0.0005] * 50 + [0.05] * 50, 1.0, 98.2),  # half fast, half slow
        ([5.0] * 10, 100.0, 100.0),  # beyond the last finite bucket: its bound
    ],
)
def test_percentiles_interpolate_inside_their_bucket(latencies, p50, p99):
    before = parse(scrape({"success": 0}, []))
    after = parse(scrape({"success": len(latencies)}, latencies))
    (row,) = rows(before, after, 1.0)
    assert row.p50_ms == pytest.approx(p50, rel=0.01)
    assert row.p99_ms == pytest.approx(p99, rel=0.01)


def test_no_calls_in_the_interval_means_no_latency_and_a_restart_never_goes_negative():
    same = parse(scrape({"success": 5}, [0.001] * 5))
    (row,) = rows(same, same, 1.0)
    assert (row.rate, row.p50_ms, row.p99_ms) == (0.0, None, None)
    restarted = parse(scrape({"success": 1}, [0.001]))
    (row,) = rows(same, restarted, 1.0)
    assert row.rate == 0.0
