"""Notifications: which triggers an object change or a message reaches, and what each gets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from wuzhao.config import Settings
from wuzhao.control.objects import Objects
from wuzhao.domain import chains
from wuzhao.domain.chains import Chain
from wuzhao.domain.functions import FunctionConfig
from wuzhao.domain.triggers import ObjectTrigger, TopicTrigger, TriggerSpec
from wuzhao.domain.versions import Executable
from wuzhao.errors import BadRequest, PayloadTooLarge
from wuzhao.objects.api import ObjectEvent
from wuzhao.objects.local import LocalObjectStore
from wuzhao.queue.api import Attempt, CallState
from wuzhao.queue.sqlite import SqliteQueue
from wuzhao.store.api import TriggerRecord
from wuzhao.worker.deliveries import Deliveries, Delivery
from wuzhao.worker.notifications import Notifications

NOW = 1_714_564_803.5


@dataclass
class FakeTriggers:
    records: list[TriggerRecord]

    def object_triggers(self, namespace: str) -> list[tuple[TriggerRecord, ObjectTrigger]]:
        return [
            (r, r.spec)
            for r in self.records
            if r.namespace == namespace and isinstance(r.spec, ObjectTrigger)
        ]

    def topic_triggers(self, namespace: str, topic: str) -> list[tuple[TriggerRecord, TopicTrigger]]:
        return [
            (r, r.spec)
            for r in self.records
            if r.namespace == namespace and isinstance(r.spec, TopicTrigger) and r.spec.topic == topic
        ]


@dataclass
class FakeDeliveries:
    sent: list[dict[str, Any]] = field(default_factory=list)
    fail_for: str | None = None  # a function whose enqueue fails

    async def send(self, namespace: str, function: str, event: bytes, **options: Any) -> Delivery:
        await asyncio.sleep(0)
        if function == self.fail_for:
            raise OSError("the queue is down")
        self.sent.append(
            {"namespace": namespace, "function": function, "event": json.loads(event), **options}
        )
        return Delivery(f"call-{len(self.sent)}", True)


def trigger(name: str, spec: TriggerSpec, namespace: str = "default") -> TriggerRecord:
    return TriggerRecord(namespace=namespace, name=name, spec=spec, created_at=NOW, updated_at=NOW)


def notifications(
    *records: TriggerRecord, deliveries: FakeDeliveries | None = None
) -> tuple[Notifications, FakeDeliveries]:
    fake = deliveries or FakeDeliveries()
    return Notifications(FakeTriggers(list(records)), fake, clock=lambda: NOW), fake  # type: ignore[arg-type]


def change(key: str = "in/cat.png", kind: str = "created", namespace: str = "default") -> ObjectEvent:
    return ObjectEvent(namespace, "photos", key, kind, 5, "ab" * 32, 7, NOW)  # type: ignore[arg-type]


OBJECT_TRIGGERS = (
    trigger("pngs", ObjectTrigger(function="thumbs", bucket="photos", suffix=".png")),
    trigger(
        "all",
        ObjectTrigger(function="index", qualifier="live", bucket="photos", events=["created", "deleted"]),
    ),
    trigger("elsewhere", ObjectTrigger(function="index", bucket="logs")),
    trigger("other-ns", ObjectTrigger(function="index", bucket="photos"), namespace="team"),
)


@pytest.mark.parametrize(
    ("event", "fired"),
    [
        (change(), ["thumbs", "index"]),
        (change("in/cat.jpg"), ["index"]),
        (change(kind="deleted"), ["index"]),
        (change(namespace="team"), ["index"]),
        (change(namespace="nobody"), []),
    ],
)
def test_an_object_change_fires_the_triggers_that_match(event: ObjectEvent, fired: list[str]) -> None:
    hub, deliveries = notifications(*OBJECT_TRIGGERS)
    assert asyncio.run(hub.object_changed(event)) == len(fired)
    assert [sent["function"] for sent in deliveries.sent] == fired


def test_each_trigger_gets_its_own_s3_event_key_and_origin() -> None:
    hub, deliveries = notifications(*OBJECT_TRIGGERS)
    asyncio.run(hub.object_changed(change()))
    pngs, everything = deliveries.sent
    assert pngs["event"]["Records"][0]["s3"]["configurationId"] == "pngs"
    assert pngs["event"]["Records"][0]["s3"]["object"]["key"] == "in/cat.png"
    assert (pngs["qualifier"], everything["qualifier"]) == (None, "live")
    assert pngs["idempotency_key"] != everything["idempotency_key"]
    assert (pngs["origin"], pngs["cause"]) == ({"trigger": "pngs"}, None)  # a client's change: a new chain


def test_a_change_made_by_a_function_continues_its_chain() -> None:
    hub, deliveries = notifications(*OBJECT_TRIGGERS)
    writer = chains.start("writer", "c1")
    asyncio.run(hub.object_changed(change(), writer))
    assert [sent["cause"] for sent in deliveries.sent] == [writer, writer]


def test_a_failed_enqueue_fails_the_hook_after_the_others_are_done() -> None:
    hub, deliveries = notifications(*OBJECT_TRIGGERS, deliveries=FakeDeliveries(fail_for="thumbs"))
    with pytest.raises(OSError, match="queue is down"):
        asyncio.run(hub.object_changed(change()))
    assert [sent["function"] for sent in deliveries.sent] == ["index"]


TOPIC_TRIGGERS = (
    trigger("everything", TopicTrigger(function="audit", topic="orders")),
    trigger(
        "refunds", TopicTrigger(function="refund", topic="orders", filter={"kind": ["refund", "chargeback"]})
    ),
    trigger(
        "eu-refunds",
        TopicTrigger(function="eu", topic="orders", filter={"kind": ["refund"], "region": ["eu"]}),
    ),
    trigger("news", TopicTrigger(function="audit", topic="news")),
    trigger("team-orders", TopicTrigger(function="audit", topic="orders"), namespace="team"),
)


@pytest.mark.parametrize(
    ("attributes", "fired"),
    [
        ({}, ["audit"]),
        ({"kind": "sale"}, ["audit"]),
        ({"kind": "refund"}, ["audit", "refund"]),
        ({"kind": "refund", "region": "eu"}, ["audit", "refund", "eu"]),
        ({"kind": "chargeback", "region": "eu"}, ["audit", "refund"]),
    ],
)
def test_a_message_fans_out_to_every_subscriber_whose_filter_passes(
    attributes: dict[str, str], fired: list[str]
) -> None:
    hub, deliveries = notifications(*TOPIC_TRIGGERS)
    published = asyncio.run(hub.publish("default", "orders", "hello", attributes))
    assert published.deliveries == len(fired)
    assert [sent["function"] for sent in deliveries.sent] == fired
    assert {sent["event"]["Records"][0]["Sns"]["MessageId"] for sent in deliveries.sent} <= {
        published.message_id
    }


def test_each_subscriber_gets_an_sns_event_of_the_same_message() -> None:
    hub, deliveries = notifications(*TOPIC_TRIGGERS)
    published = asyncio.run(hub.publish("default", "orders", {"order": 7}, {"kind": "refund"}))
    everything, refunds = deliveries.sent
    record = refunds["event"]["Records"][0]
    assert record["EventSubscriptionArn"] == "wuzhao:sns:default:orders:refunds"
    assert record["Sns"]["Message"] == '{"order":7}'
    assert record["Sns"]["MessageAttributes"] == {"kind": {"Type": "String", "Value": "refund"}}
    assert record["Sns"]["Timestamp"] == "2024-05-01T12:00:03.500Z"
    assert refunds["origin"] == {"trigger": "refunds", "message": published.message_id}
    assert everything["idempotency_key"] != refunds["idempotency_key"]
    assert published.message_id in refunds["idempotency_key"]


def test_a_message_nobody_subscribes_to_is_taken_and_sent_nowhere() -> None:
    hub, deliveries = notifications(*TOPIC_TRIGGERS)
    assert asyncio.run(hub.publish("default", "empty", "x")).deliveries == 0
    assert asyncio.run(hub.publish("other", "orders", "x")).deliveries == 0
    assert deliveries.sent == []


def test_a_message_published_by_a_function_continues_its_chain() -> None:
    hub, deliveries = notifications(*TOPIC_TRIGGERS)
    publisher = Chain("c1", 3, {"pub": 2})
    asyncio.run(hub.publish("default", "orders", "x", cause=publisher))
    assert [sent["cause"] for sent in deliveries.sent] == [publisher]


@pytest.mark.parametrize(
    ("topic", "message", "attributes", "error"),
    [
        ("Orders", "x", {}, BadRequest),
        ("orders", "x", {"a b": "c"}, BadRequest),
        ("orders", "x" * (256 * 1024 + 1), {}, PayloadTooLarge),
    ],
)
def test_a_bad_message_is_refused_before_anything_is_sent(
    topic: str, message: str, attributes: dict[str, str], error: type[Exception]
) -> None:
    hub, deliveries = notifications(*TOPIC_TRIGGERS)
    with pytest.raises(error):
        asyncio.run(hub.publish("default", topic, message, attributes))
    assert deliveries.sent == []


def test_a_function_writing_into_the_bucket_that_triggers_it_stops_at_its_limit(tmp_path: Path) -> None:
    """The whole path but the in-function API, whose part the test plays: each run of the function
    writes one object into its own bucket, passing its call's chain as the change's cause."""
    writer = trigger("self", ObjectTrigger(function="writer", bucket="loop"))
    config = FunctionConfig(max_chain_calls=4)

    def resolve(namespace: str, function: str, qualifier: str | None) -> Executable:
        return Executable(namespace, function, "$LATEST", 1, config, "ab" * 32)

    async def main() -> tuple[list[str], list[CallState]]:
        queue = SqliteQueue(tmp_path / "queue.db")
        await queue.open()
        objects = Objects(LocalObjectStore(tmp_path / "objects"), max_object_bytes=1 << 20)
        await objects.open()
        deliveries = Deliveries(queue, Settings.load({}, data_dir=tmp_path), resolve=resolve)
        objects.watch(Notifications(FakeTriggers([writer]), deliveries).object_changed)  # type: ignore[arg-type]
        try:
            await objects.create_bucket("default", "loop")
            await objects.put("default", "loop", "k", one_chunk(b"a client's upload"))
            ran: list[str] = []
            while leased := await queue.lease(time.time(), 10, consumer="test"):
                for lease in leased:  # one run of the function: it writes into its own bucket
                    chain = chains.from_origin(lease.call.origin, lease.call.id, lease.call.function)
                    key = json.loads(lease.call.event)["Records"][0]["s3"]["object"]["key"]
                    ran.append(key)
                    await objects.put("default", "loop", key + "x", one_chunk(b"more"), cause=chain)
                    await queue.complete(lease.token, Attempt(1, time.time(), 1.0, "success"), None)
            return ran, await queue.dead_letters("default", "writer")
        finally:
            await objects.close()
            await queue.close()

    ran, dead = asyncio.run(main())
    assert ran == ["k", "kx", "kxx", "kxxx"]  # max_chain_calls runs, the upload's included
    (stopped,) = dead
    assert stopped.error is not None and stopped.error["code"] == "RecursiveLoop"
    assert (
        json.loads(stopped.call.event)["Records"][0]["s3"]["object"]["key"] == "kxxxx"
    )  # the write it was for


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data
