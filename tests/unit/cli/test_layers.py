import base64
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

from tests.unit.cli.conftest import Run, ok

LAYER = {
    "name": "deps",
    "version": 2,
    "reference": "deps:2",
    "description": "libs",
    "code_sha256": "cd" * 32,
    "code_size": 2048,
    "created_at": "2024-05-01T12:00:00Z",
}
LAYER_ROW = ["deps:2", "2.0 KiB", "cdcdcdcdcdcd", "libs", "2024-05-01 12:00:00"]


def test_layer_push_zips_and_uploads(run: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "python").mkdir()
    (tmp_path / "python" / "lib.py").write_text("X = 1\n")

    done = run(["layer", "push", "deps", str(tmp_path), "-d", "libs"], ok(LAYER, 201))

    assert done.result.exit_code == 0, done.result.output
    assert done.result.stdout == "pushed layer deps:2: 2.0 KiB, sha256 cdcdcdcdcdcd\n"
    assert (done.request.method, done.request.url.path) == ("PUT", "/v1/layers/deps")
    body = json.loads(done.request.content)
    assert body["description"] == "libs"
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(body["code"]))) as archive:
        assert archive.namelist() == ["python/lib.py"]


def test_layer_push_needs_a_directory(run: Callable[..., Run], tmp_path: Path) -> None:
    done = run(["layer", "push", "deps", str(tmp_path / "nope")])

    assert done.result.exit_code == 2
    assert done.server.requests == []


def test_layer_ls_all_or_one(run: Callable[..., Run]) -> None:
    every = run(["layer", "ls"], ok({"layers": [LAYER]}))
    one = run(["layer", "ls", "deps"], ok({"name": "deps", "versions": [LAYER]}))

    assert every.request.url.path == "/v1/layers"
    assert one.request.url.path == "/v1/layers/deps"
    for done in (every, one):
        assert [line.split("\t") for line in done.result.stdout.splitlines()] == [
            ["LAYER", "SIZE", "SHA256", "DESCRIPTION", "CREATED"],
            LAYER_ROW,
        ]


def test_layer_ls_empty(run: Callable[..., Run]) -> None:
    done = run(["layer", "ls"], ok({"layers": []}))

    assert done.result.stdout == ""
    assert "wuzhao layer push" in done.result.stderr


def test_layer_rm(run: Callable[..., Run]) -> None:
    done = run(["layer", "rm", "deps", "2"], ok(status=204))

    assert (done.request.method, done.request.url.path) == ("DELETE", "/v1/layers/deps/versions/2")
    assert done.result.stderr == "deleted layer deps:2\n"
