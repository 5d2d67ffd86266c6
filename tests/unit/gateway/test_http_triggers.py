"""The HTTP trigger front, over a platform of stand-ins: what each outcome answers.

The real thing, with sandboxes, is tests/integration/test_triggers.py; here are the
outcomes that are hard to cause there (throttling, shutdown, a broken route, an error of
ours), and that everything outside /http goes on untouched.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from wuzhao.domain.routes import Match, Route, RouteTable, parse_methods, parse_path
from wuzhao.domain.triggers import HttpTrigger
from wuzhao.errors import FunctionError, NotFound, ServiceUnavailable, Throttled, Timeout, WuzhaoError
from wuzhao.gateway.http_triggers import HttpTriggers, refusal
from wuzhao.store.api import TriggerRecord
from wuzhao.worker.worker import Outcome


@dataclass
class Stand:
    """Everything HttpTriggers asks of the platform, answering as told."""

    outcome: Outcome | Exception = field(default_factory=lambda: Outcome("id", False, 1.0, "$LATEST", b"{}"))
    resolve_error: Exception | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    spec: HttpTrigger = field(
        default_factory=lambda: HttpTrigger(function="api", path="/x/{id}", auth="none")
    )

    # platform.namespaces, .triggers, .versions, .worker, .keys, .settings: all this object
    @property
    def namespaces(self) -> Stand:
        return self

    triggers = versions = worker = keys = namespaces

    @property
    def settings(self) -> Any:
        return type("Settings", (), {"max_request_bytes": 64})()

    def exists(self, namespace: str) -> bool:
        return namespace == "default"

    def match(self, namespace: str, method: str, segments: list[str]) -> Match:
        route = Route("t", parse_path(self.spec.path), parse_methods(self.spec.methods))
        return RouteTable([route]).match(method, segments)

    def get(self, namespace: str, name: str) -> TriggerRecord:
        return TriggerRecord(namespace, name, self.spec, 0.0, 0.0)

    def resolve(self, namespace: str, function: str, qualifier: str | None) -> object:
        if self.resolve_error is not None:
            raise self.resolve_error
        return object()

    async def invoke(self, target: object, event: bytes, invocation_id: str) -> Outcome:
        self.events.append(json.loads(event))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": b"the app"})


class client:  # a lower-case name: it reads client(stand).get(path)
    """Requests to HttpTriggers over ``stand``, through httpx's ASGI transport."""

    def __init__(self, stand: Stand) -> None:
        self.app = HttpTriggers(app, stand)  # type: ignore[arg-type]

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://wz") as http:
                return await http.request(method, path, **kwargs)

        return asyncio.run(send())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


def test_everything_else_goes_on_to_the_app() -> None:
    for path in ("/v1/functions", "/httpx", "/healthz", "/v1/http/x"):
        response = client(Stand()).get(path)
        assert (response.status_code, response.text) == (299, "the app"), path


def failed(error: WuzhaoError) -> Outcome:
    return Outcome("id", False, 1.0, "$LATEST", error=error)


@pytest.mark.parametrize(
    ("outcome", "status", "body"),
    [
        (Outcome("id", False, 1.0, "$LATEST", b'{"statusCode": 418, "body": "tea"}'), 418, b"tea"),
        (failed(FunctionError("boom")), 502, b'{"message":"Internal Server Error"}'),
        (failed(Timeout("late")), 504, b'{"message":"Endpoint request timed out"}'),
        (failed(Throttled("busy")), 429, b'{"error":{"code":"Throttled","message":"busy"}}'),
        (failed(ServiceUnavailable("bye")), 503, b'{"error":{"code":"ServiceUnavailable","message":"bye"}}'),
        (
            RuntimeError("a bug of ours"),
            500,
            b'{"error":{"code":"InternalError","message":"internal error; the server log has the details"}}',
        ),
    ],
)
def test_outcomes(outcome: Outcome | Exception, status: int, body: bytes) -> None:
    stand = Stand(outcome=outcome)
    response = client(stand).post("/http/default/x/7?q=1", content=b"hi")
    assert (response.status_code, response.content) == (status, body)
    if isinstance(outcome, Outcome):
        assert response.headers["x-wuzhao-invocation-id"] == stand.events[0]["requestContext"]["requestId"]
        assert stand.events[0]["pathParameters"] == {"id": "7"}


def test_a_route_whose_alias_is_gone_is_a_502_without_running() -> None:
    stand = Stand(resolve_error=NotFound("alias 'live' of function 'api' does not exist"))
    response = client(stand).get("/http/default/x/1")
    assert response.status_code == 502
    assert stand.events == []


def test_refusals_before_the_function_runs() -> None:
    stand = Stand(spec=HttpTrigger(function="api", path="/x/{id}", methods=["GET"], auth="none"))
    assert client(stand).post("/http/default/x/1").headers["allow"] == "GET"
    assert client(stand).get("/http/nope/x/1").status_code == 404
    assert client(stand).get("/http/default/y").status_code == 404
    too_big = client(stand).get("/http/default/x/1", content=b"x" * 65)
    assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "PayloadTooLarge")
    keyed = Stand(spec=HttpTrigger(function="api", path="/x/{id}"))
    anonymous = client(keyed).get("/http/default/x/1")
    assert (anonymous.status_code, anonymous.headers["www-authenticate"]) == (401, "Bearer")
    assert stand.events == keyed.events == []


def test_refusal_is_the_apis_error_body() -> None:
    response = refusal(NotFound("nothing here", field="path"), {"X-A": "1"})
    assert response.status == 404
    assert response.headers == [("x-a", "1"), ("content-type", "application/json")]
    assert json.loads(response.body) == {
        "error": {"code": "NotFound", "message": "nothing here", "field": "path"}
    }
