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
namespace  ``WUZHAO_NAMESPACE``       the key's own namespace
=========  =========================  ==================================================

The key is looked up on the first call that needs it, so :meth:`Client.health`
works without one. A namespace other than the key's own is sent as the
``X-Wuzhao-Namespace`` header, which only admin keys may use (any other key
gets 404, as for everything it must not see).
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import json
import mimetypes
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO
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
EXECUTED_VERSION_HEADER = "X-Wuzhao-Executed-Version"  # "$LATEST" or a version number
NAMESPACE_HEADER = "X-Wuzhao-Namespace"  # the namespace an admin key acts in
INVOCATION_TYPE_HEADER = "X-Wuzhao-Invocation-Type"  # "async": queue the call, answer 202 at once
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"  # a repeat within 24 h answers with the first call's id
ORDERING_KEY_HEADER = "X-Wuzhao-Ordering-Key"  # calls with one key run one at a time, in order

META_HEADER_PREFIX = "X-Wuzhao-Meta-"  # an object's user metadata, one header per name
TRANSFER_CHUNK = 1024 * 1024  # bytes read from a file per chunk of an upload
TRANSFER_READ_TIMEOUT = 600.0  # seconds an object's PUT or GET may wait for the server

LOG_PAGE_DEFAULT = 100  # the server's default `limit`
LOG_PAGE_MAX = 1000  # the server's largest `limit`


def resolve_url(url: str | None, environ: Mapping[str, str]) -> str:
    """The API address: ``url``, else ``WUZHAO_URL``, else :data:`DEFAULT_URL`."""
    return (url or environ.get("WUZHAO_URL") or DEFAULT_URL).rstrip("/")


def resolve_namespace(namespace: str | None, environ: Mapping[str, str]) -> str | None:
    """The namespace to act in: ``namespace``, else ``WUZHAO_NAMESPACE``, else None (the key's own)."""
    return namespace or environ.get("WUZHAO_NAMESPACE") or None


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
    version: str = ""  # the version that ran: "$LATEST" or a number ("3"); "" if not reported


class _Written(dict[str, Any]):
    def __init__(self, body: Mapping[str, Any], *, created: bool) -> None:
        super().__init__(body)
        self.created = created


class Deployment(_Written):
    """The function object a deploy returned, plus whether the deploy created it.

    It is the server's JSON object unchanged (``==`` a plain dict of the same
    items); :attr:`created` is True for a new function (201), False for an
    update of an existing one (200).
    """


class Publication(_Written):
    """The version object :meth:`Client.publish` returned, plus whether it is new.

    :attr:`created` is False when ``$LATEST`` had not changed since the last
    published version: that version is returned and no new one is made.
    """


class BucketCreation(_Written):
    """The bucket :meth:`Client.create_bucket` returned; :attr:`created` is False if it existed."""


class TriggerPut(_Written):
    """The trigger object :meth:`Client.put_trigger` returned; :attr:`created` is True for a new one."""


