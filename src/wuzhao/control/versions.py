"""Published versions and aliases of functions, and the resolution of a qualifier.

Versions and aliases are kept in memory (loaded at start) so that resolving
``?qualifier=prod`` on the invoke path reads no database.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from wuzhao.control.functions import FunctionRegistry
from wuzhao.domain.functions import FunctionConfig, FunctionRecord
from wuzhao.domain.versions import (
    LATEST,
    Executable,
    QualifierKind,
    Routing,
    check_alias_name,
    parse_qualifier,
    routing_from_weights,
)
from wuzhao.errors import Conflict, NotFound
from wuzhao.store.api import AliasRecord, Store, VersionRecord

Key = tuple[str, str]  # (namespace, function)


class Versions:
    def __init__(
        self,
        store: Store,
        registry: FunctionRegistry,
        *,
        clock: Callable[[], float] = time.time,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._registry = registry
        self._clock = clock
        self._draw = draw
        self._versions: dict[Key, list[VersionRecord]] = {}
        self._aliases: dict[Key, dict[str, AliasRecord]] = {}
        registry.on_change(self._function_changed)

    async def load(self) -> None:
        for function in await self._store.list_functions():
            key = (function.namespace, function.name)
            self._versions[key] = await self._store.list_versions(*key)
            self._aliases[key] = {a.name: a for a in await self._store.list_aliases(*key)}

    # versions

    def list_versions(self, namespace: str, function: str) -> list[VersionRecord]:
        self._registry.get(namespace, function)
        return list(self._versions.get((namespace, function), []))

    def get_version(self, namespace: str, function: str, version: int) -> VersionRecord:
        for record in self.list_versions(namespace, function):
            if record.version == version:
                return record
        raise NotFound(f"version {version} of function {function!r} does not exist")

    async def publish(
        self, namespace: str, function: str, description: str = ""
    ) -> tuple[VersionRecord, bool]:
        """Snapshot $LATEST as the next version; if nothing changed since the last one, return that."""
        latest = self._registry.get(namespace, function)
        versions = self._versions.setdefault((namespace, function), [])
        if versions and _same_code(versions[-1], latest):
            return versions[-1], False
        record = VersionRecord(
            namespace=namespace,
            function=function,
            version=await self._store.last_number("version", namespace, function) + 1,
            config=latest.config,
            code_sha256=latest.code_sha256,
            code_size=latest.code_size,
            description=description,
            created_at=self._clock(),
        )
        await self._store.add_version(record)
        versions.append(record)
        return record, True

    async def delete_version(self, namespace: str, function: str, version: int) -> None:
        self.get_version(namespace, function, version)
        users = [a.name for a in self.list_aliases(namespace, function) if version in _routing(a).versions]
        if users:
            raise Conflict(
                f"version {version} is in use by alias{'es' if len(users) > 1 else ''} "
                f"{', '.join(users)}; point {'them' if len(users) > 1 else 'it'} elsewhere first"
            )
        await self._store.delete_version(namespace, function, version)
        key = (namespace, function)
        self._versions[key] = [v for v in self._versions[key] if v.version != version]

    def users(self, namespace: str, uses: Callable[[FunctionConfig], bool]) -> list[str]:
        """What in the namespace has a configuration ``uses`` accepts: functions ($LATEST) as
        ``name``, published versions as ``name:version`` (layers and secrets ask before a delete)."""
        found = []
        for function in self._registry.list(namespace):
            if uses(function.config):
                found.append(function.name)
            found += [
                f"{function.name}:{v.version}"
                for v in self._versions.get((namespace, function.name), [])
                if uses(v.config)
            ]
        return found

    # aliases

    def list_aliases(self, namespace: str, function: str) -> list[AliasRecord]:
        self._registry.get(namespace, function)
        return sorted(self._aliases.get((namespace, function), {}).values(), key=lambda a: a.name)

    def get_alias(self, namespace: str, function: str, name: str) -> AliasRecord:
        self._registry.get(namespace, function)
        alias = self._aliases.get((namespace, function), {}).get(name)
        if alias is None:
            raise NotFound(f"alias {name!r} of function {function!r} does not exist")
        return alias

    async def put_alias(
        self,
        namespace: str,
        function: str,
        name: str,
        *,
        version: int,
        weights: dict[str, float] | None = None,
        description: str = "",
    ) -> tuple[AliasRecord, bool]:
        check_alias_name(name)
        existing = {v.version for v in self.list_versions(namespace, function)}
        routing = routing_from_weights(version, weights, existing)
        record = AliasRecord(
            namespace=namespace,
            function=function,
            name=name,
            version=routing.version,
            additional_version=routing.additional,
            additional_weight=routing.weight,
            description=description,
            updated_at=self._clock(),
        )
        await self._store.save_alias(record)
        aliases = self._aliases.setdefault((namespace, function), {})
        created = name not in aliases
        aliases[name] = record
        return record, created

    async def delete_alias(self, namespace: str, function: str, name: str) -> None:
        self.get_alias(namespace, function, name)
        await self._store.delete_alias(namespace, function, name)
        del self._aliases[(namespace, function)][name]

    # the invoke path

    def resolve(self, namespace: str, function: str, qualifier: str | None) -> Executable:
        """What a call with this qualifier runs (an alias with two versions draws one)."""
        parsed = parse_qualifier(qualifier)
        if parsed.kind is QualifierKind.LATEST:
            latest = self._registry.get(namespace, function)
            return Executable(namespace, function, LATEST, latest.revision, latest.config, latest.code_sha256)
        if parsed.kind is QualifierKind.ALIAS:
            assert parsed.alias is not None
            number = _routing(self.get_alias(namespace, function, parsed.alias)).pick(self._draw())
        else:
            assert parsed.version is not None
            number = parsed.version
        version = self.get_version(namespace, function, number)
        return Executable(namespace, function, str(number), 0, version.config, version.code_sha256)

    async def _function_changed(self, old: FunctionRecord, new: FunctionRecord | None) -> None:
        if new is None:  # deleted: the store dropped its versions and aliases with it
            self._versions.pop((old.namespace, old.name), None)
            self._aliases.pop((old.namespace, old.name), None)


def _routing(alias: AliasRecord) -> Routing:
    return Routing(alias.version, alias.additional_version, alias.additional_weight)


def _same_code(version: VersionRecord, latest: FunctionRecord) -> bool:
    return version.config == latest.config and version.code_sha256 == latest.code_sha256
