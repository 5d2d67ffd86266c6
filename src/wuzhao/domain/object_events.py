"""Object events: which object triggers a change of an object fires, and the event they send.

A change (an object written or deleted, ``control.objects``) fires every
object trigger of its namespace whose bucket, events, prefix and suffix all
match it. Each such trigger gets the change as S3 sends it to Lambda (an
event notification record), so a handler written for S3 reads it unchanged::

    {"Records": [{"eventVersion": "2.1", "eventSource": "wuzhao:s3", "awsRegion": "local",
      "eventTime": "2024-05-01T12:00:03.512Z", "eventName": "ObjectCreated:Put",
      "s3": {"s3SchemaVersion": "1.0", "configurationId": "<trigger>",
             "bucket": {"name": "photos", "arn": "wuzhao:s3:::<namespace>/photos"},
             "object": {"key": "2024/my+cat.png", "size": 5, "eTag": "<sha256>",
                        "sequencer": "00000000000000A3"}}}]}

As on S3, ``key`` is URL-encoded (a space is ``+``; read it with
``urllib.parse.unquote_plus``) and ``sequencer`` is hexadecimal, of a fixed
width so that two events of one key order as strings. Unlike S3, a deletion
says the size and ETag of the object it removed.
"""

from __future__ import annotations

from typing import Literal, Protocol
from urllib.parse import quote_plus

import msgspec

from wuzhao.domain.timestamps import iso_ms
from wuzhao.domain.triggers import ObjectTrigger

SOURCE = "wuzhao:s3"
REGION = "local"  # like the scheduler's events: one node, no regions
EVENT_NAMES = {"created": "ObjectCreated:Put", "deleted": "ObjectRemoved:Delete"}
BUCKET_REF = "wuzhao:s3:::{namespace}/{bucket}"  # S3's bucket ARN, our way


class Change(Protocol):
    """What an object event needs of a change (``objects.api.ObjectEvent`` is one)."""

    @property
    def namespace(self) -> str: ...
    @property
    def bucket(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def kind(self) -> Literal["created", "deleted"]: ...
    @property
    def size(self) -> int: ...
    @property
    def etag(self) -> str: ...
    @property
    def sequencer(self) -> int: ...
    @property
    def time(self) -> float: ...


def matches(spec: ObjectTrigger, change: Change) -> bool:
    """Whether ``spec`` fires on ``change`` (of the trigger's namespace): its bucket, one of its
    events, and a key that starts with its prefix and ends with its suffix (as written:
    case-sensitive, no wildcards, each checked on its own, as on S3)."""
    return (
        change.bucket == spec.bucket
        and change.kind in spec.events
        and change.key.startswith(spec.prefix)
        and change.key.endswith(spec.suffix)
    )


def s3_event(change: Change, trigger: str) -> bytes:
    """The event a trigger named ``trigger`` sends for ``change``."""
    record = {
        "eventVersion": "2.1",
        "eventSource": SOURCE,
        "awsRegion": REGION,
        "eventTime": iso_ms(change.time),
        "eventName": EVENT_NAMES[change.kind],
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": trigger,
            "bucket": {
                "name": change.bucket,
                "arn": BUCKET_REF.format(namespace=change.namespace, bucket=change.bucket),
            },
            "object": {
                "key": quote_plus(change.key, safe="/"),
                "size": change.size,
                "eTag": change.etag,
                "sequencer": sequencer(change.sequencer),
            },
        },
    }
    return msgspec.json.encode({"Records": [record]})


def idempotency_key(change: Change, trigger: str) -> str:
    """One delivery per change and trigger: the hook may run again for one change (a retried
    enqueue), never twice for it. The sequencer names the change in its store; the ETag's head
    keeps two changes apart even if a restored store counted again from an older number."""
    return f"object:{trigger}:{change.bucket}:{change.sequencer}:{change.etag[:16]}"


def sequencer(number: int) -> str:
    """S3's way: upper-case hexadecimal, padded so that string order is number order."""
    return f"{number:016X}"
