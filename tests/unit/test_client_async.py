"""The SDK's asynchronous calls and dead letters against a fake server (httpx.MockTransport)."""

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from wuzhao import errors
from wuzhao.client import Client

Reply = Callable[[httpx.Request], httpx.Response]

DEAD = {
    "id": "inv-1",
    "namespace": "default",
    "function": "hello",
    "qualifier": None,
    "status": "dead",
    "async": True,
    "enqueued_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-01T12:01:00Z",
    "ordering_key": None,
    "attempts": [
        {
            "number": 1,
            "started_at": "2024-05-01T12:00:00Z",
            "duration_ms": 3.5,
            "outcome": "FunctionError",
            "error": {"code": "FunctionError", "message": "boom"},
        }
    ],
    "result": None,
    "error": {"code": "FunctionError", "message": "boom"},
}


class Server:
    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.replies.pop(0)(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def reply(status: int = 200, body: Any = None) -> Reply:
    return lambda request: httpx.Response(status, json=body)


def queued(invocation_id: str = "inv-1") -> Reply:
    return reply(202, {"invocation_id": invocation_id, "status": "queued"})


def record(status: str, *, is_async: bool = True) -> Reply:
    return reply(200, {**DEAD, "status": status, "async": is_async})


@pytest.fixture
def make_client() -> Iterator[Callable[..., tuple[Client, Server]]]:
    clients: list[Client] = []

    def make(*replies: Reply) -> tuple[Client, Server]:
        server = Server(*replies)
        client = Client("http://wz", api_key="k", environ={}, transport=httpx.MockTransport(server))
        clients.append(client)
        return client, server

    yield make
    for client in clients:
        client.close()


# invoke_async


def test_invoke_async_queues_and_returns_the_id(make_client: Callable[..., Any]) -> None:
    client, server = make_client(queued("inv-9"))

    assert client.invoke_async("hello", {"n": 1}) == "inv-9"

    request = server.last
    assert (request.method, request.url.path) == ("POST", "/v1/functions/hello/invoke")
    assert request.headers["x-wuzhao-invocation-type"] == "async"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"n": 1}
    assert "idempotency-key" not in request.headers
    assert "x-wuzhao-ordering-key" not in request.headers
    assert request.url.params.get("qualifier") is None


def test_invoke_async_sends_its_keys_and_qualifier(make_client: Callable[..., Any]) -> None:
    client, server = make_client(queued())

    client.invoke_async("hello", payload=b"null", qualifier=3, idempotency_key="idem", ordering_key="order-7")

    request = server.last
    assert request.content == b"null"
    assert request.headers["idempotency-key"] == "idem"
    assert request.headers["x-wuzhao-ordering-key"] == "order-7"
    assert request.url.params["qualifier"] == "3"


def test_invoke_async_without_an_event_sends_an_empty_object(make_client: Callable[..., Any]) -> None:
    client, server = make_client(queued())

    client.invoke_async("hello")

    assert server.last.content == b"{}"


def test_invoke_async_takes_an_event_or_a_payload_not_both(make_client: Callable[..., Any]) -> None:
    client, server = make_client()

    with pytest.raises(TypeError):
        client.invoke_async("hello", {"a": 1}, payload=b"{}")
    assert server.requests == []


def test_invoke_async_refused_raises_the_typed_error(make_client: Callable[..., Any]) -> None:
    client, _ = make_client(reply(404, {"error": {"code": "NotFound", "message": "no function"}}))

    with pytest.raises(errors.NotFound, match="no function"):
        client.invoke_async("nope")


# wait_invocation


@pytest.fixture
def naps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr("wuzhao.client.time.sleep", slept.append)
    return slept


@pytest.mark.parametrize("final", ["succeeded", "dead"])
def test_wait_invocation_polls_past_queued_running_and_failed(
    make_client: Callable[..., Any], naps: list[float], final: str
) -> None:
    client, server = make_client(
        record("queued"), record("running"), record("failed"), record("running"), record(final)
    )

    done = client.wait_invocation("inv-1", timeout=60, poll_interval=0.3)

    assert done["status"] == final
    assert [r.url.path for r in server.requests] == ["/v1/invocations/inv-1"] * 5
    assert naps == [0.05, 0.1, 0.2, 0.3]  # quick at first, then every poll_interval


def test_wait_invocation_of_a_synchronous_call_stops_at_failed(
    make_client: Callable[..., Any], naps: list[float]
) -> None:
    client, _ = make_client(record("failed", is_async=False))

    assert client.wait_invocation("inv-1")["status"] == "failed"
    assert naps == []


def test_wait_invocation_times_out(
    make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, naps: list[float]
) -> None:
    clock = iter([100.0, 100.5, 101.97, 103.0])
    monkeypatch.setattr("wuzhao.client.time.monotonic", lambda: next(clock))
    client, server = make_client(record("queued"), record("running"), record("failed"))

    with pytest.raises(TimeoutError, match="inv-1 is still 'failed' after 2 s"):
        client.wait_invocation("inv-1", timeout=2, poll_interval=1)

    assert len(server.requests) == 3
    assert naps == [0.05, pytest.approx(0.03)]  # the second nap cut to what was left, not 0.1


# dead letters


def test_dead_letters_page(make_client: Callable[..., Any]) -> None:
    page = {"dead_letters": [DEAD], "next": "inv-1"}
    client, server = make_client(reply(200, page), reply(200, page))

    assert client.dead_letters("hello") == page
    assert (server.last.url.path, dict(server.last.url.params)) == ("/v1/functions/hello/dead-letters", {})
    client.dead_letters("hello", limit=1, after="inv-0")
    assert dict(server.last.url.params) == {"limit": "1", "after": "inv-0"}


def test_iter_dead_letters_follows_next(make_client: Callable[..., Any]) -> None:
    client, server = make_client(
        reply(200, {"dead_letters": [{**DEAD, "id": "a"}, {**DEAD, "id": "b"}], "next": "b"}),
        reply(200, {"dead_letters": [{**DEAD, "id": "c"}], "next": None}),
    )

    assert [dead["id"] for dead in client.iter_dead_letters("hello", page_size=2)] == ["a", "b", "c"]
    assert [dict(r.url.params) for r in server.requests] == [{"limit": "2"}, {"limit": "2", "after": "b"}]


def test_dead_letter_redrive_and_delete(make_client: Callable[..., Any]) -> None:
    client, server = make_client(reply(200, DEAD), queued("inv-1"), reply(204))

    assert client.dead_letter("hello", "inv-1") == DEAD
    assert client.redrive("hello", "inv-1") == "inv-1"
    client.delete_dead_letter("hello", "inv-1")

    assert [(r.method, r.url.path) for r in server.requests] == [
        ("GET", "/v1/functions/hello/dead-letters/inv-1"),
        ("POST", "/v1/functions/hello/dead-letters/inv-1/redrive"),
        ("DELETE", "/v1/functions/hello/dead-letters/inv-1"),
    ]


def test_an_unknown_dead_letter_raises_not_found(make_client: Callable[..., Any]) -> None:
    missing = reply(404, {"error": {"code": "NotFound", "message": "no dead letter"}})
    client, _ = make_client(missing, missing, missing)

    for attempt in (client.dead_letter, client.redrive, client.delete_dead_letter):
        with pytest.raises(errors.NotFound):
            attempt("hello", "nope")


def test_dead_letter_ids_cannot_escape_their_route(make_client: Callable[..., Any]) -> None:
    client, server = make_client(reply(200, DEAD))

    client.dead_letter("a/b", "../x")

    assert server.last.url.raw_path == b"/v1/functions/a%2Fb/dead-letters/..%2Fx"
