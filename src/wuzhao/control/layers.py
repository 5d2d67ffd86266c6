"""Layers: versioned zips of shared code that functions mount read-only under ``/opt``.

A layer version is stored like a code package (content-addressed, once per
node) and is immutable. A function names the exact versions it uses
(``"name:version"``), so publishing a new layer version changes no running
function until it is redeployed with the new reference.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from wuzhao.control.packages import CodePackages
from wuzhao.domain.functions import check_name
from wuzhao.errors import BadRequest, Conflict, NotFound
from wuzhao.store.api import LayerRecord, Store

MAX_LAYERS = 5  # as on Lambda
_REFERENCE = re.compile(r"^([a-z0-9][a-z0-9_-]{0,63}):([1-9][0-9]{0,8})\Z")


@dataclass(frozen=True)
class LayerRef:
    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


def parse_layer_refs(refs: list[str]) -> list[LayerRef]:
    if len(refs) > MAX_LAYERS:
        raise BadRequest(f"a function uses at most {MAX_LAYERS} layers", field="layers")
    parsed = []
    for ref in refs:
        match = _REFERENCE.match(ref)
        if not match:
            raise BadRequest(f"layer reference {ref!r} must look like name:version", field="layers")
        parsed.append(LayerRef(match.group(1), int(match.group(2))))
    if len({r.name for r in parsed}) != len(parsed):
        raise BadRequest("a layer can be used only once per function", field="layers")
    return parsed


def check_not_reserved(refs: list[str], reserved: Collection[str]) -> None:
    """400 when a function names a layer like one of the operator's runtime layers (both at /opt/<name>)."""
    for ref in parse_layer_refs(refs):
        if ref.name in reserved:
            raise BadRequest(
                f"layer {ref} cannot be used: {ref.name!r} is the name of a runtime layer of this server, "
                f"which every function already has at /opt/{ref.name}",
                field="layers",
            )


# (namespace, "name:version") -> what uses that layer version ("fn", "fn:3", ...)
LayerUsers = Callable[[str, str], list[str]]


class Layers:
    def __init__(
        self,
        store: Store,
        packages: CodePackages,
        *,
        clock: Callable[[], float] = time.time,
        users: LayerUsers | None = None,
    ) -> None:
        self._users = users
        self._store = store
        self._packages = packages
        self._clock = clock
        self._lock = asyncio.Lock()

    async def push(self, namespace: str, name: str, data: bytes, description: str = "") -> LayerRecord:
        check_name(name, what="layer")
        package = await asyncio.to_thread(self._packages.add, data)
        async with self._lock:  # numbering is compare-and-set in the store; serialise our own pushes
            record = LayerRecord(
                namespace=namespace,
                name=name,
                version=await self._store.last_number("layer", namespace, name) + 1,
                code_sha256=package.sha256,
                code_size=package.size,
                description=description,
                created_at=self._clock(),
            )
            await self._store.add_layer(record)
        return record

    async def versions(self, namespace: str, name: str | None = None) -> list[LayerRecord]:
        layers = await self._store.list_layers(namespace, name)
        if name is not None and not layers:
            raise NotFound(f"layer {name!r} does not exist")
        return layers

    async def delete(self, namespace: str, name: str, version: int) -> None:
        """Delete a layer version that nothing uses (a function's next cold start would fail)."""
        users = self._users(namespace, f"{name}:{version}") if self._users is not None else []
        if users:
            raise Conflict(
                f"layer {name}:{version} is used by {', '.join(users)}; deploy them without it first"
            )
        if not await self._store.delete_layer(namespace, name, version):
            raise NotFound(f"layer {name}:{version} does not exist")

    async def resolve(self, namespace: str, refs: list[str]) -> list[LayerRecord]:
        """The stored layer versions a function's ``layers`` names; 400 for any that is missing."""
        resolved = []
        for ref in parse_layer_refs(refs):
            match = [
                v for v in await self._store.list_layers(namespace, ref.name) if v.version == ref.version
            ]
            if not match:
                raise BadRequest(f"layer {ref} does not exist", field="layers")
            resolved.append(match[0])
        return resolved
