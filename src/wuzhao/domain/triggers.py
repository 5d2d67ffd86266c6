"""Triggers: what makes a function run besides a direct invoke, and the rules they follow.

A trigger has a name (unique in its namespace), the function it calls (with an
optional qualifier: a version or an alias, resolved at each call) and a
``type`` with that type's settings. The types form one tagged union, so the
body of ``PUT /v1/triggers/{name}``, the stored record and the manifest all
read ``{"type": "http", ...}`` the same way, and a new type is one more member:

- ``http``: requests to ``/http/<namespace><path>`` matching the route run the
  function synchronously (``domain/routes.py``, ``domain/http_events.py``);
- ``cron``: a schedule fires asynchronous calls through the queue
  (``domain/schedules.py``, ``worker/scheduler.py``);
- ``object``: objects created or deleted in a bucket, each change an
  asynchronous call with an S3-shaped event (``domain/object_events.py``);
- ``topic``: messages published to a topic, each matching message an
  asynchronous call per trigger with an SNS-shaped event (``domain/topics.py``).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from wuzhao.domain.functions import NAME_PATTERN, check_name
from wuzhao.domain.routes import ANY, Route, parse_methods, parse_path
from wuzhao.domain.schedules import MissedTicks, Schedule, parse_schedule
from wuzhao.domain.topics import check_attribute_name, check_topic_name, check_value
from wuzhao.domain.versions import parse_qualifier
from wuzhao.errors import BadRequest

HTTP_PREFIX = "/http"  # HTTP triggers answer under /http/<namespace>/..., outside the API's /v1
FunctionName = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
QualifierText = Annotated[str, msgspec.Meta(max_length=64)]
PathText = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
ScheduleText = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
ZoneText = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Method = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
Affix = Annotated[str, msgspec.Meta(max_length=1024)]
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
OBJECT_EVENTS = ("created", "deleted")
MAX_FILTER_KEYS = 16
MAX_FILTER_VALUES = 64


class _Trigger(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    function: FunctionName  # of the trigger's namespace
    qualifier: QualifierText | None = None  # $LATEST (None), a version number or an alias


class HttpTrigger(_Trigger, tag="http", frozen=True):
    """Requests to the path run the function; ``auth: key`` needs an invoke key of the namespace."""

    path: PathText  # /users/{id}, /files/{proxy+}
    methods: list[Method] = msgspec.field(default_factory=lambda: [ANY])
    auth: Literal["none", "key"] = "key"


class CronTrigger(_Trigger, tag="cron", frozen=True):
    """A schedule: ``rate(5 minutes)`` or a cron expression (5 fields, or 6 with seconds first)."""

    schedule: ScheduleText
    timezone: ZoneText = "UTC"  # IANA name; cron expressions are read on its wall clock
    missed_ticks: Literal["skip", "catch_up_one"] | None = None  # None: the server's setting


class ObjectTrigger(_Trigger, tag="object", frozen=True):
    """Objects created or deleted in a bucket of the namespace, whose keys start with
    ``prefix`` and end with ``suffix`` (the bucket need not exist yet)."""

    bucket: str
    events: list[Literal["created", "deleted"]] = msgspec.field(default_factory=lambda: ["created"])
    prefix: Affix = ""
    suffix: Affix = ""


class TopicTrigger(_Trigger, tag="topic", frozen=True):
    """Messages published to a topic (of the namespace) whose attributes pass ``filter``.

    ``filter``: attribute name -> the values it may have (any of them); every named
    attribute must match, as in an SNS filter policy of exact strings."""

    topic: str
    filter: dict[str, list[str]] = msgspec.field(default_factory=dict)


# What the API accepts and the store keeps.
TriggerSpec = HttpTrigger | CronTrigger | ObjectTrigger | TopicTrigger
TYPES = ("http", "cron", "object", "topic")


def check_trigger(name: str, spec: TriggerSpec) -> TriggerSpec:
    """Check what the struct's types cannot say; the spec, normalised (methods upper-case, an
    object trigger's events and a filter's values in order, once each), so that putting the
    same trigger written another way changes nothing."""
    check_name(name, what="trigger")
    parse_qualifier(spec.qualifier)
    if isinstance(spec, HttpTrigger):
        parse_path(spec.path)
        methods = parse_methods(spec.methods)
        normalised = [ANY] if methods is None else sorted(methods)
        return msgspec.structs.replace(spec, methods=normalised)
    if isinstance(spec, CronTrigger):
        parse_schedule(spec.schedule, spec.timezone)
        return spec
    if isinstance(spec, ObjectTrigger):
        return check_object(spec)
    return check_topic(spec)


def check_object(spec: ObjectTrigger) -> ObjectTrigger:
    if not _BUCKET.match(spec.bucket) or ".." in spec.bucket:
        raise BadRequest(f"bucket {spec.bucket!r} is not a bucket name", field="bucket")
    if not spec.events or len(set(spec.events)) != len(spec.events):
        raise BadRequest("events must name created, deleted or both, once each", field="events")
    return msgspec.structs.replace(spec, events=[e for e in OBJECT_EVENTS if e in spec.events])


def check_topic(spec: TopicTrigger) -> TopicTrigger:
    check_topic_name(spec.topic)
    if len(spec.filter) > MAX_FILTER_KEYS:
        raise BadRequest(f"a filter names at most {MAX_FILTER_KEYS} attributes", field="filter")
    for attribute, values in spec.filter.items():
        if not attribute or not values or len(values) > MAX_FILTER_VALUES:
            raise BadRequest(
                f"filter[{attribute!r}] needs a name and 1 to {MAX_FILTER_VALUES} values", field="filter"
            )
        check_attribute_name(attribute, field="filter")
        for value in values:
            check_value(value, field=f"filter.{attribute}")
    return msgspec.structs.replace(
        spec, filter={name: sorted(set(values)) for name, values in sorted(spec.filter.items())}
    )


def route(name: str, spec: HttpTrigger) -> Route:
    """The route an HTTP trigger (already checked) adds to its namespace."""
    return Route(name, parse_path(spec.path), parse_methods(spec.methods))


def schedule(spec: CronTrigger) -> Schedule:
    return parse_schedule(spec.schedule, spec.timezone)


def missed_ticks(spec: CronTrigger, default: str) -> MissedTicks:
    return MissedTicks(spec.missed_ticks or default)


def url_path(namespace: str, spec: HttpTrigger) -> str:
    """Where the trigger answers on this server: ``/http/default/users/{id}``."""
    return f"{HTTP_PREFIX}/{namespace}{spec.path}"
