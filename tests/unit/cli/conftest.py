"""A fake server for CLI tests: `run(args, *replies)` runs the command against it."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from wuzhao.cli.main import Session, cli

FUNCTION = {
    "name": "hello",
    "runtime": "python3.11",
    "handler": "main.handler",
    "memory_mb": 128,
    "timeout_s": 30,
    "env": {"GREETING": "hi"},
    "code_sha256": "3fa2c1d0e9b7" + "0" * 52,
    "code_size": 2048,
    "revision": 3,
    "created_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-02T08:30:15.123456+00:00",
    "instances": {"idle": 2, "busy": 1},
}
INVOKE_HEADERS = {
    "X-Wuzhao-Invocation-Id": "0123456789abcdef",
    "X-Wuzhao-Cold-Start": "false",
    "X-Wuzhao-Duration-Ms": "3.25",
}

Reply = httpx.Response | BaseException


@dataclass
class Server:
    """Answers each request with the next reply (raising it if it is an exception)."""

    replies: list[Reply]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply


def ok(body: Any = None, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def failed(status: int, code: str, message: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, **extra}})


@dataclass
class Run:
    result: Result
    server: Server

    @property
    def request(self) -> httpx.Request:
        return self.server.requests[-1]


@pytest.fixture
def run() -> Callable[..., Run]:
    def run(
        args: list[str],
        *replies: Reply,
        environ: dict[str, str] | None = None,
        stdin: str | None = None,
        out: Console | None = None,
    ) -> Run:
        server = Server(list(replies))
        session = Session(
            environ={"WUZHAO_API_KEY": "k"} if environ is None else environ,
            transport=httpx.MockTransport(server),
        )
        if out is not None:
            session.out = out
        result = CliRunner().invoke(cli, args, input=stdin, obj=session, catch_exceptions=False)
        return Run(result, server)

    return run
