"""Notifications: object changes and topic messages, fanned out to the triggers that take them.

An object change (``Objects``' change hook, :meth:`Notifications.object_changed`)
fires every object trigger of its namespace that matches it; a message
published to a topic (:meth:`Notifications.publish`) goes to every topic
trigger of that topic whose filter passes its attributes. Each trigger gets an
asynchronous call of its own (``worker/deliveries.py``), so subscribers
succeed, fail, retry and go dead independently of each other.

Both return only once every call is durably queued: the object API and the
publish route answer after that, so a server killed right after the answer
still runs every delivery when it starts again. Each call's idempotency key
names its cause and its trigger (the change's sequencer, the message's id), so
a hook tried again for one change makes no second call.

Both take the *cause*: the chain of calls of the function that wrote the
object or published the message (the in-function API passes it), or None
when a client did. Deliveries caused by a function continue its chain, which
is how a function writing into the bucket that triggers it is stopped by the
loop rule (``domain/chains.py``); deliveries caused by a client start one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wuzhao.control.triggers import Triggers
from wuzhao.domain import object_events, topics
from wuzhao.domain.chains import Chain
from wuzhao.objects.api import ObjectEvent
from wuzhao.worker.deliveries import Deliveries, Delivery


@dataclass(frozen=True)
class Published:
    message_id: str
    deliveries: int  # subscribers whose filter took it: one call each


class Notifications:
    def __init__(
        self, triggers: Triggers, deliveries: Deliveries, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._triggers = triggers
        self._deliveries = deliveries
        self._clock = clock

    async def object_changed(self, event: ObjectEvent, cause: Chain | None = None) -> int:
        """Queue a call of each object trigger ``event`` fires; how many it fired."""
        sends = [
            self._deliveries.send(
                event.namespace,
                spec.function,
                object_events.s3_event(event, record.name),
                qualifier=spec.qualifier,
                idempotency_key=object_events.idempotency_key(event, record.name),
                cause=cause,
                origin={"trigger": record.name},
            )
            for record, spec in self._triggers.object_triggers(event.namespace)
            if object_events.matches(spec, event)
        ]
        await _all(sends)
        return len(sends)

    async def publish(
        self,
        namespace: str,
        topic: str,
        message: Any,
        attributes: Mapping[str, str] | None = None,
        *,
        cause: Chain | None = None,
    ) -> Published:
        """Publish ``message`` (text, or any JSON value, sent as its JSON) with ``attributes`` to
        ``topic`` of ``namespace``: one call per subscriber whose filter takes it, all queued
        when this returns. A topic without subscribers takes the message and sends it nowhere."""
        topics.check_topic_name(topic)
        attributes = dict(attributes or {})
        topics.check_attributes(attributes)
        text = topics.message_text(message)
        message_id = str(uuid.uuid4())
        now = self._clock()
        sends = [
            self._deliveries.send(
                namespace,
                spec.function,
                topics.sns_event(
                    namespace=namespace,
                    topic=topic,
                    trigger=record.name,
                    message_id=message_id,
                    message=text,
                    attributes=attributes,
                    time=now,
                ),
                qualifier=spec.qualifier,
                idempotency_key=topics.idempotency_key(message_id, record.name),
                cause=cause,
                origin={"trigger": record.name, "message": message_id},
            )
            for record, spec in self._triggers.topic_triggers(namespace, topic)
            if topics.matches(spec.filter, attributes)
        ]
        await _all(sends)
        return Published(message_id, len(sends))


async def _all(sends: Sequence[Awaitable[Delivery]]) -> None:
    """Every enqueue, together (they share the queue's commits); the first failure once all
    have ended, so none is left running after the caller hears of it."""
    results = await asyncio.gather(*sends, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
