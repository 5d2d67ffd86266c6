import json
from typing import Any, Literal
from urllib.parse import unquote_plus

import msgspec
import pytest

from wuzhao.domain import object_events
from wuzhao.domain.triggers import ObjectTrigger


class Change(msgspec.Struct, frozen=True):
    namespace: str = "default"
    bucket: str = "photos"
    key: str = "2024/cat.png"
    kind: Literal["created", "deleted"] = "created"
    size: int = 5
    etag: str = "ab" * 32
    sequencer: int = 163
    time: float = 1_714_564_803.512


def trigger(**settings: Any) -> ObjectTrigger:
    return ObjectTrigger(**{"function": "f", "bucket": "photos", **settings})


@pytest.mark.parametrize(
    ("spec", "change", "fires"),
    [
        (trigger(), Change(), True),
        (trigger(), Change(bucket="other"), False),  # another bucket
        (trigger(), Change(kind="deleted"), False),  # created only, by default
        (trigger(events=["deleted"]), Change(kind="deleted"), True),
        (trigger(events=["deleted"]), Change(), False),
        (trigger(events=["created", "deleted"]), Change(kind="deleted"), True),
        (trigger(prefix="2024/"), Change(), True),
        (trigger(prefix="2023/"), Change(), False),
        (trigger(prefix="2024/cat.png"), Change(), True),  # the whole key is a prefix of itself
        (trigger(prefix="2024/CAT"), Change(), False),  # case-sensitive
        (trigger(suffix=".png"), Change(), True),
        (trigger(suffix=".PNG"), Change(), False),
        (trigger(suffix=".jpg"), Change(), False),
        (trigger(prefix="2024/", suffix=".png"), Change(), True),
        (trigger(prefix="2024/", suffix=".png"), Change(key="2024/cat.jpg"), False),
        (trigger(prefix="2024/", suffix=".png"), Change(key="2025/cat.png"), False),
        (trigger(prefix="*", suffix="*"), Change(), False),  # no wildcards
        (trigger(prefix="ab", suffix="b"), Change(key="ab"), True),  # each checked on its own, as on S3
    ],
)
def test_which_triggers_a_change_fires(spec: ObjectTrigger, change: Change, fires: bool) -> None:
    assert object_events.matches(spec, change) is fires


def test_the_event_is_s3s() -> None:
    event = json.loads(object_events.s3_event(Change(), "uploads"))
    assert event == {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "wuzhao:s3",
                "awsRegion": "local",
                "eventTime": "2024-05-01T12:00:03.512Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "uploads",
                    "bucket": {"name": "photos", "arn": "wuzhao:s3:::default/photos"},
                    "object": {
                        "key": "2024/cat.png",
                        "size": 5,
                        "eTag": "ab" * 32,
                        "sequencer": "00000000000000A3",
                    },
                },
            }
        ]
    }


def test_a_deletion_says_what_it_removed() -> None:
    (record,) = json.loads(object_events.s3_event(Change(kind="deleted", size=0), "t"))["Records"]
    assert record["eventName"] == "ObjectRemoved:Delete"
    assert (record["s3"]["object"]["size"], record["s3"]["object"]["eTag"]) == (0, "ab" * 32)


@pytest.mark.parametrize(
    ("key", "encoded"),
    [
        ("a/b c.png", "a/b+c.png"),  # a space is +, as on S3
        ("a+b", "a%2Bb"),
        ("é/ü?x=1&y", "%C3%A9/%C3%BC%3Fx%3D1%26y"),
        ("100%", "100%25"),
        ("a//b/", "a//b/"),
    ],
)
def test_keys_are_url_encoded_like_s3s(key: str, encoded: str) -> None:
    (record,) = json.loads(object_events.s3_event(Change(key=key), "t"))["Records"]
    assert record["s3"]["object"]["key"] == encoded
    assert unquote_plus(encoded) == key  # what a handler written for S3 does


def test_sequencers_order_as_strings() -> None:
    numbers = [0, 9, 10, 255, 4096, 2**40]
    assert sorted(object_events.sequencer(n) for n in numbers) == [
        object_events.sequencer(n) for n in numbers
    ]
    assert object_events.sequencer(163) == "00000000000000A3"


def test_one_delivery_per_change_and_trigger() -> None:
    keys = {
        object_events.idempotency_key(change, name)
        for change in (Change(), Change(sequencer=164), Change(kind="deleted", sequencer=165))
        for name in ("a", "b")
    }
    assert len(keys) == 6
    assert object_events.idempotency_key(Change(), "a") == object_events.idempotency_key(Change(), "a")
    assert len(object_events.idempotency_key(Change(bucket="b" * 63), "t" * 64)) <= 256
