"""The SDK's trigger methods (``Client.put_trigger`` and friends), against a fake server."""

import json
from collections.abc import Callable
from typing import Any

import pytest
from tests.unit.test_client import answer, make_client

from wuzhao import errors

__all__ = ["make_client"]  # the fixture, shared with test_client

TRIGGER = {"name": "users", "type": "http", "function": "api", "url_path": "/http/team/users/{id}"}


@pytest.mark.parametrize(("status", "created"), [(201, True), (200, False)])
def test_put_trigger(make_client: Callable[..., Any], status: int, created: bool) -> None:
    client, server = make_client(answer(status, TRIGGER))

    trigger = client.put_trigger(
        "users", function="api", type="http", qualifier=3, path="/users/{id}", methods=["GET"], auth="none"
    )

    assert (trigger, trigger.created) == (TRIGGER, created)
    assert (server.last.method, server.last.url.path) == ("PUT", "/v1/triggers/users")
    assert json.loads(server.last.content) == {
        "type": "http",
        "function": "api",
        "qualifier": "3",
        "path": "/users/{id}",
        "methods": ["GET"],
        "auth": "none",
    }


def test_put_trigger_without_qualifier_sends_none(make_client: Callable[..., Any]) -> None:
    client, server = make_client(answer(201, TRIGGER))
    client.put_trigger("tick", function="job", type="cron", schedule="rate(1 hour)")
    assert json.loads(server.last.content) == {"type": "cron", "function": "job", "schedule": "rate(1 hour)"}


def test_trigger_reads_and_delete(make_client: Callable[..., Any]) -> None:
    client, server = make_client(
        answer(200, {"triggers": [TRIGGER]}),
        answer(200, {"triggers": []}),
        answer(200, TRIGGER),
        answer(204),
        answer(404, {"error": {"code": "NotFound", "message": "trigger 'users' does not exist"}}),
    )
    assert client.list_triggers() == [TRIGGER]
    assert "function" not in server.last.url.params
    assert client.list_triggers("api") == []
    assert server.last.url.params["function"] == "api"
    assert client.get_trigger("users") == TRIGGER
    client.delete_trigger("users")
    assert (server.last.method, server.last.url.path) == ("DELETE", "/v1/triggers/users")
    with pytest.raises(errors.NotFound):
        client.get_trigger("users")
    assert server.requests[-1].url.path == "/v1/triggers/users"


def test_trigger_url_fills_the_path_parameters(make_client: Callable[..., Any]) -> None:
    client, _ = make_client(url="http://wz.example:9600")
    assert client.trigger_url(TRIGGER) == "http://wz.example:9600/http/team/users/{id}"
    assert client.trigger_url(TRIGGER, id="a b/c") == "http://wz.example:9600/http/team/users/a%20b%2Fc"
    files = {"url_path": "/http/team/files/{path+}"}
    assert client.trigger_url(files, path="a/b c") == "http://wz.example:9600/http/team/files/a/b%20c"


def test_publish_message(make_client: Callable[..., Any]) -> None:
    client, server = make_client(
        answer(202, {"message_id": "m-1", "deliveries": 2}),
        answer(202, {"message_id": "m-2", "deliveries": 0}),
    )

    assert client.publish_message("orders", {"order": 7}, {"kind": "refund"}) == {
        "message_id": "m-1",
        "deliveries": 2,
    }
    assert (server.last.method, server.last.url.path) == ("POST", "/v1/topics/orders/messages")
    assert json.loads(server.last.content) == {"message": {"order": 7}, "attributes": {"kind": "refund"}}
    assert client.publish_message("a/b", "text")["deliveries"] == 0
    assert server.last.url.raw_path == b"/v1/topics/a%2Fb/messages"  # one segment, whatever it holds
    assert json.loads(server.last.content) == {"message": "text", "attributes": {}}


def test_a_refused_message_raises_its_error(make_client: Callable[..., Any]) -> None:
    body = {"error": {"code": "PayloadTooLarge", "message": "the message is 262145 bytes"}}
    client, _ = make_client(answer(413, body))
    with pytest.raises(errors.PayloadTooLarge, match="262145"):
        client.publish_message("orders", "x" * 262_145)
