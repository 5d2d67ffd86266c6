"""Helpers shared by the benchmarks: a server to measure, a lean HTTP client, percentiles."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HELLO = "def handler(event, context):\n    return {'hello': event.get('name', 'world')}\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("server did not become healthy")


@contextmanager
def wuzhao_server(**settings: str) -> Iterator[tuple[int, str]]:
    """A real `wuzhao serve` in a temporary data dir; yields (port, admin key)."""
    with tempfile.TemporaryDirectory(prefix="wuzhao-bench-") as tmp:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WUZHAO_")} | settings
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wuzhao.cli.main",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                f"{tmp}/data",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_healthy(port, process)
            yield port, Path(f"{tmp}/data/admin.key").read_text().strip()
        finally:
            process.terminate()
            process.wait(60)


class Http:
    """One keep-alive connection; stdlib http.client costs less per call than most clients."""

    def __init__(self, port: int, key: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port)
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes, dict[str, str]]:
        self.conn.request(method, path, body, self.headers)
        response = self.conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())

    def timed(self, method: str, path: str, body: bytes = b"") -> float:
        started = time.perf_counter()
        status, _, _ = self.call(method, path, body)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            raise RuntimeError(f"{method} {path} answered {status}")
        return elapsed


def code_zip(source: str = HELLO) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", source)
    return base64.b64encode(buffer.getvalue()).decode()


def deploy(http: Http, name: str, source: str = HELLO, **config: object) -> None:
    status, body, _ = http.call(
        "PUT", f"/v1/functions/{name}", json.dumps({"code": code_zip(source), **config}).encode()
    )
    if status not in (200, 201):
        raise RuntimeError(f"deploy failed: {status} {body[:200]!r}")


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50": percentile(samples, 50), "p99": percentile(samples, 99), "mean": statistics.fmean(samples)}
