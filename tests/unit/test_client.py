import base64
import inspect
import io
import itertools
import json
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import wuzhao
from wuzhao import errors
from wuzhao.client import (
    DEFAULT_URL,
    Client,
    InvokeResult,
    resolve_api_key,
    resolve_data_dir,
    resolve_url,
)
from wuzhao.domain.functions import FunctionUpdate

Handler = Callable[[httpx.Request], httpx.Response]

FUNCTION = {
    "name": "hello",
    "runtime": "python3.11",
    "handler": "main.handler",
    "memory_mb": 128,
    "timeout_s": 30,
    "env": {},
    "code_sha256": "ab" * 32,
    "code_size": 321,
    "revision": 1,
    "created_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-01T12:00:00Z",
    "instances": {"idle": 0, "busy": 0},
}


class Recorder:
    """A fake server: answers each request with the next handler's response, keeps the requests."""

    def __init__(self, *handlers: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self._handlers: Iterator[Handler] = iter(handlers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return next(self._handlers)(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def answer(status: int = 200, body: Any = None, **headers: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return handler


@pytest.fixture
def make_client() -> Iterator[Callable[..., tuple[Client, Recorder]]]:
    clients: list[Client] = []

    def make(*handlers: Handler, **kwargs: Any) -> tuple[Client, Recorder]:
        recorder = Recorder(*handlers)
        kwargs.setdefault("api_key", "secret")
        kwargs.setdefault("environ", {})
        client = Client(transport=httpx.MockTransport(recorder), **kwargs)
        clients.append(client)
        return client, recorder

    yield make
    for client in clients:
        client.close()


# -- configuration -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "environ", "expected"),
    [
        ("http://explicit:1/", {"WUZHAO_URL": "http://env:2"}, "http://explicit:1"),
        (None, {"WUZHAO_URL": "http://env:2"}, "http://env:2"),
        (None, {}, DEFAULT_URL),
        (None, {"WUZHAO_URL": ""}, DEFAULT_URL),
    ],
)
def test_url_resolution(url: str | None, environ: dict[str, str], expected: str) -> None:
    assert resolve_url(url, environ) == expected


def test_data_dir_resolution(tmp_path: Path) -> None:
    assert resolve_data_dir(tmp_path / "x", {"WUZHAO_DATA_DIR": "/env"}) == tmp_path / "x"
    assert resolve_data_dir(None, {"WUZHAO_DATA_DIR": "/env"}) == Path("/env")
    assert resolve_data_dir(None, {"HOME": "/home/u"}) == Path("/home/u/.local/share/wuzhao")


def test_api_key_resolution_order(tmp_path: Path) -> None:
    (tmp_path / "admin.key").write_text("from-file\n")
    environ = {"WUZHAO_API_KEY": "from-env", "WUZHAO_DATA_DIR": str(tmp_path)}

    assert resolve_api_key("explicit", environ) == "explicit"
    assert resolve_api_key(None, environ) == "from-env"
    assert resolve_api_key(None, {"WUZHAO_DATA_DIR": str(tmp_path)}) == "from-file"
    assert resolve_api_key(None, {}, data_dir=tmp_path) == "from-file"


@pytest.mark.parametrize(("content", "problem"), [(None, "does not exist"), ("\n", "is empty")])
def test_missing_api_key_says_what_was_tried(tmp_path: Path, content: str | None, problem: str) -> None:
    if content is not None:
        (tmp_path / "admin.key").write_text(content)

    with pytest.raises(errors.Unauthorized) as caught:
        resolve_api_key(None, {"WUZHAO_DATA_DIR": str(tmp_path)})

    message = str(caught.value)
    assert "WUZHAO_API_KEY" in message
    assert f"{tmp_path / 'admin.key'} {problem}" in message


def test_key_is_only_needed_by_calls_that_use_it(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(answer(body={"status": "ok"}), api_key=None)

    assert client.health() == {"status": "ok"}
    assert "authorization" not in recorder.last.headers
    with pytest.raises(errors.Unauthorized, match="WUZHAO_API_KEY"):
        client.list_functions()
    assert len(recorder.requests) == 1


def test_requests_carry_the_bearer_key_to_the_resolved_url(
    make_client: Callable[..., Any],
) -> None:
    client, recorder = make_client(
        answer(body={"functions": []}),
        api_key=None,
        environ={"WUZHAO_URL": "http://10.0.0.5:9600", "WUZHAO_API_KEY": "k1"},
    )

    client.list_functions()

    assert str(recorder.last.url) == "http://10.0.0.5:9600/v1/functions"
    assert recorder.last.headers["authorization"] == "Bearer k1"


def test_client_is_reexported_from_the_package() -> None:
    assert wuzhao.Client is Client
    assert "Client" in wuzhao.__all__


# -- functions ---------------------------------------------------------------


def test_deploy_zips_the_directory_and_sends_only_given_settings(
    make_client: Callable[..., Any], tmp_path: Path
) -> None:
    (tmp_path / "main.py").write_text("def handler(event, context):\n    return event\n")
    client, recorder = make_client(answer(201, FUNCTION))

    function = client.deploy("hello", tmp_path, memory_mb=256, env={"A": "1"})

    request = recorder.last
    assert (request.method, request.url.path) == ("PUT", "/v1/functions/hello")
    body = json.loads(request.content)
    assert set(body) == {"memory_mb", "env", "code"}
    assert body["env"] == {"A": "1"}
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(body["code"]))) as archive:
        assert archive.namelist() == ["main.py"]
    assert function == FUNCTION
    assert function.created is True


def test_deploy_of_settings_only_is_an_update(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(answer(200, {**FUNCTION, "revision": 2}))

    function = client.deploy("hello", timeout_s=60)

    assert json.loads(recorder.last.content) == {"timeout_s": 60}
    assert (function.created, function["revision"]) == (False, 2)


def test_deploy_sends_the_network_mode(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(answer(200, {**FUNCTION, "network": "outbound"}))

    function = client.deploy("hello", network="outbound")

    assert json.loads(recorder.last.content) == {"network": "outbound"}
    assert function["network"] == "outbound"


def test_deploy_takes_a_zip_or_a_directory_not_both(make_client: Callable[..., Any], tmp_path: Path) -> None:
    client, _ = make_client()

    with pytest.raises(TypeError):
        client.deploy("hello", tmp_path, code_zip=b"PK")


def test_deploy_rejection_raises_the_typed_error(make_client: Callable[..., Any]) -> None:
    body = {"error": {"code": "InvalidCode", "message": "no main.py", "field": "code"}}
    client, _ = make_client(answer(400, body))

    with pytest.raises(errors.InvalidCode) as caught:
        client.deploy("hello", code_zip=b"PK")

    assert (caught.value.message, caught.value.field) == ("no main.py", "code")


def test_list_get_delete(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(answer(body={"functions": [FUNCTION]}), answer(body=FUNCTION), answer(204))

    assert client.list_functions() == [FUNCTION]
    assert client.get_function("hello") == FUNCTION
    assert client.delete_function("hello") is None
    assert [(r.method, r.url.path) for r in recorder.requests] == [
        ("GET", "/v1/functions"),
        ("GET", "/v1/functions/hello"),
        ("DELETE", "/v1/functions/hello"),
    ]


def test_names_cannot_escape_their_route(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(answer(body=FUNCTION))

    client.get_function("../invocations/x")

    assert recorder.last.url.raw_path == b"/v1/functions/..%2Finvocations%2Fx"


def test_unknown_function_raises_not_found(make_client: Callable[..., Any]) -> None:
    body = {"error": {"code": "NotFound", "message": "no function 'nope'"}}
    client, _ = make_client(answer(404, body))

    with pytest.raises(errors.NotFound, match="no function 'nope'"):
        client.get_function("nope")


def test_an_error_page_that_is_not_json_still_raises(make_client: Callable[..., Any]) -> None:
    client, _ = make_client(lambda request: httpx.Response(502, text="<html>Bad Gateway</html>"))

    with pytest.raises(errors.WuzhaoError, match="HTTP 502"):
        client.list_functions()


# -- invocations -------------------------------------------------------------

INVOKE_HEADERS = {
    "X-Wuzhao-Invocation-Id": "inv-1",
    "X-Wuzhao-Cold-Start": "true",
    "X-Wuzhao-Duration-Ms": "12.5",
}


def test_invoke_returns_value_and_call_facts(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(answer(200, {"echo": [1, 2]}, **INVOKE_HEADERS))

    result = client.invoke("hello", {"x": 1})

    assert result == InvokeResult(
        value={"echo": [1, 2]}, invocation_id="inv-1", cold_start=True, duration_ms=12.5
    )
    assert (recorder.last.method, recorder.last.url.path) == ("POST", "/v1/functions/hello/invoke")
    assert json.loads(recorder.last.content) == {"x": 1}
    assert recorder.last.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("kwargs", "sent"),
    [({}, b"{}"), ({"event": [1]}, b"[1]"), ({"payload": b"null"}, b"null")],
)
def test_invoke_body(make_client: Callable[..., Any], kwargs: dict[str, Any], sent: bytes) -> None:
    client, recorder = make_client(answer(200, "ok", **INVOKE_HEADERS))

    assert client.invoke("hello", **kwargs).value == "ok"
    assert recorder.last.content == sent


def test_invoke_takes_an_event_or_a_payload_not_both(make_client: Callable[..., Any]) -> None:
    client, _ = make_client()

    with pytest.raises(TypeError):
        client.invoke("hello", {"a": 1}, payload=b"{}")


def test_invoke_waits_without_a_read_timeout(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(answer(200, 1, **INVOKE_HEADERS), answer(200, FUNCTION))

    client.invoke("hello")
    client.get_function("hello")

    invoke_timeout, other_timeout = (r.extensions["timeout"] for r in recorder.requests)
    assert invoke_timeout["read"] is None
    assert invoke_timeout["connect"] == other_timeout["read"] == 30.0


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (500, "FunctionError", errors.FunctionError),
        (500, "InitError", errors.InitError),
        (500, "OutOfMemory", errors.OutOfMemory),
        (500, "RuntimeExited", errors.RuntimeExited),
        (504, "Timeout", errors.Timeout),
        (429, "Throttled", errors.Throttled),
    ],
)
def test_failed_invocation_raises_typed_error_with_its_id(
    make_client: Callable[..., Any], status: int, code: str, expected: type[errors.WuzhaoError]
) -> None:
    body = {
        "error": {
            "code": code,
            "message": "boom",
            "error_type": "ValueError",
            "traceback": ["Traceback (most recent call last):\n", "ValueError: boom\n"],
        }
    }
    headers = {**INVOKE_HEADERS, "X-Wuzhao-Function-Error": code}
    client, _ = make_client(answer(status, body, **headers))

    with pytest.raises(expected) as caught:
        client.invoke("hello")

    error = caught.value
    assert error.invocation_id == "inv-1"  # type: ignore[attr-defined]
    assert error.details["error_type"] == "ValueError"
    assert error.details["traceback"][-1] == "ValueError: boom\n"


def test_failure_before_an_invocation_exists_has_no_id(make_client: Callable[..., Any]) -> None:
    client, _ = make_client(answer(404, {"error": {"code": "NotFound", "message": "no"}}))

    with pytest.raises(errors.NotFound) as caught:
        client.invoke("nope")

    assert caught.value.invocation_id is None  # type: ignore[attr-defined]


def test_get_invocation(make_client: Callable[..., Any]) -> None:
    record = {"id": "inv-1", "status": "succeeded", "error": None, "logs": []}
    client, recorder = make_client(answer(body=record))

    assert client.get_invocation("inv-1") == record
    assert recorder.last.url.path == "/v1/invocations/inv-1"


# -- logs --------------------------------------------------------------------


def line(seq: int) -> dict[str, Any]:
    return {
        "seq": seq,
        "timestamp": "2024-05-01T12:00:00Z",
        "invocation_id": "inv-1",
        "stream": "stdout",
        "message": f"line {seq}",
    }


def page(*seqs: int) -> Handler:
    return answer(body={"logs": [line(s) for s in seqs], "next": seqs[-1] if seqs else None})


@pytest.mark.parametrize(
    ("kwargs", "query"),
    [
        ({}, {}),
        ({"since": "10m", "limit": 5}, {"since": "10m", "limit": "5"}),
        ({"since": 1714564800}, {"since": "1714564800"}),
        ({"since": datetime(2024, 5, 1, tzinfo=UTC)}, {"since": "2024-05-01T00:00:00+00:00"}),
        ({"after": 41}, {"after": "41"}),
    ],
)
def test_logs_query(make_client: Callable[..., Any], kwargs: dict[str, Any], query: dict[str, str]) -> None:
    client, recorder = make_client(page(1))

    assert client.logs("hello", **kwargs) == {"logs": [line(1)], "next": 1}
    assert recorder.last.url.path == "/v1/functions/hello/logs"
    assert dict(recorder.last.url.params) == query


def test_follow_logs_pages_on_from_the_last_seq(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(page(), page(3, 4), page(), page(5))

    seen = itertools.islice(client.follow_logs("hello", since="1h", poll_interval=0), 3)

    assert [entry["seq"] for entry in seen] == [3, 4, 5]
    assert [dict(r.url.params) for r in recorder.requests] == [
        {"since": "1h"},
        {"since": "1h"},  # nothing seen yet, so no cursor to follow from
        {"after": "4", "limit": "1000"},
        {"after": "4", "limit": "1000"},
    ]


def test_follow_logs_pauses_only_after_a_short_page(
    make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    naps: list[float] = []
    monkeypatch.setattr("wuzhao.client.time.sleep", naps.append)
    client, _ = make_client(page(1, 2), page(*range(3, 1003)), page(1003), page(1004))

    seen = list(itertools.islice(client.follow_logs("hello", limit=2, poll_interval=7), 1004))

    assert seen[-1]["seq"] == 1004
    assert naps == [7]  # only after the short page; full pages mean more lines are waiting


def test_client_is_a_context_manager(make_client: Callable[..., Any]) -> None:
    client, _ = make_client()

    with client as same:
        assert same is client
    with pytest.raises(RuntimeError):
        client.list_functions()


# -- namespaces in requests ----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, None),
        ({"namespace": "team"}, "team"),
        ({"environ": {"WUZHAO_NAMESPACE": "env-team"}}, "env-team"),
        ({"namespace": "team", "environ": {"WUZHAO_NAMESPACE": "env-team"}}, "team"),
    ],
)
def test_namespace_header(
    make_client: Callable[..., Any], kwargs: dict[str, Any], expected: str | None
) -> None:
    client, recorder = make_client(answer(body={"functions": []}), answer(body={"status": "ok"}), **kwargs)

    client.list_functions()
    client.health()

    authenticated, health = recorder.requests
    assert authenticated.headers.get("x-wuzhao-namespace") == expected
    assert "x-wuzhao-namespace" not in health.headers


# -- deploy settings -----------------------------------------------------------


def test_deploy_sends_secrets_layers_and_limits(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(answer(200, FUNCTION))

    client.deploy(
        "hello",
        secrets={"DB": "db-pass"},
        layers=("deps:3", "tools:1"),
        max_concurrency=0,
        idle_timeout_s=60,
    )

    assert json.loads(recorder.last.content) == {
        "secrets": {"DB": "db-pass"},
        "layers": ["deps:3", "tools:1"],
        "max_concurrency": 0,  # 0 is a setting (disabled), not "left as is"
        "idle_timeout_s": 60,
    }


def test_deploy_can_clear_secrets_and_layers(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(answer(200, FUNCTION))

    client.deploy("hello", secrets={}, layers=[])

    assert json.loads(recorder.last.content) == {"secrets": {}, "layers": []}


def test_deploy_sends_the_async_settings(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(answer(200, FUNCTION))

    client.deploy(
        "hello",
        max_retries=0,
        retry_delay_s=0.5,
        max_event_age_s=120,
        on_success="audit",
        on_failure="",
        ordering_hold=False,
    )

    assert json.loads(recorder.last.content) == {
        "max_retries": 0,  # 0, "" and False are settings, not "left as is"
        "retry_delay_s": 0.5,
        "max_event_age_s": 120,
        "on_success": "audit",
        "on_failure": "",  # removes the destination
        "ordering_hold": False,
    }


def test_deploy_sends_the_loop_settings(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(answer(200, FUNCTION))

    client.deploy("hello", max_chain_calls=3, recursive_loop="allow")

    assert json.loads(recorder.last.content) == {"max_chain_calls": 3, "recursive_loop": "allow"}


def test_deploy_takes_every_setting_the_server_does() -> None:
    # A setting added to PUT /v1/functions/{name} and forgotten here could not be deployed.
    accepted = set(FunctionUpdate.__struct_fields__)
    assert accepted <= set(inspect.signature(Client.deploy).parameters) | {"code"}


# -- versions and aliases ------------------------------------------------------

VERSION = {"function": "hello", "version": 2, "description": "v2", "code_sha256": "ab" * 32}
ALIAS = {"function": "hello", "name": "prod", "version": 2, "routing": None, "description": ""}


@pytest.mark.parametrize(("status", "created"), [(201, True), (200, False)])
def test_publish(make_client: Callable[..., Any], status: int, created: bool) -> None:
    client, recorder = make_client(answer(status, VERSION))

    version = client.publish("hello", "v2")

    assert (recorder.last.method, recorder.last.url.path) == ("POST", "/v1/functions/hello/versions")
    assert json.loads(recorder.last.content) == {"description": "v2"}
    assert version == VERSION
    assert version.created is created


def test_version_reads_and_delete(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(answer(body={"versions": [VERSION]}), answer(body=VERSION), answer(204))

    assert client.list_versions("hello") == [VERSION]
    assert client.get_version("hello", 2) == VERSION
    assert client.delete_version("hello", 2) is None
    assert [(r.method, r.url.path) for r in recorder.requests] == [
        ("GET", "/v1/functions/hello/versions"),
        ("GET", "/v1/functions/hello/versions/2"),
        ("DELETE", "/v1/functions/hello/versions/2"),
    ]


def test_deleting_a_version_in_use_raises_conflict(make_client: Callable[..., Any]) -> None:
    body = {"error": {"code": "Conflict", "message": "version 2 is in use by alias prod"}}
    client, _ = make_client(answer(409, body))

    with pytest.raises(errors.Conflict, match="alias prod"):
        client.delete_version("hello", 2)


@pytest.mark.parametrize(
    ("routing", "sent"),
    [(None, None), ({4: 0.1}, {"4": 0.1}), ({"4": 0.25}, {"4": 0.25})],
)
def test_set_alias(
    make_client: Callable[..., Any], routing: dict[Any, float] | None, sent: dict[str, float] | None
) -> None:
    client, recorder = make_client(answer(201, ALIAS))

    assert client.set_alias("hello", "prod", 3, routing=routing, description="live") == ALIAS

    assert (recorder.last.method, recorder.last.url.path) == ("PUT", "/v1/functions/hello/aliases/prod")
    body = json.loads(recorder.last.content)
    assert body.pop("routing", None) == sent
    assert body == {"version": 3, "description": "live"}


def test_alias_reads_and_delete(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(answer(body={"aliases": [ALIAS]}), answer(body=ALIAS), answer(204))

    assert client.list_aliases("hello") == [ALIAS]
    assert client.get_alias("hello", "prod") == ALIAS
    client.delete_alias("hello", "prod")
    assert [(r.method, r.url.path) for r in recorder.requests] == [
        ("GET", "/v1/functions/hello/aliases"),
        ("GET", "/v1/functions/hello/aliases/prod"),
        ("DELETE", "/v1/functions/hello/aliases/prod"),
    ]


@pytest.mark.parametrize(
    ("qualifier", "query"), [(None, {}), ("prod", {"qualifier": "prod"}), (3, {"qualifier": "3"})]
)
def test_invoke_a_qualifier_reports_the_version_that_ran(
    make_client: Callable[..., Any], qualifier: str | int | None, query: dict[str, str]
) -> None:
    client, recorder = make_client(answer(200, 1, **INVOKE_HEADERS, **{"X-Wuzhao-Executed-Version": "3"}))

    result = client.invoke("hello", qualifier=qualifier)

    assert dict(recorder.last.url.params) == query
    assert result.version == "3"


def test_invoke_version_is_empty_when_not_reported(make_client: Callable[..., Any]) -> None:
    client, _ = make_client(answer(200, 1, **INVOKE_HEADERS))

    assert client.invoke("hello").version == ""


# -- layers and secrets --------------------------------------------------------

LAYER = {"name": "deps", "version": 1, "reference": "deps:1", "code_sha256": "cd" * 32, "code_size": 10}


def test_push_layer_zips_the_directory(make_client: Callable[..., Any], tmp_path: Path) -> None:
    (tmp_path / "python").mkdir()
    (tmp_path / "python" / "lib.py").write_text("X = 1\n")
    client, recorder = make_client(answer(201, LAYER))

    assert client.push_layer("deps", tmp_path, description="libs") == LAYER

    assert (recorder.last.method, recorder.last.url.path) == ("PUT", "/v1/layers/deps")
    body = json.loads(recorder.last.content)
    assert body["description"] == "libs"
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(body["code"]))) as archive:
        assert archive.namelist() == ["python/lib.py"]


def test_push_layer_takes_a_zip(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(answer(201, LAYER))

    client.push_layer("deps", code_zip=b"PK\x05\x06" + b"\0" * 18)

    assert base64.b64decode(json.loads(recorder.last.content)["code"]).startswith(b"PK")


@pytest.mark.parametrize("kwargs", [{}, {"code_dir": ".", "code_zip": b"PK"}])
def test_push_layer_needs_exactly_one_source(make_client: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    client, recorder = make_client()

    with pytest.raises(TypeError):
        client.push_layer("deps", **kwargs)
    assert recorder.requests == []


def test_layer_reads_and_delete(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(
        answer(body={"layers": [LAYER]}), answer(body={"name": "deps", "versions": [LAYER]}), answer(204)
    )

    assert client.list_layers() == [LAYER]
    assert client.get_layer("deps") == {"name": "deps", "versions": [LAYER]}
    client.delete_layer_version("deps", 1)
    assert [(r.method, r.url.path) for r in recorder.requests] == [
        ("GET", "/v1/layers"),
        ("GET", "/v1/layers/deps"),
        ("DELETE", "/v1/layers/deps/versions/1"),
    ]


def test_secrets(make_client: Callable[..., Any]) -> None:
    secret = {"name": "db-pass", "updated_at": "2024-05-01T12:00:00Z"}
    client, recorder = make_client(answer(body=secret), answer(body={"secrets": [secret]}), answer(204))

    assert client.set_secret("db-pass", "s3cr3t") == secret
    assert client.list_secrets() == [secret]
    client.delete_secret("db-pass")
    put, listed, deleted = recorder.requests
    assert (put.method, put.url.path, json.loads(put.content)) == (
        "PUT",
        "/v1/secrets/db-pass",
        {"value": "s3cr3t"},
    )
    assert (listed.method, listed.url.path) == ("GET", "/v1/secrets")
    assert (deleted.method, deleted.url.path) == ("DELETE", "/v1/secrets/db-pass")


# -- namespaces and keys -------------------------------------------------------

NAMESPACE = {"name": "team", "max_instances": 5, "max_memory_mb": None, "usage": {"instances": 0}}


@pytest.mark.parametrize(
    ("kwargs", "sent"),
    [
        ({}, {"name": "team"}),
        ({"max_instances": 5, "max_memory_mb": 0}, {"name": "team", "max_instances": 5, "max_memory_mb": 0}),
    ],
)
def test_create_namespace(
    make_client: Callable[..., Any], kwargs: dict[str, Any], sent: dict[str, Any]
) -> None:
    client, recorder = make_client(answer(201, NAMESPACE))

    assert client.create_namespace("team", **kwargs) == NAMESPACE

    assert (recorder.last.method, recorder.last.url.path) == ("POST", "/v1/namespaces")
    assert json.loads(recorder.last.content) == sent


def test_namespace_reads_quotas_and_delete(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(
        answer(body={"namespaces": [NAMESPACE]}), answer(body=NAMESPACE), answer(body=NAMESPACE), answer(204)
    )

    assert client.list_namespaces() == [NAMESPACE]
    assert client.get_namespace("team") == NAMESPACE
    client.set_quotas("team", max_instances=5, max_memory_mb=None)
    client.delete_namespace("team")
    assert [(r.method, r.url.path) for r in recorder.requests] == [
        ("GET", "/v1/namespaces"),
        ("GET", "/v1/namespaces/team"),
        ("PUT", "/v1/namespaces/team"),
        ("DELETE", "/v1/namespaces/team"),
    ]
    assert json.loads(recorder.requests[2].content) == {"max_instances": 5, "max_memory_mb": None}


@pytest.mark.parametrize(
    ("client_namespace", "namespace", "sent"),
    [(None, None, "default"), ("team", None, "team"), ("team", "other", "other")],
)
def test_create_key(
    make_client: Callable[..., Any], client_namespace: str | None, namespace: str | None, sent: str
) -> None:
    created = {"key_id": "k1", "namespace": sent, "role": "developer", "key": "wz_secret"}
    client, recorder = make_client(answer(201, created), namespace=client_namespace)

    assert client.create_key("developer", namespace, "ci")["key"] == "wz_secret"

    assert (recorder.last.method, recorder.last.url.path) == ("POST", "/v1/keys")
    assert json.loads(recorder.last.content) == {"role": "developer", "namespace": sent, "description": "ci"}


def test_list_and_revoke_keys(make_client: Callable[..., Any]) -> None:
    key = {"key_id": "k1", "namespace": "team", "role": "invoker"}
    client, recorder = make_client(answer(body={"keys": [key]}), answer(204))

    assert client.list_keys() == [key]
    client.revoke_key("k1")
    assert (recorder.last.method, recorder.last.url.path) == ("DELETE", "/v1/keys/k1")


def test_every_segment_is_quoted(make_client: Callable[..., Any]) -> None:
    client, recorder = make_client(answer(204), answer(204))

    client.delete_alias("../x", "a/b")
    client.revoke_key("../../functions")

    assert recorder.requests[0].url.raw_path == b"/v1/functions/..%2Fx/aliases/a%2Fb"
    assert recorder.requests[1].url.raw_path == b"/v1/keys/..%2F..%2Ffunctions"
