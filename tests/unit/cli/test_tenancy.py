import json
from collections.abc import Callable
from typing import Any

import pytest
from tests.unit.cli.conftest import Run, ok

NAMESPACE = {
    "name": "team",
    "created_at": "2024-05-01T12:00:00Z",
    "max_instances": 5,
    "max_memory_mb": None,
    "usage": {"instances": 2, "memory_mb": 256},
}
KEY = {
    "key_id": "k-123",
    "namespace": "team",
    "role": "developer",
    "description": "ci",
    "created_at": "2024-05-01T12:00:00Z",
}


def test_global_namespace_option_and_env_send_the_header(run: Callable[..., Run]) -> None:
    option = run(["-n", "team", "ls"], ok({"functions": []}))
    env = run(["ls"], ok({"functions": []}), environ={"WUZHAO_API_KEY": "k", "WUZHAO_NAMESPACE": "env-team"})
    neither = run(["ls"], ok({"functions": []}))

    assert option.request.headers["x-wuzhao-namespace"] == "team"
    assert env.request.headers["x-wuzhao-namespace"] == "env-team"
    assert "x-wuzhao-namespace" not in neither.request.headers


@pytest.mark.parametrize(
    ("options", "sent"),
    [
        ([], {"name": "team"}),
        (["--max-instances", "5", "--max-memory", "none"], {"name": "team", "max_instances": 5}),
        (["--max-memory", "1024"], {"name": "team", "max_memory_mb": 1024}),
    ],
)
def test_ns_create(run: Callable[..., Run], options: list[str], sent: dict[str, Any]) -> None:
    done = run(["ns", "create", "team", *options], ok(NAMESPACE, 201))

    assert done.result.exit_code == 0, done.result.output
    assert (done.request.method, done.request.url.path) == ("POST", "/v1/namespaces")
    assert json.loads(done.request.content) == sent
    assert done.result.stdout == "created namespace team: max instances 5, max memory no limit\n"


def test_ns_ls_and_get(run: Callable[..., Run]) -> None:
    listed = run(["ns", "ls"], ok({"namespaces": [NAMESPACE]}))
    got = run(["ns", "get", "team"], ok(NAMESPACE))

    assert [line.split("\t") for line in listed.result.stdout.splitlines()] == [
        ["NAMESPACE", "INSTANCES", "MEMORY", "CREATED"],
        ["team", "2 / 5", "256 MB / no limit", "2024-05-01 12:00:00"],
    ]
    assert json.loads(got.result.stdout) == NAMESPACE


@pytest.mark.parametrize(
    ("options", "sent"),
    [
        (["--max-memory", "2048"], {"max_instances": 5, "max_memory_mb": 2048}),  # instances kept
        (["--max-instances", "none"], {"max_instances": None, "max_memory_mb": None}),
        (["--max-instances", "0", "--max-memory", "128"], {"max_instances": 0, "max_memory_mb": 128}),
    ],
)
def test_ns_quota_changes_only_what_is_given(
    run: Callable[..., Run], options: list[str], sent: dict[str, Any]
) -> None:
    done = run(["ns", "quota", "team", *options], ok(NAMESPACE), ok({**NAMESPACE, **sent}))

    assert done.result.exit_code == 0, done.result.output
    get, put = done.server.requests
    assert (get.method, put.method, put.url.path) == ("GET", "PUT", "/v1/namespaces/team")
    assert json.loads(put.content) == sent


@pytest.mark.parametrize("options", [[], ["--max-instances", "-1"], ["--max-memory", "lots"]])
def test_ns_quota_usage_errors(run: Callable[..., Run], options: list[str]) -> None:
    done = run(["ns", "quota", "team", *options])

    assert done.result.exit_code == 2
    assert done.server.requests == []


def test_ns_rm(run: Callable[..., Run]) -> None:
    done = run(["ns", "rm", "team"], ok(status=204))

    assert (done.request.method, done.request.url.path) == ("DELETE", "/v1/namespaces/team")
    assert done.result.stderr == "deleted namespace team\n"


@pytest.mark.parametrize(
    ("args", "namespace"),
    [
        (["key", "create", "--role", "developer", "--namespace", "team", "-d", "ci"], "team"),
        (["-n", "team", "key", "create", "--role", "developer", "-d", "ci"], "team"),
        (["key", "create", "--role", "developer", "-d", "ci"], "default"),
    ],
)
def test_key_create_prints_the_key_once_on_stdout(
    run: Callable[..., Run], args: list[str], namespace: str
) -> None:
    done = run(args, ok({**KEY, "namespace": namespace, "key": "wz_the_secret"}, 201))

    assert done.result.exit_code == 0, done.result.output
    assert json.loads(done.request.content) == {
        "role": "developer",
        "namespace": namespace,
        "description": "ci",
    }
    assert done.result.stdout == "wz_the_secret\n"
    assert "wz_the_secret" not in done.result.stderr
    assert "only time" in done.result.stderr
    assert "k-123" in done.result.stderr


def test_key_create_checks_the_role(run: Callable[..., Run]) -> None:
    done = run(["key", "create", "--role", "root"])

    assert done.result.exit_code == 2
    assert "invoker" in done.result.stderr
    assert done.server.requests == []


def test_key_ls_and_revoke(run: Callable[..., Run]) -> None:
    listed = run(["key", "ls"], ok({"keys": [KEY]}))
    revoked = run(["key", "revoke", "k-123"], ok(status=204))

    assert [line.split("\t") for line in listed.result.stdout.splitlines()] == [
        ["KEY ID", "NAMESPACE", "ROLE", "DESCRIPTION", "CREATED"],
        ["k-123", "team", "developer", "ci", "2024-05-01 12:00:00"],
    ]
    assert (revoked.request.method, revoked.request.url.path) == ("DELETE", "/v1/keys/k-123")
    assert revoked.result.stderr == "revoked key k-123\n"
