"""The Python SDK: a synchronous client for the wuzhao HTTP API.

Every error the server reports is raised as its typed class from
:mod:`wuzhao.errors` (``except NotFound``); network failures are httpx's own
(``httpx.ConnectError`` when no server listens). Where the client talks to, and
with which key, is resolved from explicit arguments first, then from the
environment mapping it is given (``os.environ`` by default, so tests can pass a
dict), then from the local server's data directory:

=========  =========================  ==================================================
setting    variable                   fallback
=========  =========================  ==================================================
url        ``WUZHAO_URL``             ``http://127.0.0.1:9600``
api key    ``WUZHAO_API_KEY``         ``<data dir>/admin.key`` (the key on one line)
data dir   ``WUZHAO_DATA_DIR``        ``~/.local/share/wuzhao``
=========  =========================  ==================================================

The key is looked up on the first call that needs it, so :meth:`Client.health`
works without one.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from wuzhao import errors
from wuzhao.config import default_data_dir
from wuzhao.packaging import zip_directory

DEFAULT_URL = "http://127.0.0.1:9600"
DEFAULT_TIMEOUT = 30.0  # seconds, for everything but the wait for an invocation's answer
KEY_FILE = "admin.key"

# Headers the gateway sets on every invoke answer, success or not.
INVOCATION_ID_HEADER = "X-Wuzhao-Invocation-Id"
COLD_START_HEADER = "X-Wuzhao-Cold-Start"  # "true" | "false"
DURATION_HEADER = "X-Wuzhao-Duration-Ms"  # float

LOG_PAGE_DEFAULT = 100  # the server's default `limit`
LOG_PAGE_MAX = 1000  # the server's largest `limit`


def resolve_url(url: str | None, environ: Mapping[str, str]) -> str:
    """The API address: ``url``, else ``WUZHAO_URL``, else :data:`DEFAULT_URL`."""
    return (url or environ.get("WUZHAO_URL") or DEFAULT_URL).rstrip("/")


def resolve_data_dir(data_dir: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    """The local server's data directory: ``data_dir``, ``WUZHAO_DATA_DIR``, or the default."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if environ.get("WUZHAO_DATA_DIR"):
        return Path(environ["WUZHAO_DATA_DIR"]).expanduser()
    return default_data_dir(environ)  # the server's own default, so the two cannot drift


def resolve_api_key(
    api_key: str | None,
    environ: Mapping[str, str],
    data_dir: str | os.PathLike[str] | None = None,
) -> str:
    """The API key: ``api_key``, else ``WUZHAO_API_KEY``, else the local server's key file.

    Raises :class:`~wuzhao.errors.Unauthorized` naming everything it tried.
    """
    if api_key:
        return api_key
    if environ.get("WUZHAO_API_KEY"):
        return environ["WUZHAO_API_KEY"]
    key_file = resolve_data_dir(data_dir, environ) / KEY_FILE
    try:
        key = key_file.read_text().strip()
    except FileNotFoundError:
        problem = "does not exist"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or exc})"
    else:
        if key:
            return key
        problem = "is empty"
    raise errors.Unauthorized(
        "no API key: none was passed (api_key / --api-key), WUZHAO_API_KEY is not set, "
        f"and the local server's key file {key_file} {problem}. Set WUZHAO_API_KEY, or point "
        "WUZHAO_DATA_DIR / --data-dir at the data directory of a running `wuzhao serve`."
    )


@dataclass(frozen=True)
class InvokeResult:
    value: Any  # the handler's return value, decoded from JSON
    invocation_id: str  # look the call up later with Client.get_invocation
    cold_start: bool  # True when a new instance had to start for this call
    duration_ms: float  # time spent in the instance, as measured by the server


class Deployment(dict[str, Any]):
    """The function object a deploy returned, plus whether the deploy created it.

    It is the server's JSON object unchanged (``==`` a plain dict of the same
    items); :attr:`created` is True for a new function (201), False for an
    update of an existing one (200).
    """

    def __init__(self, function: Mapping[str, Any], *, created: bool) -> None:
        super().__init__(function)
        self.created = created


