import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.unit.cli.conftest import FUNCTION, Run, failed, ok

from wuzhao.packaging import zip_directory

MANIFEST = """\
functions:
  hello:
    code: ./hello
    memory_mb: 256
  world:
    code: world
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("hello", "world"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "main.py").write_text("def handler(event, context):\n    return event\n")
    (tmp_path / "wuzhao.yaml").write_text(MANIFEST)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def on_server(project: Path, name: str, **settings: Any) -> dict[str, Any]:
    """The function object the server would hold for what MANIFEST says about ``name``."""
    sha = hashlib.sha256(zip_directory(project / name)).hexdigest()
    return {
        **FUNCTION,
        "name": name,
        "memory_mb": 256 if name == "hello" else 128,
        "env": {},
        "secrets": {},
        "layers": [],
        "network": "none",
        "max_concurrency": None,
        "min_instances": 0,
        "idle_timeout_s": None,
        "max_retries": 2,
        "retry_delay_s": 60.0,
        "max_event_age_s": 21600,
        "on_success": None,
        "on_failure": None,
        "ordering_hold": False,
        "max_chain_calls": 16,
        "recursive_loop": "terminate",
        "code_sha256": sha,
        "code_size": 141,
        **settings,
    }


# -- one directory -------------------------------------------------------------


def test_deploy_sends_secrets_layers_and_limits(run: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")
    args = ["deploy", str(tmp_path), "-n", "hello", "--secret", "DB=db-pass", "--secret", "API=api-key"]
    args += ["--layer", "deps:3", "--layer", "tools:1", "--max-concurrency", "0", "--idle-timeout", "60"]

    done = run(args, ok(FUNCTION, 200))

    assert done.result.exit_code == 0, done.result.output
    body = json.loads(done.request.content)
    assert body["secrets"] == {"DB": "db-pass", "API": "api-key"}
    assert body["layers"] == ["deps:3", "tools:1"]
    assert (body["max_concurrency"], body["idle_timeout_s"]) == (0, 60)


def test_deploy_sends_the_async_settings(run: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")
    args = ["deploy", str(tmp_path), "-n", "hello", "--max-retries", "0", "--retry-delay", "0.5"]
    args += ["--max-event-age", "120", "--on-success", "audit", "--on-failure", "", "--ordering-hold"]

    done = run(args, ok(FUNCTION, 200))

    assert done.result.exit_code == 0, done.result.output
    body = json.loads(done.request.content)
    assert {key: body[key] for key in ("max_retries", "retry_delay_s", "max_event_age_s")} == {
        "max_retries": 0,
        "retry_delay_s": 0.5,
        "max_event_age_s": 120,
    }
    assert (body["on_success"], body["on_failure"], body["ordering_hold"]) == ("audit", "", True)


def test_deploy_leaves_unnamed_async_settings_alone(run: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")

    done = run(["deploy", str(tmp_path), "-n", "hello", "--no-ordering-hold"], ok(FUNCTION, 200))

    assert done.result.exit_code == 0, done.result.output
    body = json.loads(done.request.content)
    assert set(body) == {"code", "ordering_hold"} and body["ordering_hold"] is False


def test_deploy_sends_the_loop_settings(run: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")
    args = ["deploy", str(tmp_path), "-n", "hello", "--max-chain-calls", "3", "--recursive-loop", "allow"]

    done = run(args, ok(FUNCTION, 200))

    assert done.result.exit_code == 0, done.result.output
    body = json.loads(done.request.content)
    assert (body["max_chain_calls"], body["recursive_loop"]) == (3, "allow")


@pytest.mark.parametrize(
    ("option", "bad"),
    [
        ("--max-retries", "11"),
        ("--retry-delay", "0.01"),
        ("--max-event-age", "0"),
        ("--max-event-age", "1h"),
        ("--max-chain-calls", "0"),
        ("--max-chain-calls", "1001"),
        ("--recursive-loop", "forever"),
    ],
)
def test_deploy_checks_the_async_bounds(
    run: Callable[..., Run], tmp_path: Path, option: str, bad: str
) -> None:
    done = run(["deploy", str(tmp_path), "-n", "hello", option, bad])

    assert done.result.exit_code == 2
    assert option in done.result.stderr
    assert done.server.requests == []


@pytest.mark.parametrize(
    ("option", "bad", "expected"),
    [
        ("--secret", "DB", "ENV=SECRET_NAME"),
        ("--layer", "deps", "NAME:VERSION"),
        ("--layer", "deps:x", "NAME:VERSION"),
    ],
)
def test_deploy_rejects_malformed_references(
    run: Callable[..., Run], tmp_path: Path, option: str, bad: str, expected: str
) -> None:
    done = run(["deploy", str(tmp_path), "-n", "hello", option, bad])

    assert done.result.exit_code == 2
    assert expected in done.result.stderr
    assert done.server.requests == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["deploy", "."], "both DIR and --name"),
        (["deploy", "-n", "hello"], "both DIR and --name"),
        (["deploy", ".", "-n", "hello", "-f", "x.yaml"], "leave out DIR and --name"),
        (["deploy", "--memory", "256"], "--memory: only with DIR and --name"),
        (["deploy", "--no-ordering-hold"], "--ordering-hold: only with DIR and --name"),
    ],
)
def test_deploy_usage_errors(run: Callable[..., Run], project: Path, args: list[str], expected: str) -> None:
    done = run(args)

    assert done.result.exit_code == 2
    assert expected in done.result.stderr
    assert done.server.requests == []


def test_deploy_without_anything_and_no_manifest(
    run: Callable[..., Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    done = run(["deploy"])

    assert done.result.exit_code == 2
    assert "no wuzhao.yaml here" in done.result.stderr


# -- a manifest ----------------------------------------------------------------


def test_manifest_deploy_creates_every_function(run: Callable[..., Run], project: Path) -> None:
    done = run(
        ["deploy"],
        ok({"functions": []}),
        ok({**FUNCTION, "name": "hello", "revision": 1}, 201),
        ok({**FUNCTION, "name": "world", "revision": 1}, 201),
    )

    assert done.result.exit_code == 0, done.result.output
    assert done.result.stdout.splitlines() == [
        "created hello: revision 1, 2.0 KiB, sha256 3fa2c1d0e9b7",
        "created world: revision 1, 2.0 KiB, sha256 3fa2c1d0e9b7",
    ]
    assert done.result.stderr == "2 created, 0 updated, 0 unchanged\n"
    _, hello, world = done.server.requests
    assert (hello.method, hello.url.path) == ("PUT", "/v1/functions/hello")
    assert json.loads(hello.content)["memory_mb"] == 256
    assert "code" in json.loads(world.content)


def test_manifest_deploy_of_what_is_deployed_sends_nothing(run: Callable[..., Run], project: Path) -> None:
    functions = [on_server(project, "hello"), on_server(project, "world")]

    done = run(["deploy"], ok({"functions": functions}))

    assert done.result.exit_code == 0, done.result.output
    assert done.result.stdout.splitlines() == ["unchanged hello: revision 3", "unchanged world: revision 3"]
    assert done.result.stderr == "0 created, 0 updated, 2 unchanged\n"
    assert len(done.server.requests) == 1


def test_manifest_deploy_says_what_changed(run: Callable[..., Run], project: Path) -> None:
    functions = [on_server(project, "hello", memory_mb=128, env={"A": "1"}), on_server(project, "world")]

    done = run(["deploy"], ok({"functions": functions}), ok({**FUNCTION, "name": "hello", "revision": 4}))

    assert done.result.stdout.splitlines()[0] == (
        "updated hello (memory_mb, env): revision 4, 2.0 KiB, sha256 3fa2c1d0e9b7"
    )
    assert "code" not in json.loads(done.server.requests[1].content)  # the code did not change


def test_manifest_deploy_sends_the_async_settings(run: Callable[..., Run], project: Path) -> None:
    (project / "wuzhao.yaml").write_text(MANIFEST + "    max_retries: 0\n    on_failure: hello\n")
    functions = [on_server(project, "hello"), on_server(project, "world")]

    done = run(["deploy"], ok({"functions": functions}), ok({**FUNCTION, "name": "world", "revision": 4}))

    assert done.result.exit_code == 0, done.result.output
    assert done.result.stdout.splitlines() == [
        "unchanged hello: revision 3",
        "updated world (max_retries, on_failure): revision 4, 2.0 KiB, sha256 3fa2c1d0e9b7",
    ]
    body = json.loads(done.request.content)
    assert (body["max_retries"], body["on_failure"], body["on_success"]) == (0, "hello", "")


def test_manifest_dry_run(run: Callable[..., Run], project: Path) -> None:
    done = run(["deploy", "--dry-run"], ok({"functions": [on_server(project, "hello", memory_mb=512)]}))

    assert done.result.stdout.splitlines() == ["would update hello (memory_mb)", "would create world"]
    assert "dry run" in done.result.stderr
    assert len(done.server.requests) == 1


def test_manifest_from_another_file(run: Callable[..., Run], project: Path) -> None:
    (project / "sub").mkdir()
    (project / "sub" / "one.yaml").write_text("functions:\n  hello:\n    code: ../hello\n")

    done = run(["deploy", "-f", "sub/one.yaml", "--dry-run"], ok({"functions": []}))

    assert done.result.exit_code == 0, done.result.output
    assert done.result.stdout == "would create hello\n"


def test_manifest_problems_name_file_line_and_field(run: Callable[..., Run], project: Path) -> None:
    (project / "wuzhao.yaml").write_text(MANIFEST.replace("256", "99999") + "triggers: []\n")

    done = run(["deploy"])

    assert done.result.exit_code == 1
    assert done.result.stdout == ""
    assert done.result.stderr.splitlines() == [
        "wuzhao.yaml:4: functions.hello.memory_mb: must be an integer from 128 to 10240",
        "wuzhao.yaml:7: triggers: must be a mapping of trigger names to settings",
        "error: wuzhao.yaml cannot be deployed as it is; nothing was deployed",
    ]
    assert done.server.requests == []


def test_manifest_refused_by_the_server_names_the_function(run: Callable[..., Run], project: Path) -> None:
    refused = failed(400, "BadRequest", "memory_mb is over the namespace's quota", field="memory_mb")

    done = run(
        ["deploy"],
        ok({"functions": []}),
        refused,
    )

    assert done.result.exit_code == 1
    assert done.result.stderr.splitlines() == [
        "wuzhao.yaml:4: functions.hello.memory_mb: BadRequest: memory_mb is over the namespace's quota",
        "error: wuzhao.yaml cannot be deployed as it is; nothing was deployed",
    ]
