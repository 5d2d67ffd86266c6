import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from rich.console import Console
from tests.unit.cli.conftest import FUNCTION, INVOKE_HEADERS, Run, failed, ok

from wuzhao.cli.main import cli


def _all_commands(command: click.Command) -> list[click.Command]:
    if isinstance(command, click.Group):
        return [command, *(c for sub in command.commands.values() for c in _all_commands(sub))]
    return [command]


def test_every_option_has_help() -> None:
    commands = _all_commands(cli)
    missing = [
        f"{command.name} {param.name}"
        for command in commands
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert missing == []
    assert "serve" in cli.commands


def test_global_options_choose_server_and_key(run: Callable[..., Run]) -> None:
    done = run(
        ["--url", "http://h:1", "--api-key", "cli-key", "ls"],
        ok({"functions": []}),
        environ={"WUZHAO_URL": "http://env:2", "WUZHAO_API_KEY": "env-key"},
    )

    assert str(done.request.url) == "http://h:1/v1/functions"
    assert done.request.headers["authorization"] == "Bearer cli-key"


def test_key_comes_from_the_local_data_dir(run: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "admin.key").write_text("file-key\n")

    done = run(["--data-dir", str(tmp_path), "ls"], ok({"functions": []}), environ={})

    assert done.request.headers["authorization"] == "Bearer file-key"


def test_missing_key_is_a_clear_error(run: Callable[..., Run], tmp_path: Path) -> None:
    done = run(["ls"], environ={"WUZHAO_DATA_DIR": str(tmp_path)})

    assert done.result.exit_code == 1
    assert "WUZHAO_API_KEY" in done.result.stderr
    assert str(tmp_path / "admin.key") in done.result.stderr


def test_connection_refused_says_how_to_start_a_server(run: Callable[..., Run]) -> None:
    done = run(["ls"], httpx.ConnectError("[Errno 111] Connection refused"))

    assert done.result.exit_code == 1
    assert "http://127.0.0.1:9600" in done.result.stderr
    assert "wuzhao serve" in done.result.stderr
    assert "WUZHAO_URL" in done.result.stderr


def test_api_errors_are_one_red_line_and_exit_1(run: Callable[..., Run]) -> None:
    done = run(["get", "nope"], failed(404, "NotFound", "no function 'nope'"))

    assert done.result.exit_code == 1
    assert done.result.stdout == ""
    assert done.result.stderr == "error: NotFound: no function 'nope'\n"


def test_deploy_uploads_the_zip_and_prints_a_summary(run: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("def handler(event, context):\n    return event\n")

    done = run(
        ["deploy", str(tmp_path), "--name", "hello", "--memory", "256", "--env", "A=1=2"],
        ok(FUNCTION, 201),
    )

    assert done.result.exit_code == 0, done.result.output
    assert done.result.stdout == "created hello: revision 3, 2.0 KiB, sha256 3fa2c1d0e9b7\n"
    body = json.loads(done.request.content)
    assert (body["memory_mb"], body["env"]) == (256, {"A": "1=2"})
    assert base64.b64decode(body["code"]).startswith(b"PK")


def test_deploy_update(run: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")

    done = run(["deploy", str(tmp_path), "-n", "hello"], ok(FUNCTION, 200))

    assert done.result.stdout.startswith("updated hello: revision 3")
    assert set(json.loads(done.request.content)) == {"code"}


@pytest.mark.parametrize("bad", ["novalue", "=x"])
def test_deploy_rejects_malformed_env(run: Callable[..., Run], tmp_path: Path, bad: str) -> None:
    done = run(["deploy", str(tmp_path), "-n", "hello", "--env", bad])

    assert done.result.exit_code == 2
    assert "KEY=VALUE" in done.result.stderr
    assert done.server.requests == []


def test_deploy_sends_the_network_mode(run: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")

    done = run(["deploy", str(tmp_path), "-n", "hello", "--network", "outbound"], ok(FUNCTION, 200))

    assert done.result.exit_code == 0, done.result.output
    assert json.loads(done.request.content)["network"] == "outbound"


def test_deploy_rejects_an_unknown_network_mode(run: Callable[..., Run], tmp_path: Path) -> None:
    done = run(["deploy", str(tmp_path), "-n", "hello", "--network", "inbound"])

    assert done.result.exit_code == 2
    assert "outbound" in done.result.stderr
    assert done.server.requests == []


def test_invoke_prints_the_result_as_json(run: Callable[..., Run]) -> None:
    done = run(["invoke", "hello", "--data", '{"n": 1.10}'], ok({"ok": True}, **INVOKE_HEADERS))

    assert done.result.exit_code == 0
    assert json.loads(done.result.stdout) == {"ok": True}
    assert done.result.stderr == ""
    assert done.request.content == b'{"n": 1.10}'  # sent as typed


def test_invoke_defaults_to_an_empty_event_and_reads_stdin_with_dash(
    run: Callable[..., Run],
) -> None:
    default = run(["invoke", "hello"], ok(1, **INVOKE_HEADERS))
    piped = run(["invoke", "hello", "--data", "-"], ok(1, **INVOKE_HEADERS), stdin='[1, "a"]')

    assert default.request.content == b"{}"
    assert piped.request.content == b'[1, "a"]'


def test_invoke_verbose_reports_the_call_on_stderr(run: Callable[..., Run]) -> None:
    done = run(["invoke", "hello", "-v"], ok("hi", **INVOKE_HEADERS))

    assert done.result.stdout == '"hi"\n'
    assert done.result.stderr == "invocation 0123456789abcdef  warm start  3.2 ms\n"


def test_invoke_with_invalid_json_is_a_usage_error(run: Callable[..., Run]) -> None:
    done = run(["invoke", "hello", "--data", "{nope"])

    assert done.result.exit_code == 2
    assert "not valid JSON" in done.result.stderr
    assert done.server.requests == []


def test_failed_invocation_shows_code_message_traceback_and_id(run: Callable[..., Run]) -> None:
    error = failed(
        500,
        "FunctionError",
        "division by zero",
        error_type="ZeroDivisionError",
        traceback=[
            "Traceback (most recent call last):\n",
            '  File "/var/task/main.py", line 2, in handler\n    return 1 / 0\n',
            "ZeroDivisionError: division by zero\n",
        ],
    )
    error.headers.update({**INVOKE_HEADERS, "X-Wuzhao-Function-Error": "FunctionError"})

    done = run(["invoke", "hello"], error)

    assert done.result.exit_code == 1
    assert done.result.stdout == ""
    assert done.result.stderr.splitlines() == [
        "error: FunctionError (ZeroDivisionError): division by zero",
        "Traceback (most recent call last):",
        '  File "/var/task/main.py", line 2, in handler',
        "    return 1 / 0",
        "ZeroDivisionError: division by zero",
        "invocation 0123456789abcdef",
    ]


def test_ls_prints_tab_separated_rows_when_piped(run: Callable[..., Run]) -> None:
    long_name = {**FUNCTION, "name": "a-function-name-longer-than-any-terminal-column-" * 3}

    done = run(["ls"], ok({"functions": [FUNCTION, long_name]}))

    assert done.result.exit_code == 0
    assert [line.split("\t") for line in done.result.stdout.splitlines()] == [
        ["NAME", "RUNTIME", "MEMORY", "TIMEOUT", "IDLE/BUSY", "REVISION", "UPDATED"],
        ["hello", "python3.11", "128 MB", "30 s", "2/1", "3", "2024-05-02 08:30:15"],
        [long_name["name"], "python3.11", "128 MB", "30 s", "2/1", "3", "2024-05-02 08:30:15"],
    ]


def test_ls_shows_a_table_on_a_terminal(run: Callable[..., Run]) -> None:
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120, color_system=None)

    run(["ls"], ok({"functions": [FUNCTION]}), out=terminal)

    header, rule, row = screen.getvalue().splitlines()
    assert header.split() == ["NAME", "RUNTIME", "MEMORY", "TIMEOUT", "IDLE/BUSY", "REVISION", "UPDATED"]
    assert set(rule.strip()) == {"─"}
    assert row.split() == [
        "hello",
        "python3.11",
        "128",
        "MB",
        "30",
        "s",
        "2/1",
        "3",
        "2024-05-02",
        "08:30:15",
    ]


def test_ls_without_functions_says_so_on_stderr(run: Callable[..., Run]) -> None:
    done = run(["ls"], ok({"functions": []}))

    assert done.result.stdout == ""
    assert "no functions" in done.result.stderr


def test_get_prints_json_when_piped(run: Callable[..., Run]) -> None:
    done = run(["get", "hello"], ok(FUNCTION))

    assert json.loads(done.result.stdout) == FUNCTION


def test_get_shows_a_panel_on_a_terminal(run: Callable[..., Run]) -> None:
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120, color_system=None)

    done = run(["get", "hello"], ok(FUNCTION), out=terminal)

    assert done.result.exit_code == 0
    shown = screen.getvalue()
    assert "hello" in shown
    assert "GREETING=hi" in shown
    assert "2.0 KiB, sha256 3fa2c1d0e9b7" in shown


def test_rm(run: Callable[..., Run]) -> None:
    done = run(["rm", "hello"], ok(status=204))

    assert (done.request.method, done.request.url.path) == ("DELETE", "/v1/functions/hello")
    assert done.result.stderr == "deleted hello\n"


def log(seq: int, message: str, stream: str = "stdout") -> dict[str, Any]:
    return {
        "seq": seq,
        "timestamp": "2024-05-01T12:00:00.000Z",
        "invocation_id": "0123456789abcdef",
        "stream": stream,
        "message": message,
    }


def test_logs_prints_one_line_per_entry(run: Callable[..., Run]) -> None:
    page = {"logs": [log(1, "started\n"), log(2, "oops", "stderr")], "next": 2}

    done = run(["logs", "hello", "--since", "10m", "--limit", "2"], ok(page))

    assert dict(done.request.url.params) == {"since": "10m", "limit": "2"}
    assert done.result.stdout.splitlines() == [
        "2024-05-01T12:00:00.000Z  01234567  stdout  started",
        "2024-05-01T12:00:00.000Z  01234567  stderr  oops",
    ]


def test_logs_follow_ends_cleanly_on_ctrl_c(run: Callable[..., Run]) -> None:
    done = run(
        ["logs", "hello", "-f", "--interval", "0"],
        ok({"logs": [log(1, "a")], "next": 1}),
        ok({"logs": [log(2, "b")], "next": 2}),
        KeyboardInterrupt(),
    )

    assert done.result.exit_code == 0
    assert [line.split()[-1] for line in done.result.stdout.splitlines()] == ["a", "b"]
    assert dict(done.request.url.params) == {"after": "2", "limit": "1000"}


def test_invocation_prints_the_record_as_json(run: Callable[..., Run]) -> None:
    record = {"id": "inv-1", "status": "failed", "error": {"code": "Timeout", "message": "30 s"}}

    done = run(["invocation", "inv-1"], ok(record))

    assert done.request.url.path == "/v1/invocations/inv-1"
    assert json.loads(done.result.stdout) == record
