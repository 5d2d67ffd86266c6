"""A host that cannot make sandboxes: the server refuses, unless told loudly not to isolate."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from tests.integration.conftest import WUZHAO, Server, _base_env, free_port

# `unshare --user` runs the server in a fresh user namespace with no uid map: it
# is no longer root there, exactly like a server started by an ordinary user.
UNPRIVILEGED = ["unshare", "--user"]

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")


def test_serve_refuses_to_start_without_sandboxes(tmp_path):
    result = subprocess.run(
        [*UNPRIVILEGED, *WUZHAO, "serve", "--data-dir", str(tmp_path / "data"), "--port", str(free_port())],
        env=_base_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot run sandboxes" in result.stderr
    assert "does not run as root" in result.stderr
    assert "--insecure-no-sandbox" in result.stderr
    assert not (tmp_path / "data" / "admin.key").exists()


def test_insecure_mode_runs_functions_and_warns(tmp_path, code):
    server = Server(
        data_dir=tmp_path / "data", port=free_port(), env=_base_env(), log_path=tmp_path / "server.log"
    )
    server.command_prefix = [*UNPRIVILEGED]
    server.extra_args = ["--insecure-no-sandbox"]
    server.start()
    try:
        client = server.client()
        uid_fn = {"main.py": "import os\n\ndef handler(event, context):\n    return os.getuid()\n"}
        assert client.put("/v1/functions/whoami", json={"code": code(uid_fn)}).status_code == 201
        response = client.post("/v1/functions/whoami/invoke")
        assert response.status_code == 200
        assert response.json() == 65534  # the server's own (unmapped) identity: no sandbox
        assert "RUNNING WITHOUT SANDBOXES" in server.log()
    finally:
        assert server.stop() == 0
