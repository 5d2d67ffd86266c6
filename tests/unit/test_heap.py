"""The heap kept warm: thresholds from the largest body, and no page faults per large body."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from wuzhao import heap

MIB = 1 << 20


@pytest.mark.parametrize(
    ("largest", "copies", "expected"),
    [
        (6 * MIB, 2, (7 * MIB, 14 * MIB)),  # the default caps, the runtime
        (6 * MIB, 4, (7 * MIB, 28 * MIB)),  # the server
        (6 * MIB + 1, 2, (8 * MIB, 16 * MIB)),
        (1, 2, (2 * MIB, 4 * MIB)),
        (6 * MIB, 1, (7 * MIB, 14 * MIB)),  # never below glibc's own ratio of two
        (100 * MIB, 2, (heap.MAX_THRESHOLD, 2 * heap.MAX_THRESHOLD)),  # glibc's ceiling
    ],
)
def test_thresholds(largest: int, copies: int, expected: tuple[int, int]) -> None:
    assert heap.thresholds(largest, copies) == expected


# A warm process decoding a 5 MB event again and again, as the runtime does: the
# page faults of the last rounds, with and without keep_warm (in a fresh process:
# the thresholds are the whole process's).
DECODE = """
import json, resource, sys
from wuzhao import heap
if sys.argv[1] == "warm":
    assert heap.keep_warm()
raw = json.dumps({"blob": "x" * (5 << 20)}).encode()
for round in range(8):
    if round == 4:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    text = raw.decode()
    event = json.loads(text)
    del text, event
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 4)
"""


def faults_per_decode(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", DECODE, mode], capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout))


def test_a_warm_heap_decodes_a_large_event_without_new_pages() -> None:
    cold, warm = faults_per_decode("cold"), faults_per_decode("warm")
    assert cold > 1000  # each 5 MB copy in new pages, ~1280 faults apiece (if glibc changes, so does this)
    assert warm < cold / 10
