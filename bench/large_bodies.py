"""Large bodies: a 5 MB event and a 5 MB result, warm, each next to its in-process baseline.

    python bench/large_bodies.py [--runs 30]

Event: the suite's figure (``suite.large_event``): a warm call carrying a ~5 MB
event whose handler returns its length, next to copying and parsing the same
bytes in-process. Result: a warm call whose handler returns a ~5 MB string,
next to encoding it in-process as the runtime does. Both travel through
memfds (``docs/runtime-protocol.md``); the target is at most twice the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import Http, deploy, summary, wuzhao_server
from suite import large_event

SIZE = 5 * 1024 * 1024
RESULT = f"def handler(event, context):\n    return 'x' * {SIZE}\n"


def large_result(runs: int) -> tuple[float, float]:
    """p50 ms of a warm call returning a ~5 MB string, next to encoding it in-process."""
    with wuzhao_server() as (port, key):
        http = Http(port, key)
        deploy(http, "bigresult", RESULT)
        http.timed("POST", "/v1/functions/bigresult/invoke", b"{}")
        ours = summary([http.timed("POST", "/v1/functions/bigresult/invoke", b"{}") for _ in range(runs)])
    samples = []
    value = "x" * SIZE
    for _ in range(runs):
        started = time.perf_counter()
        json.dumps(value, separators=(",", ":")).encode()
        samples.append((time.perf_counter() - started) * 1000)
    return ours["p50"], summary(samples)["p50"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=30, help="calls per figure")
    args = parser.parse_args()
    event, event_base = large_event(runs=args.runs)
    result, result_base = large_result(args.runs)
    print("| figure | wuzhao | baseline (same run) | ratio |")
    print("|---|---|---|---|")
    print(f"| 5 MB event, warm call, p50 | {event:.2f} ms | {event_base:.2f} ms (in-process copy + parse) "
          f"| {event / event_base:.2f}x |")  # fmt: skip
    print(f"| 5 MB result, warm call, p50 | {result:.2f} ms | {result_base:.2f} ms (in-process encode) "
          f"| {result / result_base:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
