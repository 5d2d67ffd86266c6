"""What a function asks of the platform (the in-function API, ``wuzhao.fn``), read from a call.

A runtime sends a ``call`` frame (``runtimes/protocol.py``) whose header names an
operation and its arguments and whose body is the operation's payload. This
module turns one into a typed request, or says what is wrong with it as a
:class:`BadRequest` that goes back to the function as an error reply: the
arguments come from user code, so a wrong one is the function's mistake to
catch, not a reason to kill its instance. Only types and shapes are checked
here; names and sizes (a bucket name, a key, a topic's attributes) are checked
where every other caller's are too (``objects/names.py``, ``domain/topics.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from wuzhao.errors import BadRequest, InvalidJSON
from wuzhao.objects.names import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT
from wuzhao.runtimes import protocol

# Fields of every call frame, beside an operation's own arguments.
FRAME_FIELDS = frozenset({"type", "id", "seq", "op", protocol.MEMFD})
MAX_NAME_LENGTH = 256  # a function name or qualifier; the real rules are checked when resolved
EMPTY_EVENT = b"{}"


@dataclass(frozen=True)
class PutObject:
    bucket: str
    key: str
    data: bytes
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GetObject:
    bucket: str
    key: str


@dataclass(frozen=True)
class DeleteObject:
    bucket: str
    key: str


@dataclass(frozen=True)
class ListObjects:
    bucket: str
    prefix: str = ""
    after: str = ""
    limit: int = DEFAULT_LIST_LIMIT


@dataclass(frozen=True)
class Publish:
    topic: str
    message: Any  # text, or any JSON value
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Invoke:
    function: str
    event: bytes  # JSON, checked
    qualifier: str | None = None
    asynchronous: bool = False


Request = PutObject | GetObject | DeleteObject | ListObjects | Publish | Invoke

# op -> the arguments it takes (beside the frame's own fields)
ARGUMENTS: dict[str, frozenset[str]] = {
    protocol.PUT_OBJECT: frozenset({"bucket", "key", "content_type", "metadata"}),
    protocol.GET_OBJECT: frozenset({"bucket", "key"}),
    protocol.DELETE_OBJECT: frozenset({"bucket", "key"}),
    protocol.LIST_OBJECTS: frozenset({"bucket", "prefix", "after", "limit"}),
    protocol.PUBLISH: frozenset({"topic", "attributes"}),
    protocol.INVOKE_FUNCTION: frozenset({"function", "qualifier", "async"}),
}
# The ops whose body is a payload; the others take none.
WITH_BODY = frozenset({protocol.PUT_OBJECT, protocol.PUBLISH, protocol.INVOKE_FUNCTION})


def parse(op: str, header: Mapping[str, Any], body: bytes) -> Request:
    """The request a call frame makes; :class:`BadRequest` (``field`` names the culprit) if it
    names no operation this worker has, or an argument is missing, unknown or of the wrong type."""
    allowed = ARGUMENTS.get(op)
    if allowed is None:
        raise BadRequest(f"unknown operation {op!r}", field="op")
    for name in header:
        if name not in allowed and name not in FRAME_FIELDS:
            raise BadRequest(f"{op} takes no argument {name!r}", field=name)
    if body and op not in WITH_BODY:
        raise BadRequest(f"{op} takes no body", field="body")
    if op == protocol.PUT_OBJECT:
        return PutObject(
            _text(header, "bucket"),
            _text(header, "key"),
            body,
            content_type=_optional_text(header, "content_type"),
            metadata=_strings(header, "metadata"),
        )
    if op == protocol.GET_OBJECT:
        return GetObject(_text(header, "bucket"), _text(header, "key"))
    if op == protocol.DELETE_OBJECT:
        return DeleteObject(_text(header, "bucket"), _text(header, "key"))
    if op == protocol.LIST_OBJECTS:
        limit = header.get("limit", DEFAULT_LIST_LIMIT)
        if type(limit) is not int or not 1 <= limit <= MAX_LIST_LIMIT:
            raise BadRequest(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}", field="limit")
        return ListObjects(
            _text(header, "bucket"),
            prefix=_optional_text(header, "prefix") or "",
            after=_optional_text(header, "after") or "",
            limit=limit,
        )
    if op == protocol.PUBLISH:
        if not body:
            raise BadRequest("publish needs the message, as JSON, in the body", field="message")
        return Publish(_text(header, "topic"), _json(body, "message"), _strings(header, "attributes"))
    asynchronous = header.get("async", False)
    if type(asynchronous) is not bool:
        raise BadRequest("async must be true or false", field="async")
    function = _text(header, "function")
    qualifier = _optional_text(header, "qualifier")
    for name, value in (("function", function), ("qualifier", qualifier or "")):
        if len(value) > MAX_NAME_LENGTH:
            raise BadRequest(f"{name} is at most {MAX_NAME_LENGTH} characters", field=name)
    if body.strip():
        _json(body, "event")
    else:
        body = EMPTY_EVENT  # like the invoke route: no payload is an empty object
    return Invoke(function, body, qualifier=qualifier or None, asynchronous=asynchronous)


def _text(header: Mapping[str, Any], name: str) -> str:
    value = header.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string", field=name)
    return value


def _optional_text(header: Mapping[str, Any], name: str) -> str | None:
    value = header.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string or null", field=name)
    return value


def _strings(header: Mapping[str, Any], name: str) -> dict[str, str]:
    """An object of string values, or nothing (null or left out)."""
    value = header.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadRequest(f"{name} must be an object of strings", field=name)
    return dict(value)


def _json(body: bytes, name: str) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidJSON(f"the {name} is not valid JSON: {exc}", field=name) from None
    except RecursionError:
        raise InvalidJSON(f"the {name} is nested too deeply", field=name) from None
