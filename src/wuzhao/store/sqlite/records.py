"""Invocation records and log lines, in SQLite (written in batches by the recorder)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from wuzhao.store.api import InvocationRecord, LogLine
from wuzhao.store.sqlite.connection import Connection

_INVOCATION = (
    "id, namespace, function, revision, status, started_at, duration_ms, cold_start,"
    " init_duration_ms, error, version"
)
_LOG = "timestamp, namespace, function, invocation_id, stream, message, seq"


class RecordTables(Connection):
    async def save_invocations(self, records: Sequence[InvocationRecord]) -> None:
        await self.execute_many(
            f"INSERT OR REPLACE INTO invocations ({_INVOCATION}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    r.id,
                    r.namespace,
                    r.function,
                    r.revision,
                    r.status,
                    r.started_at,
                    r.duration_ms,
                    int(r.cold_start),
                    r.init_duration_ms,
                    None if r.error is None else msgspec.json.encode(r.error),
                    r.version,
                )
                for r in records
            ),
        )

    async def get_invocation(self, invocation_id: str) -> InvocationRecord | None:
        row = await self.fetch_one(f"SELECT {_INVOCATION} FROM invocations WHERE id = ?", (invocation_id,))
        if row is None:
            return None
        return InvocationRecord(
            id=row[0],
            namespace=row[1],
            function=row[2],
            revision=row[3],
            status=row[4],
            started_at=row[5],
            duration_ms=row[6],
            cold_start=bool(row[7]),
            init_duration_ms=row[8],
            error=None if row[9] is None else msgspec.json.decode(row[9]),
            version=row[10],
        )

    async def append_logs(self, lines: Sequence[LogLine]) -> None:
        await self.execute_many(
            "INSERT INTO logs (timestamp, namespace, function, invocation_id, stream, message)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                (ln.timestamp, ln.namespace, ln.function, ln.invocation_id, ln.stream, ln.message)
                for ln in lines
            ),
        )

    async def query_logs(
        self,
        namespace: str,
        function: str,
        *,
        since: float | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[LogLine]:
        where = "namespace = ? AND function = ?"
        args: list[Any] = [namespace, function]
        if since is not None:
            where += " AND timestamp >= ?"
            args.append(since)
        if after is not None:
            where += " AND seq > ?"
            args.append(after)
        forward = since is not None or after is not None
        rows = await self.fetch_all(
            f"SELECT {_LOG} FROM logs WHERE {where} ORDER BY seq {'ASC' if forward else 'DESC'} LIMIT ?",
            (*args, limit),
        )
        lines = [LogLine(*row) for row in rows]
        return lines if forward else lines[::-1]

    async def invocation_logs(self, invocation_id: str, *, limit: int = 100) -> list[LogLine]:
        rows = await self.fetch_all(
            f"SELECT {_LOG} FROM logs WHERE invocation_id = ? ORDER BY seq DESC LIMIT ?",
            (invocation_id, limit),
        )
        return [LogLine(*row) for row in reversed(rows)]
