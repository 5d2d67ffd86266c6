from typing import Any

import msgspec
import pytest

from wuzhao.domain.schedules import MissedTicks
from wuzhao.domain.triggers import (
    CronTrigger,
    HttpTrigger,
    ObjectTrigger,
    TopicTrigger,
    TriggerSpec,
    check_trigger,
    missed_ticks,
    route,
    url_path,
)
from wuzhao.errors import BadRequest

AnyTrigger = HttpTrigger | CronTrigger | ObjectTrigger | TopicTrigger


def decode(body: dict[str, Any]) -> Any:
    return msgspec.convert(body, type=AnyTrigger)


def test_the_type_picks_the_shape() -> None:
    http = decode({"type": "http", "function": "api", "path": "/users/{id}"})
    assert http == HttpTrigger(function="api", path="/users/{id}", methods=["ANY"], auth="key")
    cron = decode({"type": "cron", "function": "job", "schedule": "rate(1 hour)", "qualifier": "live"})
    assert cron == CronTrigger(function="job", qualifier="live", schedule="rate(1 hour)", timezone="UTC")
    assert msgspec.to_builtins(cron) == {
        "type": "cron",
        "schedule": "rate(1 hour)",
        "timezone": "UTC",
        "missed_ticks": None,
        "function": "job",
        "qualifier": "live",
    }
    assert msgspec.json.decode(msgspec.json.encode(http), type=TriggerSpec) == http


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"function": "f", "path": "/"}, "missing required field `type`"),
        ({"type": "mqtt", "function": "f"}, "Invalid value 'mqtt'"),
        ({"type": "http", "path": "/"}, "missing required field `function`"),
        ({"type": "http", "function": "F", "path": "/"}, "Expected `str` matching regex"),
        ({"type": "http", "function": "f"}, "missing required field `path`"),
        ({"type": "http", "function": "f", "path": "/", "schedule": "x"}, "unknown field `schedule`"),
        ({"type": "http", "function": "f", "path": "/", "auth": "basic"}, "Invalid enum value 'basic'"),
        ({"type": "cron", "function": "f", "schedule": "x", "missed_ticks": "all"}, "Invalid enum value"),
        ({"type": "cron", "function": "f"}, "missing required field `schedule`"),
    ],
)
def test_the_shapes_refuse(body: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        decode(body)
    assert message in str(caught.value)


def test_check_normalises_methods() -> None:
    spec = HttpTrigger(function="api", path="/x", methods=["post", "get"])
    assert check_trigger("t", spec).methods == ["GET", "POST"]  # type: ignore[union-attr]
    assert check_trigger("t", HttpTrigger(function="api", path="/x", methods=["any"])).methods == ["ANY"]  # type: ignore[union-attr]
    cron = CronTrigger(function="job", schedule="0 3 * * *", timezone="Europe/Paris")
    assert check_trigger("t", cron) == cron


@pytest.mark.parametrize(
    ("name", "spec", "field", "message"),
    [
        ("Bad", HttpTrigger(function="f", path="/"), "name", "trigger name 'Bad' is invalid"),
        ("t", HttpTrigger(function="f", path="/", qualifier="0"), "qualifier", "numbered from 1"),
        ("t", HttpTrigger(function="f", path="/", qualifier="Prod!"), "qualifier", "neither"),
        ("t", HttpTrigger(function="f", path="x"), "path", "must start with /"),
        ("t", HttpTrigger(function="f", path="/", methods=["BREW"]), "methods", "is not one of"),
        ("t", CronTrigger(function="f", schedule="rate(0 hours)"), "schedule", "from 1 second"),
        ("t", CronTrigger(function="f", schedule="* * *"), "schedule", "has 3 fields"),
        (
            "t",
            CronTrigger(function="f", schedule="* * * * *", timezone="Nowhere/Land"),
            "timezone",
            "unknown",
        ),
        ("t", ObjectTrigger(function="f", bucket="a..b"), "bucket", "is not a bucket name"),
        ("t", ObjectTrigger(function="f", bucket="No_Such"), "bucket", "is not a bucket name"),
        ("t", ObjectTrigger(function="f", bucket="photos", events=[]), "events", "created, deleted"),
        (
            "t",
            ObjectTrigger(function="f", bucket="photos", events=["created", "created"]),
            "events",
            "once each",
        ),
        ("t", TopicTrigger(function="f", topic="Orders!"), "topic", "is not a topic name"),
        ("t", TopicTrigger(function="f", topic="orders", filter={"kind": []}), "filter", "1 to 64 values"),
        ("t", TopicTrigger(function="f", topic="orders", filter={"": ["a"]}), "filter", "needs a name"),
        ("t", TopicTrigger(function="f", topic="orders", filter={"a b": ["x"]}), "filter", "name 'a b'"),
        (
            "t",
            TopicTrigger(function="f", topic="orders", filter={"kind": ["x\n"]}),
            "filter.kind",
            "no control characters",
        ),
        (
            "t",
            TopicTrigger(function="f", topic="orders", filter={f"a{i}": ["x"] for i in range(17)}),
            "filter",
            "at most 16 attributes",
        ),
    ],
)
def test_check_refuses(name: str, spec: Any, field: str, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        check_trigger(name, spec)
    assert caught.value.field == field
    assert message in caught.value.message


def test_an_http_trigger_is_a_route_with_an_address() -> None:
    spec = HttpTrigger(function="api", path="/users/{id}", methods=["GET", "PUT"], auth="none")
    assert route("users", spec).key == "GET PUT /users/{id}"
    assert url_path("team", spec) == "/http/team/users/{id}"
    assert url_path("default", HttpTrigger(function="api", path="/")) == "/http/default/"


def test_missed_ticks_default_to_the_servers() -> None:
    assert missed_ticks(CronTrigger(function="f", schedule="rate(1 hour)"), "skip") is MissedTicks.SKIP
    caught_up = CronTrigger(function="f", schedule="rate(1 hour)", missed_ticks="catch_up_one")
    assert missed_ticks(caught_up, "skip") is MissedTicks.CATCH_UP_ONE


def test_object_and_topic_triggers_are_normalised() -> None:
    both = ObjectTrigger(function="f", bucket="photos", events=["deleted", "created"], prefix="a/")
    assert check_trigger("t", both) == msgspec.structs.replace(both, events=["created", "deleted"])
    assert check_trigger("t", ObjectTrigger(function="f", bucket="photos")).events == ["created"]  # type: ignore[union-attr]
    topic = TopicTrigger(function="f", topic="orders", filter={"z": ["b", "a", "b"], "a": ["x"]})
    checked = check_trigger("t", topic)
    assert checked.filter == {"a": ["x"], "z": ["a", "b"]}  # type: ignore[union-attr]
    assert list(checked.filter) == ["a", "z"]  # type: ignore[union-attr]
    assert msgspec.to_builtins(checked) == {
        "type": "topic",
        "topic": "orders",
        "filter": {"a": ["x"], "z": ["a", "b"]},
        "function": "f",
        "qualifier": None,
    }


def test_every_type_is_stored_and_read_back() -> None:
    for spec in (
        ObjectTrigger(function="f", bucket="photos", events=["deleted"], suffix=".png"),
        TopicTrigger(function="f", topic="orders", filter={"kind": ["a"]}),
    ):
        assert msgspec.json.decode(msgspec.json.encode(spec), type=TriggerSpec) == spec
