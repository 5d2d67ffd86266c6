"""Durable enqueues per second of the embedded queue, next to plain SQLite from the same run.

    python bench/enqueue_rate.py [--producers 64] [--seconds 5]

Ours: ``producers`` coroutines on one uvloop event loop, each enqueuing one
small async call after another into a ``SqliteQueue`` for ``seconds``; a call
counts once ``enqueue`` returned (committed, WAL fsynced: ``synchronous=FULL``).
Baseline: one thread inserting the same calls into a plain SQLite table with
the same settings (WAL, ``synchronous=FULL``), one INSERT and one COMMIT per
call: what durable enqueues cost without group commit. Both write to files in
the same temporary directory. Prints calls/s of both, the ratio, and the
latency of one enqueue under that load.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).parent))

from common import summary

from wuzhao.queue.api import AsyncCall
from wuzhao.queue.sqlite import SqliteQueue

EVENT = b'{"name": "bench", "order": 12345}'


def new_call() -> AsyncCall:
    return AsyncCall(str(uuid.uuid4()), "default", "hello", EVENT, time.time())


async def _ours(path: Path, producers: int, seconds: float) -> tuple[float, list[float]]:
    queue = SqliteQueue(path)
    await queue.open()
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def producer() -> int:
        done = 0
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await queue.enqueue(new_call())
            latencies.append((time.perf_counter() - started) * 1000)
            done += 1
        return done

    try:
        started = time.perf_counter()
        total = sum(await asyncio.gather(*(producer() for _ in range(producers))))
        elapsed = time.perf_counter() - started
    finally:
        await queue.close()
    return total / elapsed, latencies


def ours(directory: Path, producers: int, seconds: float) -> tuple[float, list[float]]:
    """(calls/s, per-call latencies in ms) of ``producers`` concurrent producers."""
    return uvloop.run(_ours(directory / "queue.db", producers, seconds))


def baseline(directory: Path, seconds: float) -> float:
    """Calls/s of one INSERT + COMMIT per call into plain SQLite, WAL, synchronous=FULL."""
    db = sqlite3.connect(directory / "plain.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE calls (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, namespace TEXT, function TEXT,"
        " event BLOB, enqueued_at REAL, status TEXT)"
    )
    done = 0
    started = time.perf_counter()
    stop = started + seconds
    while time.perf_counter() < stop:
        call = new_call()
        db.execute("BEGIN")
        db.execute(
            "INSERT INTO calls (id, namespace, function, event, enqueued_at, status)"
            " VALUES (?, ?, ?, ?, ?, 'queued')",
            (call.id, call.namespace, call.function, call.event, call.enqueued_at),
        )
        db.execute("COMMIT")
        done += 1
    rate = done / (time.perf_counter() - started)
    db.close()
    return rate


def enqueue_pair(producers: int = 64, seconds: float = 5.0) -> tuple[float, float, dict[str, float]]:
    """(our calls/s, baseline calls/s, our per-call latency summary in ms)."""
    with tempfile.TemporaryDirectory(prefix="wuzhao-bench-queue-") as tmp:
        rate, latencies = ours(Path(tmp), producers, seconds)
        base = baseline(Path(tmp), seconds)
    return rate, base, summary(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--producers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rate, base, latency = enqueue_pair(args.producers, args.seconds)
    print(f"durable enqueue, {args.producers} concurrent producers: {rate:,.0f} calls/s")
    print(f"  one enqueue under that load: p50 {latency['p50']:.2f} ms, p99 {latency['p99']:.2f} ms")
    print(f"baseline, SQLite INSERT + COMMIT per call (WAL, synchronous=FULL): {base:,.0f} calls/s")
    print(f"ratio: {rate / base:.2f}x")


if __name__ == "__main__":
    main()
