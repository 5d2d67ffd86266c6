"""Triggers and the last tick each timer fired, in SQLite."""

from __future__ import annotations

from typing import Any

import msgspec

from wuzhao.domain.triggers import TriggerSpec
from wuzhao.store.api import TriggerRecord
from wuzhao.store.sqlite.connection import Connection

_TRIGGER = "namespace, name, spec, created_at, updated_at"
_decode_spec = msgspec.json.Decoder(TriggerSpec).decode


class TriggerTables(Connection):
    async def save_trigger(self, trigger: TriggerRecord) -> None:
        # An upsert, not INSERT OR REPLACE: that would delete the row and its last_tick with it.
        await self.execute(
            "INSERT INTO triggers (namespace, name, function, spec, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, name) DO UPDATE SET"
            " function = excluded.function, spec = excluded.spec,"
            " created_at = excluded.created_at, updated_at = excluded.updated_at",
            (
                trigger.namespace,
                trigger.name,
                trigger.spec.function,
                msgspec.json.encode(trigger.spec),
                trigger.created_at,
                trigger.updated_at,
            ),
        )

    async def get_trigger(self, namespace: str, name: str) -> TriggerRecord | None:
        row = await self.fetch_one(
            f"SELECT {_TRIGGER} FROM triggers WHERE namespace = ? AND name = ?", (namespace, name)
        )
        return _trigger(row) if row else None

    async def list_triggers(self, namespace: str | None = None) -> list[TriggerRecord]:
        if namespace is None:
            rows = await self.fetch_all(f"SELECT {_TRIGGER} FROM triggers ORDER BY namespace, name")
        else:
            rows = await self.fetch_all(
                f"SELECT {_TRIGGER} FROM triggers WHERE namespace = ? ORDER BY name", (namespace,)
            )
        return [_trigger(row) for row in rows]

    async def delete_trigger(self, namespace: str, name: str) -> bool:
        changed = await self.execute(
            "DELETE FROM triggers WHERE namespace = ? AND name = ?", (namespace, name)
        )
        return changed > 0

    async def record_tick(self, namespace: str, name: str, tick: int) -> bool:
        changed = await self.execute(
            "UPDATE triggers SET last_tick = ? WHERE namespace = ? AND name = ?", (tick, namespace, name)
        )
        return changed > 0

    async def last_ticks(self) -> dict[tuple[str, str], int]:
        rows = await self.fetch_all(
            "SELECT namespace, name, last_tick FROM triggers WHERE last_tick IS NOT NULL"
        )
        return {(row[0], row[1]): int(row[2]) for row in rows}


def _trigger(row: Any) -> TriggerRecord:
    return TriggerRecord(row[0], row[1], _decode_spec(row[2]), row[3], row[4])
