"""Schemathesis against a real server, from the OpenAPI document the server serves.

The run is schemathesis's own CLI (``schemathesis run``) in a subprocess: it loads
``GET /v1/openapi.json`` with the admin key, then runs every phase (examples,
coverage, fuzzing, stateful) over every operation, bounded by a number of examples
per operation and a deadline. Its pytest plugin is not used: under pytest 9 its lazy
fixture loader fails (it sets ``Node._nodeid``, which pytest 9 no longer has), and
the document is only known once the server runs. A subprocess also keeps its
warnings out of this suite, where warnings are errors.

Before the run the test creates one of everything (a function with a version, an
alias, an invocation and a dead letter, a layer, a secret, a namespace, a key, a bucket with an
object, a trigger, a topic with a subscriber), and the config file has schemathesis use those
names in most generated paths: random names alone only ever reach the 404 of each route.

The checks: no 5xx, and the answers (statuses, content types, headers, bodies)
match the document; invalid requests are refused; an undeclared method gets 405
with an ``Allow`` header. ``positive_data_acceptance`` is left out: the request
schemas are the msgspec structs, and the server checks more than they say (name
patterns, known roles, existing versions), so a schema-valid body can rightly
get 400.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import zip_files
from tests.integration.conftest import Server

from wuzhao.control.keys import key_id_of
from wuzhao.gateway import openapi
from wuzhao.gateway.app import ROUTES

HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
MAX_EXAMPLES = 25  # per operation and phase: the run takes about 15 s on 2 cores
RUN_DEADLINE_S = 60  # a run that hangs or crawls fails the test (before pytest-timeout's 120 s)
SEED = 20261126  # the same cases on every run: a failure reproduces, CI does not flake
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
]
ECHO = {"main.py": "def handler(event, context):\n    return event\n"}  # fails on no event

# Numbers written in ways a parser can trip on: past SQLite's 64 bits, and a digit that
# str.isdigit() accepts but int() refuses. Mixed into the numeric parameters' values.
AWKWARD_NUMBERS: list[str | int] = [2**64, "18446744073709551616", "\u00b2"]

# For each group of operations: its parameters and the seeded values they take (in 70 % of cases).
# PUT and DELETE /v1/functions/{name} keep random names: they would change or delete the seed
# (a random handler would make its invocations fail with InitError, a documented 500).
SEEDED = [
    (
        {"include-path-regex": r"^/v1/functions/\{name\}/"},
        {
            "path.name": "function",
            "path.version": "version",
            "path.alias": "alias",
            "path.id": "dead_letter",
            "query.qualifier": "qualifier",
        },
    ),
    ({"include-path": "/v1/functions/{name}", "include-method": "GET"}, {"path.name": "function"}),
    ({"include-path-regex": r"^/v1/layers/\{name\}"}, {"path.name": "layer", "path.version": "version"}),
    ({"include-path-regex": r"^/v1/secrets/\{name\}"}, {"path.name": "secret"}),
    ({"include-path-regex": r"^/v1/namespaces/\{name\}"}, {"path.name": "namespace"}),
    ({"include-path": "/v1/invocations/{id}"}, {"path.id": "invocation"}),
    ({"include-path": "/v1/keys/{key_id}"}, {"path.key_id": "key"}),
    ({"include-path-regex": r"^/v1/buckets/\{bucket\}"}, {"path.bucket": "bucket", "path.key": "object"}),
    ({"include-path-regex": r"^/v1/triggers/\{name\}"}, {"path.name": "trigger"}),
    ({"include-path-regex": r"^/v1/topics/\{topic\}"}, {"path.topic": "topic"}),
]


def seed(server: Server, code: Callable[..., str]) -> dict[str, list[str | int]]:
    """One of each resource; the values schemathesis is told to use."""
    api = server.client()

    def ok(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code in (200, 201), response.text
        return response.json()  # type: ignore[no-any-return]

    ok(api.put("/v1/functions/seed", json={"code": code(ECHO)}))
    invoked = api.post("/v1/functions/seed/invoke", json={"hello": "world"})
    assert invoked.status_code == 200, invoked.text
    ok(api.post("/v1/functions/seed/versions", json={}))
    ok(api.put("/v1/functions/seed/aliases/live", json={"version": 1}))
    ok(api.put("/v1/layers/seedlayer", json={"code": code(ECHO)}))
    ok(api.put("/v1/secrets/seed-secret", json={"value": "s3cr3t"}))
    ok(api.post("/v1/namespaces", json={"name": "seed-ns"}))
    key = ok(api.post("/v1/keys", json={"role": "invoker"}))
    ok(api.put("/v1/triggers/seed-trigger", json={"function": "seed", "type": "http", "path": "/seed"}))
    ok(api.put("/v1/triggers/seed-topic", json={"function": "seed", "type": "topic", "topic": "seed-topic"}))
    ok(api.put("/v1/buckets/seed-bucket"))
    ok(api.put("/v1/buckets/seed-bucket/objects/dir/seed.txt", content=b"seed"))
    dead_letter = seed_dead_letter(api, ok)
    return {
        "function": ["seed"],
        "version": [1, *AWKWARD_NUMBERS],
        "qualifier": ["live", "1", "$LATEST", *AWKWARD_NUMBERS],
        "alias": ["live"],
        "layer": ["seedlayer"],
        "secret": ["seed-secret"],
        "namespace": ["seed-ns"],
        "invocation": [invoked.headers["X-Wuzhao-Invocation-Id"], dead_letter],
        "dead_letter": [dead_letter],
        "key": [str(key["key_id"])],
        "trigger": ["seed-trigger"],
        "topic": ["seed-topic"],
        "bucket": ["seed-bucket"],
        "object": ["dir/seed.txt"],
    }


def seed_dead_letter(api: httpx.Client, ok: Callable[[httpx.Response], dict[str, Any]]) -> str:
    """An asynchronous call of the seed function that went dead: the function disabled for a
    moment, its event too old after one throttled try."""
    ok(api.put("/v1/functions/seed", json={"max_concurrency": 0, "max_event_age_s": 1}))
    accepted = api.post(
        "/v1/functions/seed/invoke", json={"dead": 1}, headers={"X-Wuzhao-Invocation-Type": "Event"}
    )
    assert accepted.status_code == 202, accepted.text
    call_id = str(accepted.json()["invocation_id"])
    deadline = time.monotonic() + 10
    while api.get(f"/v1/invocations/{call_id}").json()["status"] != "dead":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ok(api.put("/v1/functions/seed", json={"max_concurrency": 100, "max_event_age_s": 21600}))
    return call_id


def config_file(values: dict[str, list[str | int]]) -> str:
    """schemathesis.toml (TOML strings written as JSON strings: the same escapes)."""
    lines = ["[dictionaries]"]
    lines += [f"{name} = {{ values = {json.dumps(entries)} }}" for name, entries in values.items()]
    for selector, parameters in SEEDED:
        lines += ["", "[[operations]]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in selector.items()]
        bindings = ", ".join(
            f'"{parameter}" = {{ dictionary = "{dictionary}", probability = 0.7 }}'
            for parameter, dictionary in parameters.items()
        )
        lines.append(f"parameters = {{ {bindings} }}")
    return "\n".join(lines) + "\n"


def test_the_served_document_survives_schemathesis(
    server: Server, code: Callable[..., str], tmp_path: Path
) -> None:
    key_id = key_id_of(server.key)
    assert key_id is not None
    config = tmp_path / "schemathesis.toml"
    config.write_text(config_file(seed(server, code)))
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(HOOKS),
        "WUZHAO_SCHEMATHESIS_KEPT_KEY_ID": key_id,
        "NO_COLOR": "1",
    }
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{server.url}/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {server.key}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--request-timeout",
        "30",
        "--no-color",
    ]
    started = time.monotonic()
    run = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_DEADLINE_S
    )
    elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    assert run.returncode == 0, (
        f"schemathesis failed after {elapsed:.1f}s:\n{output}\n\nserver log:\n{server.log()}"
    )
    assert "Authentication failed" not in output, output  # the run kept its key to the end


def test_the_document_is_served_to_any_key_and_only_with_one(server: Server) -> None:
    admin = server.client()
    invoker = server.client(admin.post("/v1/keys", json={"role": "invoker"}).json()["key"])
    for client in (admin, invoker):
        response = client.get("/v1/openapi.json")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == openapi.build_document(ROUTES)
    anonymous = httpx.get(f"{server.url}/v1/openapi.json")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/functions/awkward/versions/{}"),
        ("DELETE", "/v1/functions/awkward/versions/{}"),
        ("DELETE", "/v1/layers/awkward/versions/{}"),
    ],
)
@pytest.mark.parametrize("number", ["\u00b2", "\u0661", "18446744073709551616", "9223372036854775808"])
def test_awkward_version_numbers_are_refused_not_a_crash(
    server: Server, deploy_echo: None, method: str, path: str, number: str
) -> None:
    # Found with schemathesis: "²" passed str.isdigit() and then failed int(), and a number past
    # SQLite's 64 bits overflowed in the layer store; both were 500s.
    response = server.client().request(method, path.format(number))
    assert response.status_code in (400, 404), response.text


@pytest.fixture(scope="module")
def deploy_echo(server: Server) -> None:
    code = base64.b64encode(zip_files(ECHO)).decode()
    api = server.client()
    assert api.put("/v1/functions/awkward", json={"code": code}).status_code in (200, 201)
    assert api.put("/v1/layers/awkward", json={"code": code}).status_code == 201


def test_an_undeclared_method_gets_405_with_every_allowed_method(server: Server) -> None:
    # Found with schemathesis: the 405 had no Allow header (RFC 9110 requires one); and the path
    # has one route per method, so Starlette's own header would name only the first route's.
    response = server.client().patch("/v1/functions/any")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, HEAD, PUT"
    assert response.json()["error"]["code"] == "MethodNotAllowed"
