import json
from typing import Any

import pytest

from wuzhao.domain import topics
from wuzhao.errors import BadRequest, PayloadTooLarge


@pytest.mark.parametrize(
    ("filter", "attributes", "passes"),
    [
        ({}, {}, True),  # no filter: every message
        ({}, {"kind": "refund"}, True),
        ({"kind": ["refund"]}, {"kind": "refund"}, True),
        ({"kind": ["refund"]}, {"kind": "sale"}, False),
        ({"kind": ["refund"]}, {}, False),  # a named attribute must be there
        ({"kind": ["refund", "chargeback"]}, {"kind": "chargeback"}, True),  # any of its values
        ({"kind": ["refund"]}, {"kind": "Refund"}, False),  # exact strings
        ({"kind": ["refund"], "region": ["eu"]}, {"kind": "refund", "region": "eu"}, True),
        ({"kind": ["refund"], "region": ["eu"]}, {"kind": "refund", "region": "us"}, False),  # all named
        ({"kind": ["refund"], "region": ["eu"]}, {"kind": "refund"}, False),
        ({"kind": ["refund"]}, {"kind": "refund", "other": "x"}, True),  # others do not matter
        ({"kind": [""]}, {"kind": ""}, True),
    ],
)
def test_filters(filter: dict[str, list[str]], attributes: dict[str, str], passes: bool) -> None:
    assert topics.matches(filter, attributes) is passes


def test_the_event_is_snss() -> None:
    event = topics.sns_event(
        namespace="default",
        topic="orders",
        trigger="refunds",
        message_id="m-1",
        message='{"order": 7}',
        attributes={"kind": "refund", "amount": "12"},
        time=1_714_564_803.512,
    )
    assert json.loads(event) == {
        "Records": [
            {
                "EventSource": "wuzhao:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": "wuzhao:sns:default:orders:refunds",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": "m-1",
                    "TopicArn": "wuzhao:sns:default:orders",
                    "Subject": None,
                    "Message": '{"order": 7}',
                    "Timestamp": "2024-05-01T12:00:03.512Z",
                    "MessageAttributes": {
                        "amount": {"Type": "String", "Value": "12"},
                        "kind": {"Type": "String", "Value": "refund"},
                    },
                },
            }
        ]
    }


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ("hello", "hello"),
        ("", ""),
        ({"order": 7, "items": [1, 2]}, '{"order":7,"items":[1,2]}'),  # JSON: sent as its JSON
        (42, "42"),
        (None, "null"),
        ("héllo", "héllo"),
    ],
)
def test_a_message_is_text(message: Any, text: str) -> None:
    assert topics.message_text(message) == text


def test_a_message_is_bounded_and_unicode() -> None:
    assert len(topics.message_text("x" * topics.MAX_MESSAGE_BYTES)) == topics.MAX_MESSAGE_BYTES
    with pytest.raises(PayloadTooLarge, match="262145 bytes"):
        topics.message_text("x" * (topics.MAX_MESSAGE_BYTES + 1))
    with pytest.raises(PayloadTooLarge):
        topics.message_text("é" * (topics.MAX_MESSAGE_BYTES // 2 + 1))  # bytes of UTF-8, not characters
    with pytest.raises(BadRequest, match="not valid Unicode"):
        topics.message_text("\ud800")


@pytest.mark.parametrize(
    ("attributes", "field", "message"),
    [
        ({f"a{i}": "x" for i in range(11)}, "attributes", "at most 10 attributes"),
        ({"": "x"}, "attributes", "attribute name '' is invalid"),
        ({".hidden": "x"}, "attributes", "is invalid"),
        ({"a b": "x"}, "attributes", "is invalid"),
        ({"k" * 257: "x"}, "attributes", "is invalid"),
        ({"kind": "x\n"}, "attributes.kind", "no control characters"),
        ({"kind": "x" * 1025}, "attributes.kind", "at most 1024"),
        ({"kind": "\udc80"}, "attributes.kind", "valid Unicode"),
    ],
)
def test_attributes_are_checked(attributes: dict[str, str], field: str, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        topics.check_attributes(attributes)
    assert caught.value.field == field
    assert message in caught.value.message


def test_good_attributes_and_topics_pass() -> None:
    topics.check_attributes({f"a{i}": "x" * 1024 for i in range(10)})
    topics.check_attributes({"Kind.Sub-1_x": "", "k": "ünïcode and spaces"})
    assert topics.check_topic_name("orders-2024_eu") == "orders-2024_eu"
    for bad in ("Orders", "", "-x", "a" * 65, "a/b"):
        with pytest.raises(BadRequest) as caught:
            topics.check_topic_name(bad)
        assert caught.value.field == "topic"


def test_one_delivery_per_message_and_subscriber() -> None:
    keys = {topics.idempotency_key(m, t) for m in ("m1", "m2") for t in ("a", "b")}
    assert len(keys) == 4
