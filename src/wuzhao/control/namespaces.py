"""Namespaces (tenants): every function, layer, secret, key and record belongs to one.

Kept in memory (loaded at start) because the worker reads a namespace's quotas
on every cold start. ``default`` always exists.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from wuzhao.domain.functions import DEFAULT_NAMESPACE, check_name
from wuzhao.errors import BadRequest, Conflict, NotFound
from wuzhao.store.api import NamespaceRecord, Store

# What a namespace holds outside the store (its buckets: "2 buckets"), or None; asked before a delete.
Holdings = Callable[[str], Awaitable[str | None]]


class Namespaces:
    def __init__(self, store: Store, *, holdings: Holdings | None = None) -> None:
        self._store = store
        self._holdings = holdings
        self._cache: dict[str, NamespaceRecord] = {}

    async def load(self) -> None:
        if await self._store.get_namespace(DEFAULT_NAMESPACE) is None:
            await self._store.save_namespace(NamespaceRecord(DEFAULT_NAMESPACE, time.time()))
        self._cache = {ns.name: ns for ns in await self._store.list_namespaces()}

    def get(self, name: str) -> NamespaceRecord:
        try:
            return self._cache[name]
        except KeyError:
            raise NotFound(f"namespace {name!r} does not exist") from None

    def exists(self, name: str) -> bool:
        return name in self._cache

    def all(self) -> list[NamespaceRecord]:
        return sorted(self._cache.values(), key=lambda ns: ns.name)

    async def create(
        self, name: str, *, max_instances: int | None = None, max_memory_mb: int | None = None
    ) -> NamespaceRecord:
        check_name(name, what="namespace")
        if name in self._cache:
            raise Conflict(f"namespace {name!r} already exists")
        return await self._save(NamespaceRecord(name, time.time(), max_instances, max_memory_mb))

    async def set_quotas(
        self, name: str, *, max_instances: int | None, max_memory_mb: int | None
    ) -> NamespaceRecord:
        current = self.get(name)
        return await self._save(NamespaceRecord(name, current.created_at, max_instances, max_memory_mb))

    async def delete(self, name: str) -> None:
        if name == DEFAULT_NAMESPACE:
            raise BadRequest("the default namespace cannot be deleted", field="name")
        self.get(name)
        held = await self._holdings(name) if self._holdings is not None else None
        if held:  # a namespace made again under this name must not find the old one's buckets
            raise Conflict(f"namespace {name!r} still holds {held}")
        await self._store.delete_namespace(name)  # Conflict while it still holds anything
        del self._cache[name]

    async def _save(self, record: NamespaceRecord) -> NamespaceRecord:
        for field, value in (
            ("max_instances", record.max_instances),
            ("max_memory_mb", record.max_memory_mb),
        ):
            if value is not None and value < 0:
                raise BadRequest(f"{field} cannot be negative", field=field)
        await self._store.save_namespace(record)
        self._cache[record.name] = record
        return record
