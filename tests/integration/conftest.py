"""A real `wuzhao serve` process per test (or per module), on a free port, in a temp data dir."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

WUZHAO = [sys.executable, "-m", "wuzhao.cli.main"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    data_dir: Path
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    command_prefix: list[str] = field(default_factory=list)  # e.g. run it in a user namespace
    extra_args: list[str] = field(default_factory=list)
    _clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def start(self, timeout: float = 30.0) -> Server:
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the fd
            self.process = subprocess.Popen(
                [
                    *self.command_prefix,
                    *WUZHAO,
                    "serve",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    *self.extra_args,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"wuzhao serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"wuzhao serve did not become healthy in {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"wuzhao serve did not stop within {timeout}s:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)
        self._clients.append(client)
        return client

    def cli(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the `wuzhao` command against this server."""
        full_env = {**self.env, "WUZHAO_URL": self.url, "WUZHAO_DATA_DIR": str(self.data_dir), **(env or {})}
        return subprocess.run(
            [*WUZHAO, *args], env=full_env, input=input, capture_output=True, text=True, timeout=90
        )


ServerFactory = Callable[..., Server]


def _base_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WUZHAO_")}
    env.update(settings)
    return env


@pytest.fixture
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Factory: ``start_server(WUZHAO_IDLE_TIMEOUT="1")`` starts a server with those settings."""
    servers: list[Server] = []

    def start(data_dir: Path | None = None, **settings: str) -> Server:
        base = tmp_path_factory.mktemp("wuzhao")
        server = Server(
            data_dir=data_dir or base / "data",
            port=free_port(),
            env=_base_env(**settings),
            log_path=base / "server.log",
        )
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by the tests of a module (for tests that do not need their own)."""
    base = tmp_path_factory.mktemp("wuzhao")
    srv = Server(data_dir=base / "data", port=free_port(), env=_base_env(), log_path=base / "server.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def api(server: Server) -> httpx.Client:
    return server.client()


@pytest.fixture
def deploy(api: httpx.Client, code: Callable[..., str]) -> Callable[..., dict[str, Any]]:
    """Factory: deploy a function from a dict of files to the module's server."""

    def make(name: str, files: dict[str, str] | None = None, **config: Any) -> dict[str, Any]:
        response = api.put(f"/v1/functions/{name}", json={"code": code(files), **config})
        assert response.status_code in (200, 201), response.text
        return response.json()

    return make
