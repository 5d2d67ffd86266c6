"""Namespaces, API keys, layers and secrets, in SQLite."""

from __future__ import annotations

from wuzhao.errors import Conflict
from wuzhao.store.api import ApiKeyRecord, LayerRecord, NamespaceRecord, SecretRecord
from wuzhao.store.sqlite.connection import Connection

_KEY = "key_id, secret_hash, namespace, role, created_at, description"
_LAYER = "namespace, name, version, code_sha256, code_size, description, created_at"
# What a namespace can hold; it may be deleted only when none of these name it.
_OWNED = ("functions", "layers", "secrets", "api_keys")
# What a namespace keeps of what happened; deleted with it.
_HISTORY = ("invocations", "logs")


class TenancyTables(Connection):
    # namespaces

    async def save_namespace(self, namespace: NamespaceRecord) -> None:
        await self.execute(
            "INSERT OR REPLACE INTO namespaces (name, created_at, max_instances, max_memory_mb)"
            " VALUES (?, ?, ?, ?)",
            (namespace.name, namespace.created_at, namespace.max_instances, namespace.max_memory_mb),
        )

    async def get_namespace(self, name: str) -> NamespaceRecord | None:
        row = await self.fetch_one(
            "SELECT name, created_at, max_instances, max_memory_mb FROM namespaces WHERE name = ?", (name,)
        )
        return NamespaceRecord(*row) if row else None

    async def list_namespaces(self) -> list[NamespaceRecord]:
        rows = await self.fetch_all(
            "SELECT name, created_at, max_instances, max_memory_mb FROM namespaces ORDER BY name"
        )
        return [NamespaceRecord(*row) for row in rows]

    async def delete_namespace(self, name: str) -> bool:
        async with self.transaction(immediate=True) as db:
            for table in _OWNED:
                async with db.execute(f"SELECT COUNT(*) FROM {table} WHERE namespace = ?", (name,)) as cur:
                    (count,) = await cur.fetchone()  # type: ignore[misc]
                if count:
                    raise Conflict(f"namespace {name!r} still holds {count} {table.replace('_', ' ')}")
            async with db.execute("DELETE FROM namespaces WHERE name = ?", (name,)) as cur:
                deleted = cur.rowcount > 0
            if deleted:
                # Its history goes with it: a namespace made again under this name (another
                # tenant, perhaps) must not read the old one's invocation records and logs.
                for table in _HISTORY:
                    await db.execute(f"DELETE FROM {table} WHERE namespace = ?", (name,))
            return deleted

    # API keys

    async def add_key(self, key: ApiKeyRecord) -> None:
        await self.execute(
            f"INSERT INTO api_keys ({_KEY}) VALUES (?, ?, ?, ?, ?, ?)",
            (key.key_id, key.secret_hash, key.namespace, key.role, key.created_at, key.description),
        )

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        row = await self.fetch_one(f"SELECT {_KEY} FROM api_keys WHERE key_id = ?", (key_id,))
        return ApiKeyRecord(*row) if row else None

    async def list_keys(self) -> list[ApiKeyRecord]:
        return [
            ApiKeyRecord(*row)
            for row in await self.fetch_all(f"SELECT {_KEY} FROM api_keys ORDER BY created_at")
        ]

    async def delete_key(self, key_id: str) -> bool:
        return await self.execute("DELETE FROM api_keys WHERE key_id = ?", (key_id,)) > 0

    # layers

    async def add_layer(self, layer: LayerRecord) -> None:
        async with self.transaction(immediate=True) as db:
            await self._take_number(db, "layer", layer.namespace, layer.name, layer.version)
            await db.execute(
                f"INSERT INTO layers ({_LAYER}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    layer.namespace,
                    layer.name,
                    layer.version,
                    layer.code_sha256,
                    layer.code_size,
                    layer.description,
                    layer.created_at,
                ),
            )

    async def list_layers(self, namespace: str, name: str | None = None) -> list[LayerRecord]:
        if name is None:
            rows = await self.fetch_all(
                f"SELECT {_LAYER} FROM layers WHERE namespace = ? ORDER BY name, version", (namespace,)
            )
        else:
            rows = await self.fetch_all(
                f"SELECT {_LAYER} FROM layers WHERE namespace = ? AND name = ? ORDER BY version",
                (namespace, name),
            )
        return [LayerRecord(*row) for row in rows]

    async def delete_layer(self, namespace: str, name: str, version: int) -> bool:
        changed = await self.execute(
            "DELETE FROM layers WHERE namespace = ? AND name = ? AND version = ?", (namespace, name, version)
        )
        return changed > 0

    # secrets

    async def save_secret(self, secret: SecretRecord) -> None:
        await self.execute(
            "INSERT OR REPLACE INTO secrets (namespace, name, ciphertext, updated_at) VALUES (?, ?, ?, ?)",
            (secret.namespace, secret.name, secret.ciphertext, secret.updated_at),
        )

    async def list_secrets(self, namespace: str) -> list[SecretRecord]:
        rows = await self.fetch_all(
            "SELECT namespace, name, ciphertext, updated_at FROM secrets WHERE namespace = ? ORDER BY name",
            (namespace,),
        )
        return [SecretRecord(*row) for row in rows]

    async def delete_secret(self, namespace: str, name: str) -> bool:
        changed = await self.execute(
            "DELETE FROM secrets WHERE namespace = ? AND name = ?", (namespace, name)
        )
        return changed > 0
