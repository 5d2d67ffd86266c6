"""The recorder batches records off the hot path and loses none when a write fails."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from wuzhao.observe.recorder import Recorder
from wuzhao.store.api import InvocationRecord, LogLine


class FlakyStore:
    """Stands in for the store: fails the first ``failures`` writes, then keeps everything."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.lines: list[LogLine] = []
        self.records: list[InvocationRecord] = []

    async def append_logs(self, lines: Sequence[LogLine]) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        self.lines.extend(lines)

    async def save_invocations(self, records: Sequence[InvocationRecord]) -> None:
        self.records.extend(records)


def record(n: int) -> InvocationRecord:
    return InvocationRecord(f"id-{n}", "default", "fn", 1, "succeeded", 0.0, 1.0, False)


def test_flush_writes_lines_and_records():
    store = FlakyStore()

    async def scenario() -> None:
        recorder = Recorder(store)  # type: ignore[arg-type]
        recorder.log("default", "fn", "id-1", "stdout", "hello")
        recorder.record(record(1))
        await recorder.flush()

    asyncio.run(scenario())
    assert [line.message for line in store.lines] == ["hello"]
    assert [r.id for r in store.records] == ["id-1"]


def test_a_failed_flush_keeps_everything_for_the_next_one_in_order():
    store = FlakyStore(failures=1)

    async def scenario() -> None:
        recorder = Recorder(store)  # type: ignore[arg-type]
        recorder.log("default", "fn", "id-1", "stdout", "first")
        recorder.record(record(1))
        with pytest.raises(OSError):
            await recorder.flush()
        recorder.log("default", "fn", "id-2", "stdout", "second")
        recorder.record(record(2))
        await recorder.flush()

    asyncio.run(scenario())
    assert [line.message for line in store.lines] == ["first", "second"]
    assert [r.id for r in store.records] == ["id-1", "id-2"]


def test_background_task_flushes_without_being_asked_and_close_flushes_the_rest():
    store = FlakyStore()

    async def scenario() -> None:
        recorder = Recorder(store, interval=0.01)  # type: ignore[arg-type]
        recorder.start()
        recorder.record(record(1))
        for _ in range(100):
            if store.records:
                break
            await asyncio.sleep(0.01)
        assert [r.id for r in store.records] == ["id-1"]
        recorder.record(record(2))
        await recorder.close()

    asyncio.run(scenario())
    assert [r.id for r in store.records] == ["id-1", "id-2"]
