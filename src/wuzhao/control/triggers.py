"""Triggers: created, changed and deleted here, and kept in memory for the data plane.

Every trigger is loaded at start, and each namespace's HTTP routes are kept as
a ready route table, so matching a request to ``/http/...`` reads no database;
likewise each namespace's object triggers and each topic's subscribers, so a
change of an object or a published message finds its triggers in memory. The
scheduler reads the timers and their last ticks from here too. Changes go
to the store first and reach memory only once they are durable, like
functions. A trigger belongs to its function: deleting the function deletes
its triggers (the store does it in the same transaction; memory follows here).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from wuzhao.control.functions import FunctionRegistry
from wuzhao.control.versions import Versions
from wuzhao.domain import triggers as rules
from wuzhao.domain.functions import FunctionRecord
from wuzhao.domain.routes import Match, RouteTable, conflict
from wuzhao.domain.triggers import CronTrigger, HttpTrigger, ObjectTrigger, TopicTrigger, TriggerSpec
from wuzhao.errors import BadRequest, Conflict, NotFound
from wuzhao.store.api import Store, TriggerRecord

Key = tuple[str, str]  # (namespace, trigger name)
_NO_ROUTES = RouteTable(())
ObjectSubscriber = tuple[TriggerRecord, ObjectTrigger]
TopicSubscriber = tuple[TriggerRecord, TopicTrigger]


class _Subscribers:
    """A namespace's object triggers, and its topic triggers by topic, in name order."""

    def __init__(self, records: list[TriggerRecord]) -> None:
        self.objects: list[ObjectSubscriber] = []
        self.topics: dict[str, list[TopicSubscriber]] = {}
        for record in sorted(records, key=lambda r: r.name):
            spec = record.spec
            if isinstance(spec, ObjectTrigger):
                self.objects.append((record, spec))
            elif isinstance(spec, TopicTrigger):
                self.topics.setdefault(spec.topic, []).append((record, spec))


_NO_SUBSCRIBERS = _Subscribers([])


