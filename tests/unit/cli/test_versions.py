import io
import json
from collections.abc import Callable

import pytest
from rich.console import Console
from tests.unit.cli.conftest import INVOKE_HEADERS, Run, failed, ok

VERSION = {
    "function": "hello",
    "version": 2,
    "description": "second",
    "runtime": "python3.11",
    "handler": "main.handler",
    "memory_mb": 256,
    "timeout_s": 30,
    "network": "none",
    "code_sha256": "9b1e0c44d2aa" + "0" * 52,
    "code_size": 100,
    "created_at": "2024-05-01T12:00:00Z",
}
ALIAS = {
    "function": "hello",
    "name": "prod",
    "version": 2,
    "routing": {"3": 0.1},
    "description": "live",
    "updated_at": "2024-05-01T12:00:00Z",
}


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (201, "published hello version 2\n"),
        (200, "hello has not changed since version 2; nothing published\n"),
    ],
)
def test_publish(run: Callable[..., Run], status: int, said: str) -> None:
    done = run(["publish", "hello", "-d", "second"], ok(VERSION, status))

    assert done.result.exit_code == 0
    assert done.result.stdout == said
    assert (done.request.method, done.request.url.path) == ("POST", "/v1/functions/hello/versions")
    assert json.loads(done.request.content) == {"description": "second"}


def test_versions_lists_rows_when_piped(run: Callable[..., Run]) -> None:
    done = run(["versions", "hello"], ok({"versions": [VERSION]}))

    assert [line.split("\t") for line in done.result.stdout.splitlines()] == [
        ["VERSION", "DESCRIPTION", "HANDLER", "MEMORY", "CODE", "CREATED"],
        ["2", "second", "main.handler", "256 MB", "9b1e0c44d2aa", "2024-05-01 12:00:00"],
    ]


def test_versions_on_a_terminal_is_a_table(run: Callable[..., Run]) -> None:
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120, color_system=None)

    run(["version", "ls", "hello"], ok({"versions": [VERSION]}), out=terminal)

    header, _, row = screen.getvalue().splitlines()
    assert header.split() == ["VERSION", "DESCRIPTION", "HANDLER", "MEMORY", "CODE", "CREATED"]
    assert row.split()[:3] == ["2", "second", "main.handler"]


def test_no_versions_says_how_to_publish(run: Callable[..., Run]) -> None:
    done = run(["versions", "hello"], ok({"versions": []}))

    assert done.result.stdout == ""
    assert "wuzhao publish hello" in done.result.stderr


def test_version_get_and_rm(run: Callable[..., Run]) -> None:
    got = run(["version", "get", "hello", "2"], ok(VERSION))
    removed = run(["version", "rm", "hello", "2"], ok(status=204))

    assert json.loads(got.result.stdout) == VERSION
    assert got.request.url.path == "/v1/functions/hello/versions/2"
    assert (removed.request.method, removed.request.url.path) == ("DELETE", "/v1/functions/hello/versions/2")
    assert removed.result.stderr == "deleted version 2 of hello\n"


def test_version_rm_in_use_is_a_conflict(run: Callable[..., Run]) -> None:
    done = run(["version", "rm", "hello", "2"], failed(409, "Conflict", "version 2 is in use by alias prod"))

    assert done.result.exit_code == 1
    assert done.result.stderr == "error: Conflict: version 2 is in use by alias prod\n"


@pytest.mark.parametrize("bad", ["0", "x"])
def test_version_numbers_are_checked_before_sending(run: Callable[..., Run], bad: str) -> None:
    done = run(["version", "rm", "hello", bad])

    assert done.result.exit_code == 2
    assert done.server.requests == []


@pytest.mark.parametrize(
    ("routes", "sent"),
    [([], None), (["--route", "3=0.1"], {"3": 0.1}), (["--route", "3=25%"], {"3": 0.25})],
)
def test_alias_set(run: Callable[..., Run], routes: list[str], sent: dict[str, float] | None) -> None:
    done = run(["alias", "set", "hello", "prod", "2", *routes, "-d", "live"], ok(ALIAS, 201))

    assert done.result.exit_code == 0, done.result.output
    assert (done.request.method, done.request.url.path) == ("PUT", "/v1/functions/hello/aliases/prod")
    body = json.loads(done.request.content)
    assert body.pop("routing", None) == sent
    assert body == {"version": 2, "description": "live"}
    assert done.result.stdout == "alias prod of hello -> 2 (90%), 3 (10%)\n"


@pytest.mark.parametrize("bad", ["3", "x=0.1", "3=1", "3=0", "3=abc", "3=150%"])
def test_alias_set_rejects_a_bad_route(run: Callable[..., Run], bad: str) -> None:
    done = run(["alias", "set", "hello", "prod", "2", "--route", bad])

    assert done.result.exit_code == 2
    assert "VERSION=WEIGHT" in done.result.stderr
    assert done.server.requests == []


def test_alias_ls_get_rm(run: Callable[..., Run]) -> None:
    listed = run(["alias", "ls", "hello"], ok({"aliases": [ALIAS]}))
    got = run(["alias", "get", "hello", "prod"], ok(ALIAS))
    removed = run(["alias", "rm", "hello", "prod"], ok(status=204))

    assert listed.result.stdout.splitlines()[1].split("\t") == [
        "prod",
        "2 (90%), 3 (10%)",
        "live",
        "2024-05-01 12:00:00",
    ]
    assert json.loads(got.result.stdout) == ALIAS
    assert (removed.request.method, removed.request.url.path) == (
        "DELETE",
        "/v1/functions/hello/aliases/prod",
    )


def test_invoke_a_qualifier_and_show_the_version_that_ran(run: Callable[..., Run]) -> None:
    headers = {**INVOKE_HEADERS, "X-Wuzhao-Executed-Version": "3"}

    done = run(["invoke", "hello", "--qualifier", "prod", "-v"], ok("hi", **headers))

    assert dict(done.request.url.params) == {"qualifier": "prod"}
    assert done.result.stdout == '"hi"\n'
    assert done.result.stderr == "invocation 0123456789abcdef  version 3  warm start  3.2 ms\n"
