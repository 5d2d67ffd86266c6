"""Calls from inside a function to the platform: objects, topics, other functions.

::

    from wuzhao import fn

    def handler(event, context):
        photo = fn.get_object("photos", event["key"])
        fn.put_object("photos", "small/" + event["key"], shrink(photo), content_type="image/png")
        fn.publish("photos", {"resized": event["key"]}, {"kind": "resized"})
        return fn.invoke("index", {"key": event["key"]})

A function holds no address and no key of the platform. Each call here is a
request on the runtime channel the instance already has (``call`` and ``reply``
frames, ``docs/runtime-protocol.md``), and the worker performs it as this
function: in its namespace (a bucket, topic or function of another namespace
does not exist for it), continuing its chain of calls (what it writes,
publishes or invokes counts towards loop detection, ``docs/triggers.md``), and
within its timeout (the time a request takes is the caller's). The guide is
``docs/functions-api.md``.

It works while the handler runs, from any of its threads, one request at a time
(a lock; others wait for their turn); not at import time, not from a thread
after the handler returned, not from a process the handler forked: those
raise :class:`NotInInvocation`. A failed request raises a :class:`PlatformError`
whose ``code`` is the platform API's error code.

This module runs inside the sandbox, which has the standard library and the
``wuzhao`` package only: it imports nothing else (``wuzhao.runtimes.protocol`` and
``memfd``, which the runtime has loaded already).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from wuzhao.runtimes import memfd, protocol

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "FunctionError",
    "InitError",
    "InvalidJSON",
    "InvocationError",
    "NotFound",
    "NotInInvocation",
    "ObjectEventFailed",
    "OutOfMemory",
    "PayloadTooLarge",
    "PlatformError",
    "QuotaExceeded",
    "RecursiveLoop",
    "ResponseTooLarge",
    "RuntimeExited",
    "ServiceUnavailable",
    "Throttled",
    "Timeout",
    "delete_object",
    "get_object",
    "invoke",
    "list_objects",
    "publish",
    "put_object",
]

TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"  # of an object written from a str


# -- errors: the platform API's codes (wuzhao.errors), as exceptions a handler can catch --


class PlatformError(Exception):
    """A request the platform refused or could not perform. ``code``: the API's error code
    (``NotFound``, ``RecursiveLoop``...); ``field``: the argument at fault, when one is."""

    code = "InternalError"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None, **details: Any):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field
        self.details = details

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class NotInInvocation(PlatformError):
    """``wuzhao.fn`` was used where no invocation is running (at import time, from a thread
    after the handler returned, from a forked process)."""

    code = "NotInInvocation"


class BadRequest(PlatformError):
    code = "BadRequest"


class InvalidJSON(BadRequest):
    code = "InvalidJSON"


class Forbidden(PlatformError):
    code = "Forbidden"


class NotFound(PlatformError):
    code = "NotFound"


class Conflict(PlatformError):
    code = "Conflict"


class PayloadTooLarge(PlatformError):
    code = "PayloadTooLarge"


class Throttled(PlatformError):
    code = "Throttled"


class QuotaExceeded(Throttled):
    code = "QuotaExceeded"


class ServiceUnavailable(PlatformError):
    code = "ServiceUnavailable"


class RecursiveLoop(PlatformError):
    """The call would have called a function more than ``max_chain_calls`` times in one chain."""

    code = "RecursiveLoop"


class ObjectEventFailed(PlatformError):
    """The object was written or deleted (that stands), but its triggers may not hear of it."""

    code = "ObjectEventFailed"


class InvocationError(PlatformError):
    """The function :func:`invoke` called ran and failed; ``invocation_id`` names its record."""

    @property
    def invocation_id(self) -> str | None:
        value = self.details.get("invocation_id")
        return value if isinstance(value, str) else None


class FunctionError(InvocationError):
    """The called function's handler raised: ``error_type``, ``message`` and ``traceback``
    are its own."""

    code = "FunctionError"

    @property
    def error_type(self) -> str:
        return str(self.details.get("error_type", "Exception"))

    @property
    def traceback(self) -> list[str]:
        lines = self.details.get("traceback")
        return [str(line) for line in lines] if isinstance(lines, list) else []


class InitError(InvocationError):
    code = "InitError"


class OutOfMemory(InvocationError):
    code = "OutOfMemory"


class RuntimeExited(InvocationError):
    code = "RuntimeExited"


class ResponseTooLarge(InvocationError):
    code = "ResponseTooLarge"


class Timeout(InvocationError):
    code = "Timeout"


_ERRORS: dict[str, type[PlatformError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        InvalidJSON,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        Throttled,
        QuotaExceeded,
        ServiceUnavailable,
        RecursiveLoop,
        ObjectEventFailed,
        FunctionError,
        InitError,
        OutOfMemory,
        RuntimeExited,
        ResponseTooLarge,
        Timeout,
    )
}


# -- the API --


def put_object(
    bucket: str,
    key: str,
    data: bytes | bytearray | memoryview | str,
    content_type: str | None = None,
    *,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Write ``data`` as ``key`` of ``bucket`` (which must exist); the object's metadata, as
    ``GET /v1/buckets/{bucket}/objects`` lists it (``size``, ``etag``...). A ``str`` is stored
    as UTF-8, ``text/plain; charset=utf-8`` unless ``content_type`` says otherwise. Fires the
    bucket's object triggers, as this function's doing."""
    if isinstance(data, str):
        payload = data.encode("utf-8")
        content_type = content_type or TEXT_CONTENT_TYPE
    elif isinstance(data, bytes | bytearray | memoryview):
        payload = bytes(data)
    else:
        raise TypeError(f"data must be bytes or str, not {type(data).__name__}")
    arguments: dict[str, Any] = {"bucket": bucket, "key": key}
    if content_type is not None:
        arguments["content_type"] = content_type
    if metadata:
        arguments["metadata"] = dict(metadata)
    header, _ = _call(protocol.PUT_OBJECT, arguments, payload)
    return _object(header)


