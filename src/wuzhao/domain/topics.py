"""Topics: messages published to a name, fanned out to every topic trigger that takes them.

A message is text (a JSON value other than a string is sent as its JSON) with
up to ``MAX_ATTRIBUTES`` string attributes. Every topic trigger of the topic
(in the publisher's namespace) whose filter passes the attributes gets its own
asynchronous call, shaped like the SNS notification Lambda receives, so a
handler written for SNS reads it unchanged::

    {"Records": [{"EventSource": "wuzhao:sns", "EventVersion": "1.0",
      "EventSubscriptionArn": "wuzhao:sns:<namespace>:orders:<trigger>",
      "Sns": {"Type": "Notification", "MessageId": "...", "TopicArn": "wuzhao:sns:<namespace>:orders",
              "Subject": null, "Message": "...", "Timestamp": "2024-05-01T12:00:03.512Z",
              "MessageAttributes": {"kind": {"Type": "String", "Value": "refund"}}}}]}

A filter is SNS's filter policy of exact strings: attribute name -> the
values it may have; every attribute it names must be there with one of them.
An empty filter takes every message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from wuzhao.domain.functions import NAME_PATTERN
from wuzhao.domain.timestamps import iso_ms
from wuzhao.errors import BadRequest, PayloadTooLarge

SOURCE = "wuzhao:sns"
TOPIC_REF = "wuzhao:sns:{namespace}:{topic}"  # SNS's topic ARN, our way
MAX_MESSAGE_BYTES = 256 * 1024  # of the message's UTF-8, as on SNS
MAX_ATTRIBUTES = 10  # as on SNS
MAX_VALUE_LENGTH = 1024
ATTRIBUTE_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,255}\Z"

_TOPIC_RE = re.compile(NAME_PATTERN)
_ATTRIBUTE_RE = re.compile(ATTRIBUTE_PATTERN)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_topic_name(topic: str) -> str:
    """Topic names follow function names' rule."""
    if not _TOPIC_RE.match(topic):
        raise BadRequest(
            f"topic {topic!r} is not a topic name: use 1-64 characters of a-z, 0-9, '-' and '_', "
            "starting with a letter or digit",
            field="topic",
        )
    return topic


def check_attribute_name(name: str, *, field: str) -> None:
    if not _ATTRIBUTE_RE.match(name):
        raise BadRequest(
            f"attribute name {name!r} is invalid: use 1-256 characters of A-Z, a-z, 0-9, '_', '-' "
            "and '.', not starting with '.'",
            field=field,
        )


def check_value(value: str, *, field: str) -> None:
    if len(value) > MAX_VALUE_LENGTH or _CONTROL_RE.search(value) or not _is_text(value):
        raise BadRequest(
            f"attribute value {value[:40]!r} is invalid: at most {MAX_VALUE_LENGTH} characters, "
            "no control characters, valid Unicode",
            field=field,
        )


def check_attributes(attributes: Mapping[str, str]) -> None:
    if len(attributes) > MAX_ATTRIBUTES:
        raise BadRequest(f"a message has at most {MAX_ATTRIBUTES} attributes", field="attributes")
    for name, value in attributes.items():
        check_attribute_name(name, field="attributes")
        check_value(value, field=f"attributes.{name}")


def message_text(message: Any) -> str:
    """What subscribers get as ``Message``: a string as it is, any other JSON value as its JSON
    (SNS messages are text). At most ``MAX_MESSAGE_BYTES`` of UTF-8."""
    text = message if isinstance(message, str) else msgspec.json.encode(message).decode()
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate (\ud800 in the JSON): not text
        raise BadRequest("the message is not valid Unicode text", field="message") from None
    if size > MAX_MESSAGE_BYTES:
        raise PayloadTooLarge(f"the message is {size} bytes; the limit is {MAX_MESSAGE_BYTES}")
    return text


def matches(filter: Mapping[str, Sequence[str]], attributes: Mapping[str, str]) -> bool:
    """Whether a message with ``attributes`` passes ``filter`` (every named attribute there,
    with one of its values)."""
    return all(attributes.get(name) in values for name, values in filter.items())


def sns_event(
    *,
    namespace: str,
    topic: str,
    trigger: str,
    message_id: str,
    message: str,
    attributes: Mapping[str, str],
    time: float,
) -> bytes:
    """The event one subscriber (the trigger named ``trigger``) gets for one message."""
    topic_ref = TOPIC_REF.format(namespace=namespace, topic=topic)
    record = {
        "EventSource": SOURCE,
        "EventVersion": "1.0",
        "EventSubscriptionArn": f"{topic_ref}:{trigger}",
        "Sns": {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": topic_ref,
            "Subject": None,
            "Message": message,
            "Timestamp": iso_ms(time),
            "MessageAttributes": {
                name: {"Type": "String", "Value": value} for name, value in sorted(attributes.items())
            },
        },
    }
    return msgspec.json.encode({"Records": [record]})


def idempotency_key(message_id: str, trigger: str) -> str:
    """One delivery per message and subscriber, however often its enqueue is tried."""
    return f"topic:{trigger}:{message_id}"


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True