class Triggers:
    def __init__(
        self,
        store: Store,
        registry: FunctionRegistry,
        versions: Versions,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._registry = registry
        self._versions = versions
        self._clock = clock
        self._triggers: dict[Key, TriggerRecord] = {}
        self._routes: dict[str, RouteTable] = {}
        self._subscribers: dict[str, _Subscribers] = {}
        self._ticks: dict[Key, int] = {}
        self._lock = asyncio.Lock()  # a put checks its route against the others, then saves: one at a time
        self._listeners: list[Callable[[], None]] = []
        registry.on_change(self._function_changed)

    def on_change(self, listener: Callable[[], None]) -> None:
        """``listener()`` after any trigger changed (the scheduler looks again)."""
        self._listeners.append(listener)

    async def load(self) -> None:
        self._triggers = {(t.namespace, t.name): t for t in await self._store.list_triggers()}
        self._ticks = await self._store.last_ticks()
        self._rebuild()

    # the API

    def get(self, namespace: str, name: str) -> TriggerRecord:
        try:
            return self._triggers[(namespace, name)]
        except KeyError:
            raise NotFound(f"trigger {name!r} does not exist") from None

    def find(self, namespace: str, function: str | None = None) -> list[TriggerRecord]:
        """The triggers of ``namespace`` (of one ``function``), by name."""
        found = [
            t
            for (ns, _), t in self._triggers.items()
            if ns == namespace and (function is None or t.spec.function == function)
        ]
        return sorted(found, key=lambda t: t.name)

    async def put(self, namespace: str, name: str, spec: TriggerSpec) -> tuple[TriggerRecord, bool]:
        """Create or change a trigger; returns it and whether it was created. Putting the same
        settings again changes nothing (a schedule keeps counting from when it was set)."""
        checked = rules.check_trigger(name, spec)
        self._check_target(namespace, checked)
        key = (namespace, name)
        async with self._lock:
            current = self._triggers.get(key)
            if current is not None and current.spec == checked:
                return current, False
            if isinstance(checked, HttpTrigger):
                self._check_route(namespace, name, checked)
            now = self._clock()
            record = TriggerRecord(
                namespace=namespace,
                name=name,
                spec=checked,
                created_at=current.created_at if current else now,
                updated_at=now,
            )
            await self._store.save_trigger(record)
            self._triggers[key] = record
            self._changed(namespace)
        return record, current is None

    async def delete(self, namespace: str, name: str) -> None:
        async with self._lock:
            self.get(namespace, name)
            await self._store.delete_trigger(namespace, name)
            self._forget([(namespace, name)])

    # the data plane

    def match(self, namespace: str, method: str, segments: Sequence[str]) -> Match:
        """The HTTP trigger of ``namespace`` for a request (see ``domain/routes.py``)."""
        return self._routes.get(namespace, _NO_ROUTES).match(method, segments)

    def object_triggers(self, namespace: str) -> list[ObjectSubscriber]:
        """The object triggers of ``namespace``, by name (``domain.object_events.matches`` says
        which a change fires)."""
        return self._subscribers.get(namespace, _NO_SUBSCRIBERS).objects

    def topic_triggers(self, namespace: str, topic: str) -> list[TopicSubscriber]:
        """The triggers of ``topic`` in ``namespace``, by name (filters not applied)."""
        return self._subscribers.get(namespace, _NO_SUBSCRIBERS).topics.get(topic, [])

    def timers(self) -> list[tuple[TriggerRecord, CronTrigger]]:
        return [(t, t.spec) for t in self._triggers.values() if isinstance(t.spec, CronTrigger)]

    def last_tick(self, namespace: str, name: str) -> int | None:
        return self._ticks.get((namespace, name))

    async def record_tick(self, namespace: str, name: str, tick: int) -> None:
        """Keep ``tick`` as the last one fired; a trigger deleted meanwhile keeps nothing."""
        if await self._store.record_tick(namespace, name, tick) and (namespace, name) in self._triggers:
            self._ticks[(namespace, name)] = tick

    # plumbing

    def _check_target(self, namespace: str, spec: TriggerSpec) -> None:
        try:
            self._registry.get(namespace, spec.function)
        except NotFound:
            raise BadRequest(f"function {spec.function!r} does not exist", field="function") from None
        try:
            self._versions.resolve(namespace, spec.function, spec.qualifier)
        except NotFound as missing:
            raise BadRequest(f"qualifier {spec.qualifier!r}: {missing.message}", field="qualifier") from None

    def _check_route(self, namespace: str, name: str, spec: HttpTrigger) -> None:
        route = rules.route(name, spec)
        clash = conflict(route, self._routes.get(namespace, _NO_ROUTES).routes)
        if clash is not None:
            raise Conflict(
                f"trigger {clash.name!r} already answers {clash.key}, which takes the same requests "
                f"as {route.key}",
                field="path",
            )

    async def _function_changed(self, old: FunctionRecord, new: FunctionRecord | None) -> None:
        if new is None:  # deleted: the store deleted its triggers in the same transaction
            self._forget(
                [
                    key
                    for key, t in self._triggers.items()
                    if key[0] == old.namespace and t.spec.function == old.name
                ]
            )

    def _forget(self, keys: list[Key]) -> None:
        for key in keys:
            self._triggers.pop(key, None)
            self._ticks.pop(key, None)
        for namespace in {namespace for namespace, _ in keys}:
            self._changed(namespace)

    def _changed(self, namespace: str) -> None:
        self._rebuild(namespace)
        for listener in self._listeners:
            listener()

    def _rebuild(self, namespace: str | None = None) -> None:
        """The route table and the subscribers of one namespace (None: of every namespace)."""
        namespaces = {ns for ns, _ in self._triggers} if namespace is None else {namespace}
        for ns in namespaces:
            own = [t for (owner, _), t in self._triggers.items() if owner == ns]
            self._routes[ns] = RouteTable(
                rules.route(t.name, t.spec) for t in own if isinstance(t.spec, HttpTrigger)
            )
            self._subscribers[ns] = _Subscribers(own)
