"""The `wuzhao` command against a real server: deploy, invoke, ls, get, logs, rm."""

from __future__ import annotations

import json

import pytest

HANDLER = """
def handler(event, context):
    print("cli says", event.get("name"))
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    return {"hello": event.get("name", "world")}
"""


@pytest.fixture(scope="module")
def function_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fn")
    (folder / "main.py").write_text(HANDLER)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "junk.pyc").write_bytes(b"ignored")
    return folder


def test_deploy_invoke_ls_get_logs_rm(server, function_dir):
    deployed = server.cli("deploy", str(function_dir), "--name", "clifn", "--memory", "256", "--env", "A=b")
    assert deployed.returncode == 0, deployed.stderr
    assert "clifn" in deployed.stdout

    invoked = server.cli("invoke", "clifn", "--data", '{"name": "cli"}')
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout) == {"hello": "cli"}

    piped = server.cli("invoke", "clifn", "--data", "-", "-v", input='{"name": "stdin"}')
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout) == {"hello": "stdin"}
    assert "warm start" in piped.stderr

    listed = server.cli("ls")
    assert listed.returncode == 0
    assert "clifn" in listed.stdout

    got = server.cli("get", "clifn")
    assert got.returncode == 0
    info = json.loads(got.stdout)
    assert info["memory_mb"] == 256
    assert info["env"] == {"A": "b"}

    logs = server.cli("logs", "clifn")
    assert logs.returncode == 0
    assert "cli says cli" in logs.stdout
    assert "cli says stdin" in logs.stdout

    removed = server.cli("rm", "clifn")
    assert removed.returncode == 0
    gone = server.cli("get", "clifn")
    assert gone.returncode == 1
    assert "NotFound" in gone.stderr or "does not exist" in gone.stderr


def test_failed_invoke_exits_non_zero_with_the_error_on_stderr(server, function_dir):
    assert server.cli("deploy", str(function_dir), "--name", "clifail").returncode == 0
    failed = server.cli("invoke", "clifail", "--data", '{"fail": true}')
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert "FunctionError" in failed.stderr
    assert "asked to fail" in failed.stderr

    bad = server.cli("invoke", "clifail", "--data", "{nope")
    assert bad.returncode == 2


def test_explicit_url_and_key_options_and_env(server, function_dir):
    assert server.cli("deploy", str(function_dir), "--name", "clikey").returncode == 0
    env = {"WUZHAO_DATA_DIR": "/nonexistent"}
    with_key = server.cli("--url", server.url, "--api-key", server.key, "invoke", "clikey", env=env)
    assert with_key.returncode == 0, with_key.stderr
    with_env = server.cli("invoke", "clikey", env={**env, "WUZHAO_API_KEY": server.key})
    assert with_env.returncode == 0, with_env.stderr
    wrong = server.cli("invoke", "clikey", env={**env, "WUZHAO_API_KEY": "wz_0_wrong"})
    assert wrong.returncode == 1
    assert "Unauthorized" in wrong.stderr or "API key" in wrong.stderr
    nothing = server.cli("invoke", "clikey", env=env)
    assert nothing.returncode == 1
    assert "WUZHAO_API_KEY" in nothing.stderr


def test_connection_refused_says_how_to_fix_it(server):
    refused = server.cli("ls", env={"WUZHAO_URL": "http://127.0.0.1:9"})
    assert refused.returncode == 1
    assert "wuzhao serve" in refused.stderr or "WUZHAO_URL" in refused.stderr