def get_object(bucket: str, key: str) -> bytes:
    """The bytes of ``key`` in ``bucket`` (:class:`NotFound` if there is none)."""
    _, body = _call(protocol.GET_OBJECT, {"bucket": bucket, "key": key})
    return body


def delete_object(bucket: str, key: str) -> None:
    """Delete ``key`` of ``bucket`` (:class:`NotFound` if there is none); fires the bucket's
    ``deleted`` triggers."""
    _call(protocol.DELETE_OBJECT, {"bucket": bucket, "key": key})


def list_objects(
    bucket: str, prefix: str = "", after: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Up to ``limit`` (1-1000) objects of ``bucket`` whose key starts with ``prefix``, in key
    order, after the key ``after``: for the next page, pass the last key you got."""
    arguments: dict[str, Any] = {"bucket": bucket, "prefix": prefix, "limit": limit}
    if after is not None:
        arguments["after"] = after
    _, body = _call(protocol.LIST_OBJECTS, arguments)
    listing = json.loads(body)
    objects = listing.get("objects") if isinstance(listing, dict) else None
    return [o for o in objects if isinstance(o, dict)] if isinstance(objects, list) else []


def publish(topic: str, message: Any, attributes: Mapping[str, str] | None = None) -> str:
    """Publish ``message`` (text, or any JSON value: subscribers get its JSON text) to ``topic``
    with ``attributes`` (for the subscribers' filters); the message's id. Each topic trigger
    it reaches gets an asynchronous call, continuing this function's chain."""
    arguments: dict[str, Any] = {"topic": topic}
    if attributes:
        arguments["attributes"] = dict(attributes)
    header, _ = _call(protocol.PUBLISH, arguments, json.dumps(message).encode())
    return str(header.get("message_id", ""))


def invoke(name: str, event: Any = None, *, async_: bool = False, qualifier: str | None = None) -> Any:
    """Call the function ``name`` of this namespace (at ``qualifier``: a version or an alias)
    with ``event`` (any JSON value; None: an empty object).

    Synchronously (the default): its result, decoded from JSON; its failure raises
    :class:`FunctionError` (the handler raised) or another :class:`InvocationError`
    (``Timeout``, ``OutOfMemory``...). With ``async_=True``: queued, with the callee's retries,
    and the call's id (``GET /v1/invocations/{id}``) is returned at once.
    A call that would close a loop raises :class:`RecursiveLoop` (synchronously) or is recorded
    as a dead call whose id is returned (asynchronously).
    """
    arguments: dict[str, Any] = {"function": name, "async": bool(async_)}
    if qualifier is not None:
        arguments["qualifier"] = qualifier
    payload = b"" if event is None else json.dumps(event, separators=(",", ":")).encode()
    header, body = _call(protocol.INVOKE_FUNCTION, arguments, payload)
    if async_:
        return str(header.get("invocation_id", ""))
    return json.loads(body) if body else None


def _object(header: Mapping[str, Any]) -> dict[str, Any]:
    found = header.get("object")
    return dict(found) if isinstance(found, dict) else {}


# -- the runtime's side: one session per invocation --


class Channel(Protocol):
    """The runtime's end of the channel (``wuzhao.runtimes.python.bootstrap.Channel``)."""

    def send(self, kind: str, header: dict[str, Any], body: bytes = b"") -> None: ...

    def receive(self) -> protocol.Frame | None: ...


@dataclass
class Session:
    """The invocation that requests go out for, and the channel they go on."""

    channel: Channel
    invocation_id: str
    max_body: int | None  # the worker's limit on a request's body (None: not told)
    pid: int
    seq: int = 0  # requests made so far
    open: bool = True
    broken: str | None = None  # the channel failed mid-request: the runtime must exit


_lock = threading.Lock()  # one request at a time on the channel
_owner: int | None = None  # the thread holding _lock
_session: Session | None = None


@contextmanager
def serving(channel: Channel, invocation_id: str, *, max_body: int | None = None) -> Iterator[Session]:
    """For the runtime, around one invocation's handler: requests go out on ``channel``, for
    ``invocation_id``, until it ends. On the way out it waits for a request another thread
    has under way (the invocation's answer must follow every reply); then, if the session
    is ``broken``, the channel failed under a request and the runtime must exit. A process
    the handler forked leaves without touching anything (the lock may be held in its copy)."""
    global _session
    session = Session(channel, invocation_id, max_body, os.getpid())
    _session = session
    try:
        yield session
    finally:
        if os.getpid() == session.pid:
            with _lock:
                session.open = False
                if _session is session:
                    _session = None


def _call(op: str, arguments: dict[str, Any], body: bytes = b"") -> tuple[dict[str, Any], bytes]:
    """Send one request; the reply's header and body, or the error it carries raised."""
    global _owner
    session = _session
    if session is None or not session.open:
        raise NotInInvocation(
            "wuzhao.fn works only while a handler runs: not at import time, nor after the handler returned"
        )
    if os.getpid() != session.pid:
        raise NotInInvocation("wuzhao.fn cannot be used from a process the handler forked")
    if session.max_body is not None and len(body) > session.max_body:
        raise PayloadTooLarge(
            f"the request is {len(body)} bytes; a function sends at most {session.max_body}"
        )
    if _owner == threading.get_ident():
        raise PlatformError("wuzhao.fn was called while a call of the same thread was under way")
    with _lock:
        _owner = threading.get_ident()
        try:
            return _exchange(session, op, arguments, body)
        finally:
            _owner = None


def _exchange(
    session: Session, op: str, arguments: dict[str, Any], body: bytes
) -> tuple[dict[str, Any], bytes]:
    if not session.open:
        raise NotInInvocation("the invocation ended while this request waited for its turn")
    if session.broken is not None:
        raise PlatformError(f"the runtime channel is broken: {session.broken}")
    seq = session.seq + 1
    header = {**arguments, "id": session.invocation_id, "seq": seq, "op": op}
    json.dumps(header)  # a value that is not JSON raises TypeError here, before a byte is sent
    try:
        session.channel.send(protocol.CALL, header, body)
        session.seq = seq
        frame = session.channel.receive()
        if frame is None:
            raise protocol.ProtocolError("the worker closed the channel")
        reply = _reply_body(frame)
        if (
            frame.kind != protocol.REPLY
            or frame.header.get("id") != session.invocation_id
            or frame.header.get("seq") != seq
        ):
            raise protocol.ProtocolError(f"expected the reply to call {seq}, got {frame.kind}")
    except (OSError, protocol.ProtocolError) as exc:
        session.broken = str(exc)
        raise PlatformError(f"the runtime channel broke: {exc}") from None
    if frame.header.get("ok") is True:
        return frame.header, reply
    raise _error(frame.header.get("error"), reply)


def _reply_body(frame: protocol.Frame) -> bytes:
    if frame.fd is None:
        return frame.body
    with memfd.mapped(frame.fd, frame.memfd_length) as view:
        return bytes(view)


def _error(summary: Any, body: bytes) -> PlatformError:
    summary = summary if isinstance(summary, dict) else {}
    try:
        details = json.loads(body) if body else {}
    except ValueError:
        details = {}
    if not isinstance(details, dict):
        details = {}
    code = str(summary.get("code", "InternalError"))
    message = str(details.pop("message", summary.get("message", "")))
    field = summary.get("field")
    details = {k: v for k, v in details.items() if k not in ("code", "field")}
    cls = _ERRORS.get(code, PlatformError)
    return cls(message, code=code, field=field if isinstance(field, str) else None, **details)