class Client:
    """A connection to one wuzhao server. Use it as a context manager, or call :meth:`close`.

    ``transport`` replaces httpx's network transport (``httpx.MockTransport``
    in tests). ``timeout`` bounds every request except the wait for an
    invocation's answer, which has no read timeout: the server enforces the
    function's own ``timeout_s`` (up to 900 s) and answers 504 when it passes.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self.url = resolve_url(url, self._environ)
        self._explicit_key = api_key
        self._data_dir = data_dir
        self._api_key: str | None = None
        self._invoke_timeout = httpx.Timeout(timeout, read=None)
        self._http = httpx.Client(base_url=self.url, transport=transport, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- functions ---------------------------------------------------------

    def deploy(
        self,
        name: str,
        code_dir: str | os.PathLike[str] | None = None,
        *,
        code_zip: bytes | None = None,
        handler: str | None = None,
        memory_mb: int | None = None,
        timeout_s: int | None = None,
        env: Mapping[str, str] | None = None,
        runtime: str | None = None,
        network: str | None = None,
    ) -> Deployment:
        """Create or update function ``name``; return its function object.

        Code comes from ``code_dir`` (zipped with :func:`wuzhao.packaging.zip_directory`)
        or ``code_zip``; without either only the settings change (code is needed
        on create). Settings left as None keep their current (or default) value.
        Deploying the same code and settings again changes nothing.
        """
        if code_dir is not None and code_zip is not None:
            raise TypeError("pass code_dir or code_zip, not both")
        if code_dir is not None:
            code_zip = zip_directory(code_dir)
        fields: dict[str, Any] = {
            "runtime": runtime,
            "handler": handler,
            "memory_mb": memory_mb,
            "timeout_s": timeout_s,
            "env": dict(env) if env is not None else None,
            "network": network,
            "code": base64.b64encode(code_zip).decode("ascii") if code_zip is not None else None,
        }
        body = {key: value for key, value in fields.items() if value is not None}
        response = self._request("PUT", _function_path(name), json=body)
        return Deployment(response.json(), created=response.status_code == 201)

    def list_functions(self) -> list[dict[str, Any]]:
        """All functions, as function objects."""
        functions: list[dict[str, Any]] = self._request("GET", "/v1/functions").json()["functions"]
        return functions

    def get_function(self, name: str) -> dict[str, Any]:
        """The function object of ``name``; raises NotFound when there is none."""
        function: dict[str, Any] = self._request("GET", _function_path(name)).json()
        return function

    def delete_function(self, name: str) -> None:
        """Delete ``name``, its code and its instances; raises NotFound when there is none."""
        self._request("DELETE", _function_path(name))

    # -- invocations -------------------------------------------------------

    def invoke(self, name: str, event: Any = None, *, payload: bytes | None = None) -> InvokeResult:
        """Call ``name`` with ``event`` (any JSON value; None sends ``{}``) and wait for it.

        ``payload`` sends JSON bytes as they are instead (e.g. a literal ``null``).
        A failed call raises its typed error (FunctionError, Timeout, Throttled,
        ...) with an ``invocation_id`` attribute (None when the server assigned none).
        """
        if payload is not None and event is not None:
            raise TypeError("pass event or payload, not both")
        if payload is None:
            payload = json.dumps({} if event is None else event).encode()
        response = self._send(
            "POST",
            f"{_function_path(name)}/invoke",
            content=payload,
            headers={"Content-Type": "application/json"},
            timeout=self._invoke_timeout,
        )
        invocation_id = response.headers.get(INVOCATION_ID_HEADER)
        if response.is_error:
            error = _error_from(response)
            # errors.WuzhaoError declares no such attribute; callers read it with getattr.
            error.invocation_id = invocation_id
            raise error
        return InvokeResult(
            value=response.json(),
            invocation_id=invocation_id or "",
            cold_start=response.headers.get(COLD_START_HEADER, "").lower() == "true",
            duration_ms=float(response.headers.get(DURATION_HEADER) or 0.0),
        )

    def get_invocation(self, invocation_id: str) -> dict[str, Any]:
        """The record of one invocation: status, timing, error and the tail of its logs."""
        path = f"/v1/invocations/{quote(invocation_id, safe='')}"
        record: dict[str, Any] = self._request("GET", path).json()
        return record

    # -- logs --------------------------------------------------------------

    def logs(
        self,
        name: str,
        *,
        since: str | float | datetime | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """One page of ``name``'s log lines: ``{"logs": [...], "next": seq | None}``.

        Without ``since``/``after`` the most recent ``limit`` lines; with them the
        first ``limit`` lines after that point. ``since`` is a datetime, unix
        seconds, an ISO 8601 string or a duration such as ``"10m"``; ``after`` is
        a ``next`` from an earlier page (exclusive).
        """
        if isinstance(since, datetime):
            since = since.isoformat()
        params = {"since": since, "after": after, "limit": limit}
        response = self._request(
            "GET",
            f"{_function_path(name)}/logs",
            params={key: str(value) for key, value in params.items() if value is not None},
        )
        page: dict[str, Any] = response.json()
        return page

    def follow_logs(
        self,
        name: str,
        *,
        since: str | float | datetime | None = None,
        limit: int | None = None,
        poll_interval: float = 1.0,
    ) -> Iterator[dict[str, Any]]:
        """Yield ``name``'s log lines as they arrive, forever (like ``tail -f``).

        Starts like :meth:`logs` with ``since`` and ``limit``, then polls every
        ``poll_interval`` seconds for the lines after the last one seen.
        """
        cursor: int | None = None
        while True:
            if cursor is None:
                # Nothing seen yet, so there is no cursor: ask the way we started.
                page = self.logs(name, since=since, limit=limit)
                asked = limit or LOG_PAGE_DEFAULT
            else:
                page = self.logs(name, after=cursor, limit=LOG_PAGE_MAX)
                asked = LOG_PAGE_MAX
            yield from page["logs"]
            if page["next"] is not None:
                cursor = page["next"]
            if len(page["logs"]) < asked:  # a full page means more are waiting: no pause
                time.sleep(poll_interval)

    # -- server ------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The server's health (``{"status": "ok"}``); needs no API key."""
        response = self._send("GET", "/healthz", authenticated=False)
        if response.is_error:
            raise _error_from(response)
        health: dict[str, Any] = response.json()
        return health

    # -- plumbing ----------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._send(method, path, **kwargs)
        if response.is_error:
            raise _error_from(response)
        return response

    def _send(
        self,
        method: str,
        path: str,
        *,
        authenticated: bool = True,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = dict(headers or {})
        if authenticated:
            headers["Authorization"] = f"Bearer {self._key()}"
        return self._http.request(method, path, headers=headers, **kwargs)

    def _key(self) -> str:
        if self._api_key is None:
            self._api_key = resolve_api_key(self._explicit_key, self._environ, self._data_dir)
        return self._api_key


def _function_path(name: str) -> str:
    # Quote everything, so a name like "../x" cannot reach another route.
    return f"/v1/functions/{quote(name, safe='')}"


def _error_from(response: httpx.Response) -> errors.WuzhaoError:
    try:
        body: Any = response.json()
    except ValueError:  # not JSON: a proxy's error page, say
        body = response.text
    return errors.error_from_body(response.status_code, body)