# progress(bytes sent or received so far, the total or None when unknown), after every chunk
Progress = Callable[[int, int | None], None]


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
        namespace: str | None = None,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self.url = resolve_url(url, self._environ)
        self.namespace = resolve_namespace(namespace, self._environ)
        self._explicit_key = api_key
        self._data_dir = data_dir
        self._api_key: str | None = None
        self._invoke_timeout = httpx.Timeout(timeout, read=None)
        # A PUT's answer waits for the server to fsync the whole object: give it time.
        self._transfer_timeout = httpx.Timeout(timeout, read=max(timeout, TRANSFER_READ_TIMEOUT))
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
        secrets: Mapping[str, str] | None = None,
        layers: Sequence[str] | None = None,
        max_concurrency: int | None = None,
        min_instances: int | None = None,
        idle_timeout_s: int | None = None,
        max_retries: int | None = None,
        retry_delay_s: float | None = None,
        max_event_age_s: int | None = None,
        on_success: str | None = None,
        on_failure: str | None = None,
        ordering_hold: bool | None = None,
        max_chain_calls: int | None = None,
        recursive_loop: str | None = None,
    ) -> Deployment:
        """Create or update function ``name``; return its function object.

        Code comes from ``code_dir`` (zipped with :func:`wuzhao.packaging.zip_directory`)
        or ``code_zip``; without either only the settings change (code is needed
        on create). Settings left as None keep their current (or default) value;
        ``env``, ``secrets`` and ``layers`` replace the whole current value
        (``{}``/``[]`` clear it). ``secrets`` maps an environment variable to
        the name of a secret of the namespace (see :meth:`set_secret`);
        ``layers`` are ``"name:version"`` references (see :meth:`push_layer`).
        ``max_concurrency=0`` disables the function (every call gets 429);
        ``min_instances`` keeps that many instances of $LATEST started (provisioned).
        Asynchronous calls (``docs/async.md``): a failed attempt is retried
        ``max_retries`` times, the first after ``retry_delay_s`` (doubling after);
        an event older than ``max_event_age_s`` goes dead; ``on_success`` and
        ``on_failure`` name functions that get each outcome's record (``""``
        removes one); ``ordering_hold`` makes a dead call hold its ordering key.
        Loops (``docs/triggers.md``): one chain of calls (through triggers, destinations and
        in-function calls) may call the function ``max_chain_calls`` times (1-1000, 16 by
        default); the next call is not made, unless ``recursive_loop="allow"`` (the default
        is ``"terminate"``).
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
            "secrets": dict(secrets) if secrets is not None else None,
            "layers": list(layers) if layers is not None else None,
            "max_concurrency": max_concurrency,
            "min_instances": min_instances,
            "idle_timeout_s": idle_timeout_s,
            "max_retries": max_retries,
            "retry_delay_s": retry_delay_s,
            "max_event_age_s": max_event_age_s,
            "on_success": on_success,
            "on_failure": on_failure,
            "ordering_hold": ordering_hold,
            "max_chain_calls": max_chain_calls,
            "recursive_loop": recursive_loop,
            "code": _b64(code_zip) if code_zip is not None else None,
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

    # -- versions and aliases ----------------------------------------------

    def publish(self, name: str, description: str = "") -> Publication:
        """Snapshot ``name``'s ``$LATEST`` (code and settings) as its next immutable version.

        When nothing changed since the last version, that version is returned
        (``created`` False) and no new one is made.
        """
        response = self._request(
            "POST", _path("functions", name, "versions"), json={"description": description}
        )
        return Publication(response.json(), created=response.status_code == 201)

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        """The published versions of ``name``, oldest first."""
        versions: list[dict[str, Any]] = self._json("GET", _path("functions", name, "versions"))["versions"]
        return versions

    def get_version(self, name: str, version: int) -> dict[str, Any]:
        """One published version of ``name``; raises NotFound when there is none."""
        record: dict[str, Any] = self._json("GET", _path("functions", name, "versions", version))
        return record

    def delete_version(self, name: str, version: int) -> None:
        """Delete a published version; raises Conflict while an alias points to it."""
        self._request("DELETE", _path("functions", name, "versions", version))

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        routing: Mapping[int, float] | Mapping[str, float] | None = None,
        description: str = "",
    ) -> dict[str, Any]:
        """Point ``alias`` of ``name`` at ``version`` (creating the alias if needed).

        ``routing`` sends a share of the calls to a second version:
        ``{4: 0.1}`` runs version 4 for 10 % of the calls and ``version`` for the rest.
        """
        body: dict[str, Any] = {"version": version, "description": description}
        if routing is not None:
            body["routing"] = {str(other): weight for other, weight in routing.items()}
        record: dict[str, Any] = self._json("PUT", _path("functions", name, "aliases", alias), json=body)
        return record

    def list_aliases(self, name: str) -> list[dict[str, Any]]:
        """The aliases of ``name``."""
        aliases: list[dict[str, Any]] = self._json("GET", _path("functions", name, "aliases"))["aliases"]
        return aliases

    def get_alias(self, name: str, alias: str) -> dict[str, Any]:
        """One alias of ``name``; raises NotFound when there is none."""
        record: dict[str, Any] = self._json("GET", _path("functions", name, "aliases", alias))
        return record

    def delete_alias(self, name: str, alias: str) -> None:
        """Delete an alias; the versions it pointed to stay."""
        self._request("DELETE", _path("functions", name, "aliases", alias))

    # -- invocations -------------------------------------------------------

    def invoke(
        self,
        name: str,
        event: Any = None,
        *,
        payload: bytes | None = None,
        qualifier: str | int | None = None,
    ) -> InvokeResult:
        """Call ``name`` with ``event`` (any JSON value; None sends ``{}``) and wait for it.

        ``payload`` sends JSON bytes as they are instead (e.g. a literal ``null``).
        ``qualifier`` picks what runs: ``"$LATEST"`` (the default), a published
        version number, or an alias; :attr:`InvokeResult.version` says which ran.
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
            params={"qualifier": str(qualifier)} if qualifier is not None else None,
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
            version=response.headers.get(EXECUTED_VERSION_HEADER, ""),
        )

    def get_invocation(self, invocation_id: str) -> dict[str, Any]:
        """The record of one invocation: status, timing, error and the tail of its logs."""
        path = f"/v1/invocations/{quote(invocation_id, safe='')}"
        record: dict[str, Any] = self._request("GET", path).json()
        return record

    # -- asynchronous invocations and dead letters -------------------------

    def invoke_async(
        self,
        name: str,
        event: Any = None,
        *,
        payload: bytes | None = None,
        qualifier: str | int | None = None,
        idempotency_key: str | None = None,
        ordering_key: str | None = None,
    ) -> str:
        """Queue a call of ``name`` with ``event`` and return its invocation id at once.

        The server answers once the call is durably queued; it runs later, retried
        as the function's configuration says (follow it with :meth:`get_invocation`
        or :meth:`wait_invocation`). ``event``/``payload`` and ``qualifier`` are as
        for :meth:`invoke` (the qualifier is resolved at each attempt). A repeat
        with the same ``idempotency_key`` within 24 hours queues nothing and
        returns the first call's id. Calls with the same ``ordering_key`` run one
        at a time, in the order they were queued.
        """
        if payload is not None and event is not None:
            raise TypeError("pass event or payload, not both")
        if payload is None:
            payload = json.dumps({} if event is None else event).encode()
        headers = {"Content-Type": "application/json", INVOCATION_TYPE_HEADER: "async"}
        if idempotency_key is not None:
            headers[IDEMPOTENCY_KEY_HEADER] = idempotency_key
        if ordering_key is not None:
            headers[ORDERING_KEY_HEADER] = ordering_key
        response = self._request(
            "POST",
            f"{_function_path(name)}/invoke",
            content=payload,
            headers=headers,
            params={"qualifier": str(qualifier)} if qualifier is not None else None,
        )
        invocation_id: str = response.json()["invocation_id"]
        return invocation_id

    def wait_invocation(
        self, invocation_id: str, *, timeout: float = 60.0, poll_interval: float = 1.0
    ) -> dict[str, Any]:
        """Poll :meth:`get_invocation` until the call is done; return its record.

        Done is ``succeeded`` or ``dead`` for an asynchronous call (``failed``
        only means it waits for a retry), ``succeeded`` or ``failed`` for a
        synchronous one. Polls quickly at first, then every ``poll_interval``
        seconds at most; raises :class:`TimeoutError` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        pause = min(0.05, poll_interval)
        while True:
            record = self.get_invocation(invocation_id)
            if _is_done(record):
                return record
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"invocation {invocation_id} is still {record.get('status')!r} after {timeout:g} s"
                )
            time.sleep(min(pause, left))
            pause = min(pause * 2, poll_interval)

    def dead_letters(
        self, name: str, *, limit: int | None = None, after: str | None = None
    ) -> dict[str, Any]:
        """One page of ``name``'s dead letters, oldest first: ``{"dead_letters": [...], "next": id | None}``.

        Each is an asynchronous invocation record (status ``dead``) with its
        attempts and last error. ``after`` is a ``next`` from the previous page.
        """
        params = {"limit": limit, "after": after}
        page: dict[str, Any] = self._json(
            "GET",
            _path("functions", name, "dead-letters"),
            params={key: str(value) for key, value in params.items() if value is not None},
        )
        return page

    def iter_dead_letters(self, name: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every dead letter of ``name``, oldest first, fetched a page at a time."""
        after: str | None = None
        while True:
            page = self.dead_letters(name, limit=page_size, after=after)
            yield from page["dead_letters"]
            after = page.get("next")
            if not after:
                return

    def dead_letter(self, name: str, invocation_id: str) -> dict[str, Any]:
        """One dead letter of ``name``; raises NotFound when there is none by that id."""
        record: dict[str, Any] = self._json("GET", _path("functions", name, "dead-letters", invocation_id))
        return record

    def redrive(self, name: str, invocation_id: str) -> str:
        """Queue a dead letter of ``name`` again, its retries counted from zero; returns its id."""
        answer = self._json("POST", _path("functions", name, "dead-letters", invocation_id, "redrive"))
        redriven: str = answer["invocation_id"]
        return redriven

    def delete_dead_letter(self, name: str, invocation_id: str) -> None:
        """Forget a dead letter of ``name``; raises NotFound when there is none by that id."""
        self._request("DELETE", _path("functions", name, "dead-letters", invocation_id))

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

    # -- layers and secrets ------------------------------------------------

    def push_layer(
        self,
        name: str,
        code_dir: str | os.PathLike[str] | None = None,
        *,
        code_zip: bytes | None = None,
        description: str = "",
    ) -> dict[str, Any]:
        """Upload ``code_dir`` (zipped) or ``code_zip`` as the next version of layer ``name``.

        Returns the layer version; functions use it as ``layer["reference"]``
        (``"name:version"``) in their ``layers``.
        """
        if (code_dir is None) == (code_zip is None):
            raise TypeError("pass code_dir or code_zip (one of them)")
        if code_dir is not None:
            code_zip = zip_directory(code_dir)
        assert code_zip is not None
        body = {"code": _b64(code_zip), "description": description}
        layer: dict[str, Any] = self._json("PUT", _path("layers", name), json=body)
        return layer

    def list_layers(self) -> list[dict[str, Any]]:
        """Every version of every layer of the namespace."""
        layers: list[dict[str, Any]] = self._json("GET", "/v1/layers")["layers"]
        return layers

    def get_layer(self, name: str) -> dict[str, Any]:
        """Layer ``name`` with its versions: ``{"name": ..., "versions": [...]}``."""
        layer: dict[str, Any] = self._json("GET", _path("layers", name))
        return layer

    def delete_layer_version(self, name: str, version: int) -> None:
        """Delete one version of a layer; its number is never reused."""
        self._request("DELETE", _path("layers", name, "versions", version))

    def set_secret(self, name: str, value: str) -> dict[str, Any]:
        """Create or replace secret ``name``. The answer (and every later one) holds only its name."""
        secret: dict[str, Any] = self._json("PUT", _path("secrets", name), json={"value": value})
        return secret

    def list_secrets(self) -> list[dict[str, Any]]:
        """The secrets of the namespace: names and times, never values."""
        secrets: list[dict[str, Any]] = self._json("GET", "/v1/secrets")["secrets"]
        return secrets

    def delete_secret(self, name: str) -> None:
        self._request("DELETE", _path("secrets", name))

    # -- buckets and objects -----------------------------------------------

    def create_bucket(self, bucket: str) -> BucketCreation:
        """Create ``bucket`` in the namespace; one that exists already is returned (``created`` False)."""
        response = self._request("PUT", _path("buckets", bucket))
        return BucketCreation(response.json(), created=response.status_code == 201)

    def list_buckets(self) -> list[dict[str, Any]]:
        """The namespace's buckets, by name."""
        buckets: list[dict[str, Any]] = self._json("GET", "/v1/buckets")["buckets"]
        return buckets

    def delete_bucket(self, bucket: str) -> None:
        """Delete an empty bucket; raises Conflict while it holds an object."""
        self._request("DELETE", _path("buckets", bucket))

    def put_object(
        self,
        bucket: str,
        key: str,
        data: bytes | str | os.PathLike[str] | BinaryIO,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Store ``data`` as object ``key`` of ``bucket``, replacing any; return its metadata.

        ``data`` is the bytes, a file's path (``str`` or ``Path``), or a binary
        file object read from where it stands; files are streamed, never read
        whole. ``content_type`` defaults to a guess from the path's name, else
        ``application/octet-stream``; ``metadata`` is kept with the object and
        comes back from :meth:`head_object`. ``progress(sent, total)`` is
        called as the body goes out (``total`` None when the size is unknown).
        """
        if isinstance(data, str | os.PathLike):
            with open(data, "rb") as file:
                guessed = content_type or mimetypes.guess_type(os.fspath(data))[0]
                return self.put_object(
                    bucket, key, file, content_type=guessed, metadata=metadata, progress=progress
                )
        headers = {"Content-Type": content_type or "application/octet-stream"}
        headers.update({f"{META_HEADER_PREFIX}{name}": value for name, value in (metadata or {}).items()})
        size = len(data) if isinstance(data, bytes) else _remaining(data)
        if size is not None:
            headers["Content-Length"] = str(size)  # the server refuses an object over its cap at once
        chunks = [data] if isinstance(data, bytes) else _read_chunks(data)
        response = self._request(
            "PUT",
            _object_path(bucket, key),
            content=_reported(chunks, size, progress),
            headers=headers,
            timeout=self._transfer_timeout,
        )
        stored: dict[str, Any] = response.json()
        return stored

    def get_object(self, bucket: str, key: str) -> bytes:
        """The whole object, in memory: for small objects (see :meth:`download_object`)."""
        return self._request("GET", _object_path(bucket, key), timeout=self._transfer_timeout).content

    def download_object(
        self,
        bucket: str,
        key: str,
        destination: str | os.PathLike[str] | BinaryIO,
        *,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Stream object ``key`` into ``destination`` (a path or a binary file object); its metadata.

        The bytes are checked against the object's SHA-256 (its ETag) as they
        arrive. A path is written through a temporary file next to it and
        renamed into place only when complete and checked, so a failed download
        leaves no partial file; a file object gets the bytes as they come.
        """
        if not isinstance(destination, str | os.PathLike):
            return self._download(bucket, key, destination, progress)
        target = Path(destination)
        fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                info = self._download(bucket, key, file, progress)
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        return info

    def head_object(self, bucket: str, key: str) -> dict[str, Any]:
        """An object's metadata, from the headers of a HEAD: no byte of it is sent."""
        response = self._send("HEAD", _object_path(bucket, key))
        if response.is_error:  # a HEAD answer has no body: rebuild the error from the status
            raise errors.error_from_body(response.status_code, _status_error(response, bucket, key))
        return _object_info(bucket, key, response)

    def delete_object(self, bucket: str, key: str) -> None:
        """Delete object ``key``; raises NotFound when there is none."""
        self._request("DELETE", _object_path(bucket, key))

    def list_objects(
        self, bucket: str, *, prefix: str | None = None, after: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """One page of objects in key order: ``{"objects": [...], "next": key | None}``.

        Pass ``next`` as ``after`` for the next page (see :meth:`iter_objects`).
        """
        params = {"prefix": prefix, "after": after, "limit": limit}
        page: dict[str, Any] = self._json(
            "GET",
            _path("buckets", bucket, "objects"),
            params={name: str(value) for name, value in params.items() if value is not None},
        )
        return page

    def iter_objects(self, bucket: str, *, prefix: str | None = None) -> Iterator[dict[str, Any]]:
        """Every object of ``bucket`` (under ``prefix``), in key order, a page at a time."""
        after: str | None = None
        while True:
            page = self.list_objects(bucket, prefix=prefix, after=after)
            yield from page["objects"]
            after = page["next"]
            if after is None:
                return

    def _download(self, bucket: str, key: str, file: BinaryIO, progress: Progress | None) -> dict[str, Any]:
        headers = self._headers({}, authenticated=True)
        path = _object_path(bucket, key)
        with self._http.stream("GET", path, headers=headers, timeout=self._transfer_timeout) as response:
            if response.is_error:
                response.read()
                raise _error_from(response)
            info = _object_info(bucket, key, response)
            digest = hashlib.sha256()
            received = 0
            for chunk in response.iter_bytes():
                digest.update(chunk)
                file.write(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(received, info["size"])
        if digest.hexdigest() != info["etag"]:
            raise errors.WuzhaoError(
                f"object {key!r} of {bucket!r} arrived damaged: its SHA-256 is not its ETag {info['etag']}"
            )
        return info

    # -- triggers ----------------------------------------------------------

    def put_trigger(
        self,
        name: str,
        *,
        function: str,
        type: str,
        qualifier: str | int | None = None,
        **settings: Any,
    ) -> TriggerPut:
        """Create or replace trigger ``name``: ``function`` (at ``qualifier``) runs on its events.

        ``type="http"`` takes ``path`` (``/users/{id}``, ``/files/{proxy+}``), ``methods``
        (default ``["ANY"]``) and ``auth`` (``"key"``, the default, or ``"none"``); the answer's
        ``url_path`` is where it answers (see :meth:`trigger_url`). ``type="cron"`` takes
        ``schedule`` (``"rate(5 minutes)"`` or a cron expression), ``timezone`` and
        ``missed_ticks`` (``"skip"`` or ``"catch_up_one"``). ``type="object"`` takes
        ``bucket``, ``events`` (``["created"]`` by default, or ``"deleted"``, or both),
        ``prefix`` and ``suffix``. ``type="topic"`` takes ``topic`` and ``filter``
        (attribute name -> the values it may have; see :meth:`publish_message`). Settings
        left out take their defaults: a put states the whole trigger.
        """
        body: dict[str, Any] = {"type": type, "function": function, **settings}
        if qualifier is not None:
            body["qualifier"] = str(qualifier)
        response = self._request("PUT", _path("triggers", name), json=body)
        return TriggerPut(response.json(), created=response.status_code == 201)

    def list_triggers(self, function: str | None = None) -> list[dict[str, Any]]:
        """The triggers of the namespace, or of one ``function``."""
        params = {"function": function} if function is not None else None
        triggers: list[dict[str, Any]] = self._json("GET", "/v1/triggers", params=params)["triggers"]
        return triggers

    def get_trigger(self, name: str) -> dict[str, Any]:
        trigger: dict[str, Any] = self._json("GET", _path("triggers", name))
        return trigger

    def delete_trigger(self, name: str) -> None:
        self._request("DELETE", _path("triggers", name))

    def publish_message(
        self, topic: str, message: Any, attributes: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Publish ``message`` to ``topic``: every topic trigger of it whose filter passes
        ``attributes`` (names to string values) gets an asynchronous call, all queued when this
        returns. ``message`` is text, or any JSON value (subscribers get its JSON as the text).
        The answer: ``{"message_id", "deliveries"}``, the number of calls queued.

        (Not ``publish``: that publishes a function's version.)"""
        body = {"message": message, "attributes": dict(attributes or {})}
        published: dict[str, Any] = self._json("POST", _path("topics", topic, "messages"), json=body)
        return published

    def trigger_url(self, trigger: Mapping[str, Any], **parameters: str) -> str:
        """The address of an HTTP trigger (an object from :meth:`put_trigger` or :meth:`get_trigger`),
        its path parameters filled from ``parameters`` (``id="42"``), each quoted as a segment."""
        path = str(trigger["url_path"])
        for key, value in parameters.items():
            path = path.replace("{" + key + "+}", quote(value, safe="/"))
            path = path.replace("{" + key + "}", quote(value, safe=""))
        return self.url + path

    # -- namespaces and keys (admin keys only) -----------------------------

    def create_namespace(
        self, name: str, *, max_instances: int | None = None, max_memory_mb: int | None = None
    ) -> dict[str, Any]:
        """Create a namespace (a tenant); quotas left as None mean no limit."""
        body: dict[str, Any] = {"name": name}
        if max_instances is not None:
            body["max_instances"] = max_instances
        if max_memory_mb is not None:
            body["max_memory_mb"] = max_memory_mb
        namespace: dict[str, Any] = self._json("POST", "/v1/namespaces", json=body)
        return namespace

    def list_namespaces(self) -> list[dict[str, Any]]:
        namespaces: list[dict[str, Any]] = self._json("GET", "/v1/namespaces")["namespaces"]
        return namespaces

    def get_namespace(self, name: str) -> dict[str, Any]:
        """A namespace with its quotas and current usage."""
        namespace: dict[str, Any] = self._json("GET", _path("namespaces", name))
        return namespace

    def set_quotas(
        self, name: str, *, max_instances: int | None, max_memory_mb: int | None
    ) -> dict[str, Any]:
        """Replace both quotas of a namespace (None: no limit)."""
        body = {"max_instances": max_instances, "max_memory_mb": max_memory_mb}
        namespace: dict[str, Any] = self._json("PUT", _path("namespaces", name), json=body)
        return namespace

    def delete_namespace(self, name: str) -> None:
        """Delete an empty namespace; raises Conflict while it still holds anything."""
        self._request("DELETE", _path("namespaces", name))

    def create_key(self, role: str, namespace: str | None = None, description: str = "") -> dict[str, Any]:
        """Issue an API key with ``role`` (admin, developer, invoker) in ``namespace``.

        ``namespace`` defaults to the client's namespace, else ``default``. The
        answer's ``key`` is the secret: this is the only time it is ever shown.
        """
        body = {
            "role": role,
            "namespace": namespace or self.namespace or "default",
            "description": description,
        }
        key: dict[str, Any] = self._json("POST", "/v1/keys", json=body)
        return key

    def list_keys(self) -> list[dict[str, Any]]:
        """Every key: id, namespace, role, description; never the secret."""
        keys: list[dict[str, Any]] = self._json("GET", "/v1/keys")["keys"]
        return keys

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key; requests with it fail at once."""
        self._request("DELETE", _path("keys", key_id))

    # -- server ------------------------------------------------------------

    def metrics(self) -> str:
        """The server's Prometheus metrics, as text (needs an admin key)."""
        response = self._send("GET", "/metrics")
        if response.is_error:
            raise _error_from(response)
        return response.text

    def health(self) -> dict[str, Any]:
        """The server's health (``{"status": "ok"}``); needs no API key."""
        response = self._send("GET", "/healthz", authenticated=False)
        if response.is_error:
            raise _error_from(response)
        health: dict[str, Any] = response.json()
        return health

    # -- plumbing ----------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

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
        return self._http.request(method, path, headers=self._headers(headers, authenticated), **kwargs)

    def _headers(self, headers: dict[str, str] | None, authenticated: bool) -> dict[str, str]:
        headers = dict(headers or {})
        if authenticated:
            headers["Authorization"] = f"Bearer {self._key()}"
            if self.namespace:
                headers[NAMESPACE_HEADER] = self.namespace
        return headers

    def _key(self) -> str:
        if self._api_key is None:
            self._api_key = resolve_api_key(self._explicit_key, self._environ, self._data_dir)
        return self._api_key


def _path(*segments: str | int) -> str:
    # Quote every segment, so a name like "../x" cannot reach another route.
    return "/v1/" + "/".join(quote(str(segment), safe="") for segment in segments)


def _function_path(name: str) -> str:
    return _path("functions", name)


def _is_done(record: Mapping[str, Any]) -> bool:
    # An async call that failed waits for its retry; a synchronous one that failed is over.
    finished = ("succeeded", "dead") if record.get("async") else ("succeeded", "failed")
    return record.get("status") in finished


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _object_path(bucket: str, key: str) -> str:
    return _path("buckets", bucket, "objects", key)  # every '/' of the key sent as %2F


def _remaining(file: BinaryIO) -> int | None:
    """Bytes left in ``file`` from where it stands, or None when it cannot tell (a pipe)."""
    try:
        if not file.seekable():
            return None
        here = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(here)
    except (OSError, ValueError):
        return None
    return end - here


def _read_chunks(file: BinaryIO) -> Iterator[bytes]:
    while chunk := file.read(TRANSFER_CHUNK):
        yield chunk


def _reported(chunks: Iterable[bytes], total: int | None, progress: Progress | None) -> Iterator[bytes]:
    sent = 0
    for chunk in chunks:
        yield chunk
        sent += len(chunk)
        if progress is not None:
            progress(sent, total)


def _object_info(bucket: str, key: str, response: httpx.Response) -> dict[str, Any]:
    """An object's metadata from the headers of its GET or HEAD answer."""
    headers = response.headers
    modified = headers.get("last-modified")
    return {
        "bucket": bucket,
        "key": key,
        "size": int(headers.get("content-length", 0)),
        "etag": headers.get("etag", "").strip('"'),
        "content_type": headers.get("content-type", ""),
        "modified_at": _iso_from_http_date(modified) if modified else None,
        "metadata": {
            name.removeprefix(META_HEADER_PREFIX.lower()): value
            for name, value in headers.items()
            if name.lower().startswith(META_HEADER_PREFIX.lower())
        },
    }


def _iso_from_http_date(value: str) -> str:
    moment = email.utils.parsedate_to_datetime(value).astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")


def _status_error(response: httpx.Response, bucket: str, key: str) -> dict[str, Any]:
    """The error body a HEAD answer cannot carry, from its status alone."""
    status = response.status_code
    code = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}.get(status)
    message = f"HEAD of {key!r} in bucket {bucket!r}: HTTP {status}"
    return {"error": {"code": code or "InternalError", "message": message}}


def _error_from(response: httpx.Response) -> errors.WuzhaoError:
    try:
        body: Any = response.json()
    except ValueError:  # not JSON: a proxy's error page, say
        body = response.text
    return errors.error_from_body(response.status_code, body)
