"""Functions, their published versions and their aliases, in SQLite."""

from __future__ import annotations

from typing import Any

import msgspec

from wuzhao.domain.functions import FunctionConfig, FunctionRecord
from wuzhao.errors import Conflict
from wuzhao.store.api import AliasRecord, VersionRecord
from wuzhao.store.sqlite.connection import Connection

_FUNCTION = "namespace, name, config, code_sha256, code_size, revision, created_at, updated_at"
_VERSION = "namespace, function, version, config, code_sha256, code_size, description, created_at"
_ALIAS = "namespace, function, name, version, additional_version, additional_weight, description, updated_at"
_encode = msgspec.json.encode


class FunctionTables(Connection):
    async def save_function(self, record: FunctionRecord) -> None:
        async with self.transaction(immediate=True) as db:
            async with db.execute(
                "SELECT revision FROM functions WHERE namespace = ? AND name = ?",
                (record.namespace, record.name),
            ) as cur:
                found = await cur.fetchone()
            stored = found[0] if found else 0
            if stored != record.revision - 1:
                raise Conflict(
                    f"function {record.name!r} changed concurrently "
                    f"(stored revision {stored}, expected {record.revision - 1}); retry"
                )
            await db.execute(
                f"INSERT OR REPLACE INTO functions ({_FUNCTION}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.namespace,
                    record.name,
                    _encode(record.config),
                    record.code_sha256,
                    record.code_size,
                    record.revision,
                    record.created_at,
                    record.updated_at,
                ),
            )

    async def get_function(self, namespace: str, name: str) -> FunctionRecord | None:
        row = await self.fetch_one(
            f"SELECT {_FUNCTION} FROM functions WHERE namespace = ? AND name = ?", (namespace, name)
        )
        return _function(row) if row else None

    async def list_functions(self, namespace: str | None = None) -> list[FunctionRecord]:
        if namespace is None:
            rows = await self.fetch_all(f"SELECT {_FUNCTION} FROM functions ORDER BY namespace, name")
        else:
            rows = await self.fetch_all(
                f"SELECT {_FUNCTION} FROM functions WHERE namespace = ? ORDER BY name", (namespace,)
            )
        return [_function(row) for row in rows]

    async def delete_function(self, namespace: str, name: str) -> bool:
        async with self.transaction() as db:
            await db.execute("DELETE FROM versions WHERE namespace = ? AND function = ?", (namespace, name))
            await db.execute("DELETE FROM aliases WHERE namespace = ? AND function = ?", (namespace, name))
            await db.execute("DELETE FROM triggers WHERE namespace = ? AND function = ?", (namespace, name))
            # A function made again under the same name starts its versions at 1.
            await db.execute(
                "DELETE FROM numbering WHERE kind = 'version' AND namespace = ? AND name = ?",
                (namespace, name),
            )
            async with db.execute(
                "DELETE FROM functions WHERE namespace = ? AND name = ?", (namespace, name)
            ) as cur:
                return cur.rowcount > 0

    # versions

    async def add_version(self, version: VersionRecord) -> None:
        async with self.transaction(immediate=True) as db:
            await self._take_number(db, "version", version.namespace, version.function, version.version)
            await db.execute(
                f"INSERT INTO versions ({_VERSION}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    version.namespace,
                    version.function,
                    version.version,
                    _encode(version.config),
                    version.code_sha256,
                    version.code_size,
                    version.description,
                    version.created_at,
                ),
            )

    async def list_versions(self, namespace: str, function: str) -> list[VersionRecord]:
        rows = await self.fetch_all(
            f"SELECT {_VERSION} FROM versions WHERE namespace = ? AND function = ? ORDER BY version",
            (namespace, function),
        )
        return [_version(row) for row in rows]

    async def delete_version(self, namespace: str, function: str, version: int) -> bool:
        changed = await self.execute(
            "DELETE FROM versions WHERE namespace = ? AND function = ? AND version = ?",
            (namespace, function, version),
        )
        return changed > 0

    # aliases

    async def save_alias(self, alias: AliasRecord) -> None:
        await self.execute(
            f"INSERT OR REPLACE INTO aliases ({_ALIAS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                alias.namespace,
                alias.function,
                alias.name,
                alias.version,
                alias.additional_version,
                alias.additional_weight,
                alias.description,
                alias.updated_at,
            ),
        )

    async def list_aliases(self, namespace: str, function: str) -> list[AliasRecord]:
        rows = await self.fetch_all(
            f"SELECT {_ALIAS} FROM aliases WHERE namespace = ? AND function = ? ORDER BY name",
            (namespace, function),
        )
        return [AliasRecord(*row) for row in rows]

    async def delete_alias(self, namespace: str, function: str, name: str) -> bool:
        changed = await self.execute(
            "DELETE FROM aliases WHERE namespace = ? AND function = ? AND name = ?",
            (namespace, function, name),
        )
        return changed > 0


def _function(row: Any) -> FunctionRecord:
    config = msgspec.json.decode(row[2], type=FunctionConfig)
    return FunctionRecord(row[0], row[1], config, *row[3:])


def _version(row: Any) -> VersionRecord:
    config = msgspec.json.decode(row[3], type=FunctionConfig)
    return VersionRecord(row[0], row[1], row[2], config, *row[4:])
