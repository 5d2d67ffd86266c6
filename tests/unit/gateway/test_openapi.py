"""The OpenAPI document against the app's route table and the structs the handlers decode."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from wuzhao import __version__
from wuzhao.domain.functions import HANDLER_PATTERN, FunctionConfig, FunctionRecord
from wuzhao.domain.triggers import ObjectTrigger, TopicTrigger
from wuzhao.errors import ERRORS_BY_CODE
from wuzhao.gateway import functions, invocations, layers, openapi, tenancy, topics, triggers, versions
from wuzhao.gateway.app import ROUTES
from wuzhao.queue.api import AsyncCall, Attempt, CallState
from wuzhao.store.api import (
    AliasRecord,
    ApiKeyRecord,
    LayerRecord,
    LogLine,
    NamespaceRecord,
    SecretRecord,
    TriggerRecord,
    VersionRecord,
)
from wuzhao.worker.notifications import Published

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
DOCUMENT = openapi.build_document(ROUTES)


def route_operations() -> set[tuple[str, str]]:
    """(method, path template) of every route; HEAD is implicit with GET and not described."""
    return {
        (method, openapi.template(route.path))
        for route in ROUTES
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    }


def document_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def resolve(node: dict[str, Any]) -> Any:
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_the_document_describes_every_route_and_nothing_else() -> None:
    assert document_operations() == route_operations()


def test_every_route_has_its_own_entry_in_the_table() -> None:
    # A route missing here is still described, but only by its name: add it to OPERATIONS.
    assert set(openapi.OPERATIONS) == route_operations()


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    validate(DOCUMENT)
    msgspec.json.decode(openapi.encode(DOCUMENT))  # and serialisable as it is


@pytest.mark.parametrize("route", [r for r in ROUTES if isinstance(r, Route)], ids=lambda r: r.path)
def test_every_path_parameter_is_declared(route: Route) -> None:
    for method in (route.methods or set()) - {"HEAD"}:
        operation = DOCUMENT["paths"][openapi.template(route.path)][method.lower()]
        parameters = [resolve(p) for p in operation.get("parameters", [])]
        declared = {p["name"] for p in parameters if p["in"] == "path"}
        assert declared == set(route.param_convertors) == set(re.findall(r"{(\w+)", route.path))
        assert all(p["required"] for p in parameters if p["in"] == "path")


def test_operation_ids_are_the_handlers_names_and_unique() -> None:
    ids = [operation["operationId"] for _, _, operation in operations()]
    assert len(ids) == len(set(ids))
    by_route = {
        (m, openapi.template(r.path)): r.name for r in ROUTES if isinstance(r, Route) for m in r.methods or ()
    }
    for method, path, operation in operations():
        assert operation["operationId"] == by_route[method, path]


def test_request_bodies_are_the_structs_the_handlers_decode() -> None:
    _, expected = msgspec.json.schema_components(
        openapi.BODY_STRUCTS, ref_template="#/components/schemas/{name}"
    )
    schemas = DOCUMENT["components"]["schemas"]
    for name, schema in expected.items():
        # The only change: Python's end anchor \Z becomes ECMA 262's $ (JSON Schema regexes).
        assert schemas[name] == openapi._ecma_patterns(schema)
    bodies = {
        (method, path): operation["requestBody"]["content"]["application/json"]["schema"]
        for method, path, operation in operations()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    }
    for (method, path), spec in openapi.OPERATIONS.items():
        if spec.body is not None:
            assert bodies[method, path] == {"$ref": f"#/components/schemas/{openapi._body_name(spec.body)}"}


def test_union_bodies_are_described_by_their_members() -> None:
    (union,), expected = msgspec.json.schema_components(
        (openapi.BODY_UNIONS["TriggerBody"],), ref_template="#/components/schemas/{name}"
    )
    schemas = DOCUMENT["components"]["schemas"]
    assert schemas["TriggerBody"] == union
    assert union["discriminator"]["propertyName"] == "type"
    assert set(union["discriminator"]["mapping"]) == {"http", "cron", "object", "topic"}
    for name, schema in expected.items():
        assert schemas[name] == openapi._ecma_patterns(schema)


def test_patterns_are_ecma_262() -> None:
    handler = DOCUMENT["components"]["schemas"]["FunctionUpdate"]["properties"]["handler"]["anyOf"][0]
    assert handler["pattern"] == HANDLER_PATTERN.removesuffix(r"\Z") + "$"
    assert r"\Z" not in openapi.encode(DOCUMENT).decode()


def test_every_v1_route_needs_the_bearer_key_and_healthz_does_not() -> None:
    assert DOCUMENT["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key.",
    }
    for _method, path, operation in operations():
        if path.startswith("/v1/"):
            assert operation["security"] == [{"bearer": []}]
            assert "401" in operation["responses"]
        elif path == "/healthz":
            assert operation["security"] == []


def test_errors_share_one_schema_with_every_code() -> None:
    error = DOCUMENT["components"]["schemas"]["Error"]["properties"]["error"]
    assert set(error["properties"]["code"]["enum"]) == set(ERRORS_BY_CODE)
    for _, _, operation in operations():
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                content = resolve(response)["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/Error"}


def test_every_reference_resolves() -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                resolve(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(DOCUMENT)


def test_what_is_not_derivable_is_described() -> None:
    invoke = DOCUMENT["paths"]["/v1/functions/{name}/invoke"]["post"]
    assert [p["name"] for p in invoke["parameters"] if p.get("in") == "query"] == ["qualifier"]
    assert set(invoke["responses"]["200"]["headers"]) == set(openapi.INVOKE_HEADERS)
    assert "X-Wuzhao-Function-Error" in invoke["responses"]["500"]["headers"]
    logs = DOCUMENT["paths"]["/v1/functions/{name}/logs"]["get"]
    assert [p["name"] for p in logs["parameters"] if p.get("in") == "query"] == ["since", "after", "limit"]
    namespace = resolve({"$ref": "#/components/parameters/Namespace"})
    assert namespace == {**namespace, "name": "X-Wuzhao-Namespace", "in": "header", "required": False}
    put = DOCUMENT["paths"]["/v1/functions/{name}"]["put"]
    assert {"200", "201"} <= set(put["responses"])
    assert "content" not in DOCUMENT["paths"]["/v1/functions/{name}"]["delete"]["responses"]["204"]


def test_asynchronous_invocation_is_described() -> None:
    invoke = DOCUMENT["paths"]["/v1/functions/{name}/invoke"]["post"]
    headers = [p["name"] for p in invoke["parameters"] if p.get("in") == "header"]
    assert headers == ["X-Wuzhao-Invocation-Type", "Idempotency-Key", "X-Wuzhao-Ordering-Key"]
    accepted = invoke["responses"]["202"]
    assert accepted["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AsyncAccepted"}
    assert accepted["headers"]["X-Wuzhao-Invocation-Id"]["required"] is True
    invocation = DOCUMENT["paths"]["/v1/invocations/{id}"]["get"]["responses"]["200"]
    either = resolve(invocation["content"]["application/json"]["schema"])
    assert either["anyOf"] == [
        {"$ref": "#/components/schemas/Invocation"},
        {"$ref": "#/components/schemas/AsyncInvocation"},
    ]


def test_the_document_carries_the_package_version() -> None:
    assert DOCUMENT["info"]["version"] == __version__


# -- the answers: what the handlers' views build is what the document says --

NOW = 1_700_000_000.0
CONFIG = FunctionConfig(env={"A": "1"}, secrets={"B": "b"}, layers=["lib:1"], max_concurrency=3)
PLATFORM = SimpleNamespace(
    worker=SimpleNamespace(
        instance_counts=lambda namespace, name: {"idle": 1, "busy": 0},
        namespace_usage=lambda namespace: {"instances": 1, "memory_mb": 128},
    )
)
REQUEST: Any = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(platform=PLATFORM)))
KEY = ApiKeyRecord("0123456789abcdef", "hash", "default", "developer", NOW, "ci")
CALL = AsyncCall("c1", "default", "fn", b'{"n": 1}', NOW, qualifier="live", ordering_key="k")
FAILED = Attempt(1, NOW, 12.5, "FunctionError", {"code": "FunctionError", "message": "no"})
RETRIED = (FAILED, Attempt(2, NOW + 60, 3.0, "success"))
SUCCEEDED = CallState(CALL, "succeeded", RETRIED, NOW, NOW + 61, b"[1]")
DEAD = CallState(CALL, "dead", (FAILED,), NOW, NOW + 1, error=FAILED.error, retries_used=1)
VIEWS: list[tuple[str, Any]] = [
    (
        "Function",
        functions.view(REQUEST, FunctionRecord("default", "fn", CONFIG, "ab" * 32, 10, 2, NOW, NOW)),
    ),
    ("Version", versions.version_view(VersionRecord("default", "fn", 1, CONFIG, "ab" * 32, 10, "", NOW))),
    ("Alias", versions.alias_view(AliasRecord("default", "fn", "live", 1, 2, 0.1, "", NOW))),
    ("Alias", versions.alias_view(AliasRecord("default", "fn", "live", 1, None, 0.0, "", NOW))),
    ("Layer", layers.layer_view(LayerRecord("default", "lib", 1, "ab" * 32, 10, "", NOW))),
    ("Secret", layers.secret_view(SecretRecord("default", "s", b"ciphertext", NOW))),
    ("Namespace", tenancy.namespace_view(REQUEST, NamespaceRecord("team", NOW, 4, None))),
    ("Key", tenancy.key_view(KEY)),
    ("NewKey", {**tenancy.key_view(KEY), "key": "wz_0123456789abcdef_secret"}),
    ("LogLine", invocations._line(LogLine(NOW, "default", "fn", "id", "stdout", "hi", seq=7))),
    ("AsyncInvocation", invocations.call_view(SUCCEEDED)),
    ("AsyncInvocation", invocations.call_view(DEAD)),
    ("DeadLetterPage", {"dead_letters": [invocations.call_view(DEAD)], "next": None}),
    ("Published", topics.published_view(Published("m-1", 2))),
]
STRUCTS = {cls.__name__: cls for cls in openapi.RESPONSE_STRUCTS} | {"LogLine": openapi.LogLine}


@pytest.mark.parametrize(("name", "view"), VIEWS, ids=[name for name, _ in VIEWS])
def test_every_answer_has_exactly_the_documented_fields(name: str, view: dict[str, Any]) -> None:
    # A field added to a view (or removed) must be added to its struct in gateway/openapi.py.
    struct = STRUCTS[name]
    assert set(view) == set(struct.__struct_encode_fields__)
    # and with the documented types (a JSON result is kept raw: decode it as a client would)
    msgspec.json.decode(msgspec.json.encode(view), type=struct)
    schema = DOCUMENT["components"]["schemas"][name]
    assert set(schema["properties"]) == set(view)


@pytest.mark.parametrize(
    "spec",
    [
        ObjectTrigger(
            function="fn", bucket="photos", events=["created", "deleted"], prefix="in/", suffix=".png"
        ),
        TopicTrigger(function="fn", qualifier="live", topic="orders", filter={"kind": ["a", "b"]}),
    ],
)
def test_object_and_topic_triggers_are_shown_as_documented(spec: Any) -> None:
    view = triggers.trigger_view(PLATFORM, TriggerRecord("default", "t", spec, NOW, NOW))  # type: ignore[arg-type]
    assert msgspec.convert(view, openapi.Trigger) is not None
    assert set(view) <= set(DOCUMENT["components"]["schemas"]["Trigger"]["properties"])
    assert view["type"] == spec.__struct_config__.tag
