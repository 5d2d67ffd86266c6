"""Writes invocation records and log lines in batches, off the invoke hot path.

A call only appends to in-memory lists; a background task commits them every
``interval`` seconds in one transaction each. Readers that must see a call that
just finished (the API's invocation and log routes) ``flush()`` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from wuzhao.store.api import InvocationRecord, LogLine, Store

log = logging.getLogger("wuzhao.recorder")


class Recorder:
    def __init__(self, store: Store, *, interval: float = 0.05, max_pending: int = 5000) -> None:
        self._store = store
        self._interval = interval
        self._max_pending = max_pending
        self._records: list[InvocationRecord] = []
        self._lines: list[LogLine] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._flush_lock = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wuzhao-recorder")

    def record(self, record: InvocationRecord) -> None:
        self._records.append(record)
        if len(self._records) >= self._max_pending:
            self._wake.set()

    def log(self, namespace: str, function: str, invocation_id: str | None, stream: str, text: str) -> None:
        self._lines.append(LogLine(time.time(), namespace, function, invocation_id, stream, text))
        if len(self._lines) >= self._max_pending:
            self._wake.set()

    async def flush(self) -> None:
        async with self._flush_lock:
            records, self._records = self._records, []
            lines, self._lines = self._lines, []
            try:
                if lines:
                    await self._store.append_logs(lines)
                    lines = []
                if records:
                    await self._store.save_invocations(records)
            except BaseException:
                # Keep what was not written, oldest first, for the next flush.
                self._lines[:0] = lines
                self._records[:0] = records
                raise

    async def close(self) -> None:
        """Stop the background task (never mid-write: it is asked, not cancelled), then flush."""
        if self._task is not None:
            self._closing = True
            self._wake.set()
            await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # keep recording; the store may come back
                log.exception("could not write invocation records")
