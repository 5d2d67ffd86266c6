"""The function registry: deploy, look up and delete functions.

The registry keeps every function record in memory (loaded once at start) so
the invoke hot path never reads the database; every change goes to the store
first and reaches the cache only once it is durable.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Awaitable, Callable

from wuzhao.control.packages import CodePackages
from wuzhao.domain.functions import (
    FunctionConfig,
    FunctionRecord,
    FunctionUpdate,
    check_name,
    handler_module_files,
    merge_config,
)
from wuzhao.errors import BadRequest, InvalidCode, NotFound
from wuzhao.store.api import Store

# Called after a function changed or was deleted (with None), so the worker can
# retire instances of the old revision.
ChangeListener = Callable[[FunctionRecord, FunctionRecord | None], Awaitable[None]]
# Raises BadRequest when a configuration names layers or secrets that do not exist.
ReferenceCheck = Callable[[str, FunctionConfig], Awaitable[None]]


class FunctionRegistry:
    def __init__(
        self,
        store: Store,
        packages: CodePackages,
        *,
        clock: Callable[[], float] = time.time,
        check_references: ReferenceCheck | None = None,
    ):
        self._store = store
        self._check_references = check_references
        self._packages = packages
        self._clock = clock
        self._functions: dict[tuple[str, str], FunctionRecord] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._listeners: list[ChangeListener] = []

    def on_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    async def load(self) -> None:
        self._functions = {(f.namespace, f.name): f for f in await self._store.list_functions()}

    def get(self, namespace: str, name: str) -> FunctionRecord:
        try:
            return self._functions[(namespace, name)]
        except KeyError:
            raise NotFound(f"function {name!r} does not exist") from None

    def provisioned(self) -> list[FunctionRecord]:
        """Every function that keeps instances started (``min_instances`` > 0)."""
        return [f for f in self._functions.values() if f.config.min_instances]

    def list(self, namespace: str) -> list[FunctionRecord]:
        return sorted((f for (ns, _), f in self._functions.items() if ns == namespace), key=lambda f: f.name)

    async def put(self, namespace: str, name: str, update: FunctionUpdate) -> tuple[FunctionRecord, bool]:
        """Create or update a function. Returns the record and whether it was created.

        Deploying what is already deployed changes nothing (same revision), so
        deploys are idempotent.
        """
        check_name(name)
        key = (namespace, name)
        async with self._locks.setdefault(key, asyncio.Lock()):
            current = self._functions.get(key)
            config = merge_config(current.config if current else None, update)
            if self._check_references is not None:
                await self._check_references(namespace, config)
            required = handler_module_files(config.handler)
            if update.code is not None:
                data = _decode_code(update.code)
                package = await asyncio.to_thread(self._packages.add, data, required_files=required)
                sha, size = package.sha256, package.size
            elif current is None:
                raise BadRequest("code is required to create a function", field="code")
            else:
                sha, size = current.code_sha256, current.code_size
                code_dir = self._packages.code_dir(sha)
                if not any((code_dir / f).is_file() for f in required):
                    raise InvalidCode(
                        f"the handler's module is not in the code package: expected {' or '.join(required)}",
                        field="handler",
                    )
            if current and current.config == config and current.code_sha256 == sha:
                return current, False
            now = self._clock()
            record = FunctionRecord(
                namespace=namespace,
                name=name,
                config=config,
                code_sha256=sha,
                code_size=size,
                revision=current.revision + 1 if current else 1,
                created_at=current.created_at if current else now,
                updated_at=now,
            )
            await self._store.save_function(record)
            self._functions[key] = record
            if current is not None:
                await self._notify(current, record)
            return record, current is None

    async def delete(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        async with self._locks.setdefault(key, asyncio.Lock()):
            current = self.get(namespace, name)
            await self._store.delete_function(namespace, name)
            del self._functions[key]
            await self._notify(current, None)

    async def _notify(self, old: FunctionRecord, new: FunctionRecord | None) -> None:
        for listener in self._listeners:
            await listener(old, new)


def _decode_code(code: str) -> bytes:
    try:
        return base64.b64decode(code, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidCode("code must be the base64 encoding of a zip archive", field="code") from None
