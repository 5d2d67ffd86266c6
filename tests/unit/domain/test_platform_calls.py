"""Requests a function makes of the platform: a call frame's header and body, read and checked."""

from __future__ import annotations

from typing import Any

import pytest

from wuzhao.domain.platform_calls import (
    DeleteObject,
    GetObject,
    Invoke,
    ListObjects,
    Publish,
    PutObject,
    Request,
    parse,
)
from wuzhao.errors import BadRequest, InvalidJSON

FRAME = {"type": "call", "id": "inv-1", "seq": 1}


@pytest.mark.parametrize(
    ("op", "arguments", "body", "request_"),
    [
        ("put_object", {"bucket": "b", "key": "k"}, b"data", PutObject("b", "k", b"data")),
        ("put_object", {"bucket": "b", "key": "k"}, b"", PutObject("b", "k", b"")),
        (
            "put_object",
            {"bucket": "b", "key": "k", "content_type": "text/plain", "metadata": {"a": "1"}},
            b"x",
            PutObject("b", "k", b"x", content_type="text/plain", metadata={"a": "1"}),
        ),
        (
            "put_object",
            {"bucket": "b", "key": "k", "content_type": None, "metadata": None},
            b"",
            PutObject("b", "k", b""),
        ),
        ("get_object", {"bucket": "b", "key": "k"}, b"", GetObject("b", "k")),
        ("delete_object", {"bucket": "b", "key": "k"}, b"", DeleteObject("b", "k")),
        ("list_objects", {"bucket": "b"}, b"", ListObjects("b")),
        (
            "list_objects",
            {"bucket": "b", "prefix": "in/", "after": "in/a", "limit": 5},
            b"",
            ListObjects("b", prefix="in/", after="in/a", limit=5),
        ),
        ("list_objects", {"bucket": "b", "after": None}, b"", ListObjects("b")),
        ("publish", {"topic": "t"}, b'"text"', Publish("t", "text")),
        (
            "publish",
            {"topic": "t", "attributes": {"kind": "x"}},
            b'{"n":1}',
            Publish("t", {"n": 1}, {"kind": "x"}),
        ),
        ("invoke", {"function": "f"}, b'{"n":1}', Invoke("f", b'{"n":1}')),
        (
            "invoke",
            {"function": "f", "async": True, "qualifier": "live"},
            b"[]",
            Invoke("f", b"[]", "live", True),
        ),
        ("invoke", {"function": "f", "async": False, "qualifier": None}, b"", Invoke("f", b"{}")),
        ("invoke", {"function": "f"}, b"  \n", Invoke("f", b"{}")),  # no payload: an empty object
    ],
)
def test_a_sound_call_is_read_into_its_request(
    op: str, arguments: dict[str, Any], body: bytes, request_: Request
) -> None:
    assert parse(op, {**FRAME, "op": op, **arguments}, body) == request_


def test_a_memfd_field_is_part_of_the_frame_not_an_argument() -> None:
    header = {**FRAME, "op": "put_object", "bucket": "b", "key": "k", "memfd": 4}
    assert parse("put_object", header, b"data") == PutObject("b", "k", b"data")


@pytest.mark.parametrize(
    ("op", "arguments", "body", "field", "error"),
    [
        ("launch_missiles", {}, b"", "op", BadRequest),
        ("", {}, b"", "op", BadRequest),
        ("get_object", {"bucket": "b"}, b"", "key", BadRequest),
        ("get_object", {"bucket": 7, "key": "k"}, b"", "bucket", BadRequest),
        ("get_object", {"bucket": "b", "key": ["k"]}, b"", "key", BadRequest),
        ("get_object", {"bucket": "b", "key": "k", "extra": 1}, b"", "extra", BadRequest),
        ("get_object", {"bucket": "b", "key": "k"}, b"a body", "body", BadRequest),
        ("delete_object", {"bucket": "b", "key": None}, b"", "key", BadRequest),
        ("put_object", {"bucket": "b", "key": "k", "content_type": 5}, b"", "content_type", BadRequest),
        ("put_object", {"bucket": "b", "key": "k", "metadata": {"a": 1}}, b"", "metadata", BadRequest),
        ("put_object", {"bucket": "b", "key": "k", "metadata": ["a"]}, b"", "metadata", BadRequest),
        ("list_objects", {"bucket": "b", "limit": 0}, b"", "limit", BadRequest),
        ("list_objects", {"bucket": "b", "limit": 1001}, b"", "limit", BadRequest),
        ("list_objects", {"bucket": "b", "limit": "10"}, b"", "limit", BadRequest),
        ("list_objects", {"bucket": "b", "limit": True}, b"", "limit", BadRequest),
        ("list_objects", {"bucket": "b", "prefix": 1}, b"", "prefix", BadRequest),
        ("publish", {"topic": "t"}, b"", "message", BadRequest),
        ("publish", {"topic": "t"}, b"{not json", "message", InvalidJSON),
        ("publish", {"topic": "t", "attributes": {"a": ["b"]}}, b"1", "attributes", BadRequest),
        ("publish", {"topic": None}, b"1", "topic", BadRequest),
        ("invoke", {}, b"{}", "function", BadRequest),
        ("invoke", {"function": "f", "async": "yes"}, b"{}", "async", BadRequest),
        ("invoke", {"function": "f", "async": 1}, b"{}", "async", BadRequest),
        ("invoke", {"function": "f", "qualifier": 2}, b"{}", "qualifier", BadRequest),
        ("invoke", {"function": "f" * 257}, b"{}", "function", BadRequest),
        ("invoke", {"function": "f"}, b"\xff{", "event", InvalidJSON),
        ("invoke", {"function": "f"}, b"[" * 100_000, "event", InvalidJSON),
    ],
)
def test_a_bad_argument_is_a_bad_request_naming_it(
    op: str, arguments: dict[str, Any], body: bytes, field: str, error: type[BadRequest]
) -> None:
    with pytest.raises(error) as info:
        parse(op, {**FRAME, "op": op, **arguments}, body)
    assert info.value.field == field
