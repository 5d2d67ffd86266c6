"""The `wuzhao` command against a real server: versions, aliases, layers, secrets,
namespaces and keys, and deploying a manifest."""

from __future__ import annotations

import hashlib
import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from tests.integration.conftest import WUZHAO, Server

SECRET_VALUE = "s3cr3t-Value-7f1d"


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return folder


def tagged(folder: Path, tag: str) -> Path:
    return write(folder, {"main.py": f"def handler(event, context):\n    return {tag!r}\n"})


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


def cli_in(server: Server, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Like server.cli, but run in ``cwd`` (where `wuzhao deploy` looks for wuzhao.yaml)."""
    env = {**server.env, "WUZHAO_URL": server.url, "WUZHAO_DATA_DIR": str(server.data_dir)}
    return subprocess.run(
        [*WUZHAO, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=90, check=False
    )


def test_publish_alias_and_invoke_a_qualifier(server: Server, tmp_path: Path) -> None:
    ok(server.cli("deploy", str(tagged(tmp_path / "one", "one")), "--name", "clitag"))
    published = ok(server.cli("publish", "clitag", "-d", "first"))
    assert published.stdout == "published clitag version 1\n"
    ok(server.cli("deploy", str(tagged(tmp_path / "two", "two")), "--name", "clitag"))
    ok(server.cli("publish", "clitag"))
    again = ok(server.cli("publish", "clitag"))
    assert "nothing published" in again.stdout

    versions = ok(server.cli("versions", "clitag")).stdout.splitlines()
    assert [row.split("\t")[:2] for row in versions[1:]] == [["1", "first"], ["2", ""]]

    aliased = ok(server.cli("alias", "set", "clitag", "prod", "1"))
    assert aliased.stdout == "alias prod of clitag -> 1\n"

    prod = ok(server.cli("invoke", "clitag", "--qualifier", "prod", "-v"))
    assert json.loads(prod.stdout) == "one"
    assert "version 1 " in prod.stderr
    latest = ok(server.cli("invoke", "clitag", "-v"))
    assert json.loads(latest.stdout) == "two"
    assert "version $LATEST " in latest.stderr
    assert json.loads(ok(server.cli("invoke", "clitag", "-q", "2")).stdout) == "two"

    in_use = server.cli("version", "rm", "clitag", "1")
    assert in_use.returncode == 1
    assert "Conflict" in in_use.stderr and "prod" in in_use.stderr
    ok(server.cli("alias", "rm", "clitag", "prod"))
    ok(server.cli("version", "rm", "clitag", "1"))
    assert ok(server.cli("alias", "ls", "clitag")).stdout == ""


def test_layer_and_secret_reach_the_function_and_the_value_is_never_shown(
    server: Server, tmp_path: Path
) -> None:
    layer = write(tmp_path / "layer", {"python/clilib.py": "ANSWER = 42\n"})
    pushed = ok(server.cli("layer", "push", "clilib", str(layer), "-d", "answers"))
    assert pushed.stdout.startswith("pushed layer clilib:1: ")
    assert "clilib:1" in ok(server.cli("layer", "ls", "clilib")).stdout

    set_secret = ok(server.cli("secret", "set", "cli-db", "--from-stdin", input=SECRET_VALUE + "\n"))
    function = write(
        tmp_path / "fn",
        {
            "main.py": """
            import hashlib, os
            import clilib

            def handler(event, context):
                print("db secret has", len(os.environ["DB"]), "characters")
                digest = hashlib.sha256(os.environ["DB"].encode()).hexdigest()
                return {"answer": clilib.ANSWER, "db_sha256": digest}
            """
        },
    )
    deployed = ok(
        server.cli(
            "deploy", str(function), "--name", "clisecret", "--layer", "clilib:1", "--secret", "DB=cli-db"
        )
    )
    invoked = ok(server.cli("invoke", "clisecret", "-v"))
    assert json.loads(invoked.stdout) == {
        "answer": 42,
        "db_sha256": hashlib.sha256(SECRET_VALUE.encode()).hexdigest(),  # exactly, newline dropped
    }

    shown = [
        set_secret,
        deployed,
        invoked,
        ok(server.cli("secret", "ls")),
        ok(server.cli("get", "clisecret")),
        ok(server.cli("ls")),
        ok(server.cli("logs", "clisecret")),
    ]
    assert "cli-db" in shown[3].stdout
    assert json.loads(shown[4].stdout)["secrets"] == {"DB": "cli-db"}
    for done in shown:
        assert SECRET_VALUE not in done.stdout + done.stderr


def test_namespace_and_key_deploy_in_that_namespace(server: Server, tmp_path: Path) -> None:
    created = ok(server.cli("ns", "create", "cliteam", "--max-instances", "4"))
    assert created.stdout == "created namespace cliteam: max instances 4, max memory no limit\n"
    assert "cliteam" in ok(server.cli("ns", "ls")).stdout
    ok(server.cli("ns", "quota", "cliteam", "--max-memory", "2048"))
    assert json.loads(ok(server.cli("ns", "get", "cliteam")).stdout)["max_instances"] == 4

    made = ok(server.cli("key", "create", "--role", "developer", "--namespace", "cliteam", "-d", "ci"))
    key = made.stdout.strip()
    assert len(made.stdout.splitlines()) == 1 and key
    assert "only time" in made.stderr and key not in made.stderr
    listed = ok(server.cli("key", "ls")).stdout
    assert "cliteam\tdeveloper\tci" in listed and key not in listed
    key_id = next(row.split("\t")[0] for row in listed.splitlines() if "\tcliteam\t" in row)

    code = str(tagged(tmp_path / "team", "team"))
    ok(server.cli("--api-key", key, "deploy", code, "--name", "cliteamfn"))
    assert json.loads(ok(server.cli("--api-key", key, "invoke", "cliteamfn")).stdout) == "team"
    assert "cliteamfn" in ok(server.cli("-n", "cliteam", "ls")).stdout  # the admin key, acting there
    assert "cliteamfn" not in server.cli("ls").stdout  # not in the admin key's own namespace
    elsewhere = server.cli("--api-key", key, "-n", "default", "ls")
    assert elsewhere.returncode == 1 and "NotFound" in elsewhere.stderr  # 404, not 403

    ok(server.cli("key", "revoke", key_id))
    revoked = server.cli("--api-key", key, "ls")
    assert revoked.returncode == 1 and "Unauthorized" in revoked.stderr


MANIFEST = """
functions:
  cli-mf-one:
    code: ./one
    memory_mb: 256
    env:
      GREETING: hi
  cli-mf-two:
    code: two
    max_concurrency: 5
    max_retries: 1
    retry_delay_s: 5
    on_failure: cli-mf-one
"""


def test_manifest_deploys_every_function_and_a_second_run_changes_nothing(
    server: Server, tmp_path: Path
) -> None:
    tagged(tmp_path / "one", "one")
    tagged(tmp_path / "two", "two")
    write(tmp_path, {"wuzhao.yaml": MANIFEST})

    first = ok(cli_in(server, tmp_path, "deploy"))
    assert [line.split(":")[0] for line in first.stdout.splitlines()] == [
        "created cli-mf-one",
        "created cli-mf-two",
    ]
    second = ok(cli_in(server, tmp_path, "deploy"))
    assert second.stdout.splitlines() == [
        "unchanged cli-mf-one: revision 1",
        "unchanged cli-mf-two: revision 1",
    ]
    assert "2 unchanged" in second.stderr
    one = json.loads(ok(server.cli("get", "cli-mf-one")).stdout)
    assert (one["revision"], one["memory_mb"], one["env"]) == (1, 256, {"GREETING": "hi"})
    two = json.loads(ok(server.cli("get", "cli-mf-two")).stdout)
    assert (two["max_retries"], two["retry_delay_s"], two["on_failure"]) == (1, 5.0, "cli-mf-one")
    assert (one["max_retries"], one["on_failure"], one["ordering_hold"]) == (2, None, False)
    assert json.loads(ok(server.cli("invoke", "cli-mf-two")).stdout) == "two"

    write(tmp_path, {"wuzhao.yaml": MANIFEST.replace("256", "512")})
    tagged(tmp_path / "two", "two again")
    third = ok(cli_in(server, tmp_path, "deploy"))
    assert third.stdout.splitlines()[0].startswith("updated cli-mf-one (memory_mb): revision 2")
    assert third.stdout.splitlines()[1].startswith("updated cli-mf-two (code): revision 2")
    assert json.loads(ok(server.cli("invoke", "cli-mf-two")).stdout) == "two again"


@pytest.mark.parametrize(
    ("change", "line", "field"),
    [
        (("256", "99999"), 4, "functions.cli-mf-one.memory_mb"),
        (("    max_concurrency: 5", "    max_concurency: 5"), 9, "functions.cli-mf-two.max_concurency"),
    ],
)
def test_a_manifest_with_an_error_names_file_line_and_field(
    server: Server, tmp_path: Path, change: tuple[str, str], line: int, field: str
) -> None:
    tagged(tmp_path / "one", "one")
    tagged(tmp_path / "two", "two")
    path = write(tmp_path, {"bad.yaml": MANIFEST.replace(*change)}) / "bad.yaml"

    failed = server.cli("deploy", "-f", str(path))

    assert failed.returncode == 1
    assert f"{path}:{line}: {field}: " in failed.stderr
    assert "nothing was deployed" in failed.stderr


def test_a_reference_the_server_refuses_is_placed_at_its_line(server: Server, tmp_path: Path) -> None:
    tagged(tmp_path / "one", "one")
    write(
        tmp_path,
        {"wuzhao.yaml": "functions:\n  cli-mf-ref:\n    code: one\n    secrets:\n      DB: no-such\n"},
    )

    failed = cli_in(server, tmp_path, "deploy")

    assert failed.returncode == 1
    assert "wuzhao.yaml:5: functions.cli-mf-ref.secrets.DB: BadRequest: " in failed.stderr
