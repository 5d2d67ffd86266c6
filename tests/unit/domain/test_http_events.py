import base64
import json
from typing import Any

import pytest

from wuzhao.domain.http_events import (
    HttpRequest,
    HttpResponse,
    Target,
    bad_gateway,
    build_event,
    gateway_timeout,
    map_response,
)

TIME = 1_583_348_638.390  # 2020-03-04T19:03:58.390Z


def request(**changes: Any) -> HttpRequest:
    fields: dict[str, Any] = {
        "method": "GET",
        "path": "/users/42",
        "query": "",
        "headers": [("host", "api.example.com"), ("user-agent", "curl/8")],
        "body": b"",
        "source_ip": "192.0.2.1",
        "protocol": "HTTP/1.1",
        "time": TIME,
    }
    fields.update(changes)
    return HttpRequest(**fields)


TARGET = Target("team", "users", "GET /users/{id}", {"id": "42"}, "req-1")


def event(req: HttpRequest | None = None, target: Target = TARGET, **kwargs: Any) -> dict[str, Any]:
    return json.loads(build_event(req or request(), target, **kwargs))  # type: ignore[no-any-return]


def test_the_event_is_api_gateways_payload_2() -> None:
    assert event() == {
        "version": "2.0",
        "routeKey": "GET /users/{id}",
        "rawPath": "/users/42",
        "rawQueryString": "",
        "headers": {"host": "api.example.com", "user-agent": "curl/8"},
        "requestContext": {
            "accountId": "team",
            "apiId": "users",
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {
                "method": "GET",
                "path": "/users/42",
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1",
                "userAgent": "curl/8",
            },
            "requestId": "req-1",
            "routeKey": "GET /users/{id}",
            "stage": "$default",
            "time": "04/Mar/2020:19:03:58 +0000",
            "timeEpoch": 1583348638390,
        },
        "pathParameters": {"id": "42"},
        "isBase64Encoded": False,
    }


@pytest.mark.parametrize(
    ("query", "parameters"),
    [
        ("a=1", {"a": "1"}),
        ("a=1&a=2&b=", {"a": "1,2", "b": ""}),  # repeats joined with commas, as API Gateway does
        ("q=caf%C3%A9+au+lait", {"q": "café au lait"}),
        ("flag", {"flag": ""}),
        ("", None),  # no query: no queryStringParameters
    ],
)
def test_query_parameters(query: str, parameters: dict[str, str] | None) -> None:
    built = event(request(query=query))
    assert built["rawQueryString"] == query
    assert built.get("queryStringParameters") == parameters


def test_headers_are_joined_and_cookies_taken_out() -> None:
    built = event(
        request(
            headers=[
                ("x-many", "1"),
                ("cookie", "a=1; b=2"),
                ("x-many", "2"),
                ("cookie", "c=3"),
                ("authorization", "Bearer k"),
            ]
        )
    )
    assert built["headers"] == {"x-many": "1,2", "authorization": "Bearer k"}
    assert built["cookies"] == ["a=1", "b=2", "c=3"]
    assert built["requestContext"]["domainName"] == ""


def test_the_platforms_key_can_be_kept_from_the_function() -> None:
    headers = [("authorization", "Bearer wz_secret"), ("x-a", "1")]
    assert event(request(headers=headers), strip_authorization=True)["headers"] == {"x-a": "1"}


def test_no_path_parameters_no_field() -> None:
    assert "pathParameters" not in event(target=Target("team", "root", "GET /", {}, "req-2"))


@pytest.mark.parametrize(
    ("body", "content_type", "sent", "encoded"),
    [
        (b'{"a": 1}', "application/json", '{"a": 1}', False),
        ("héllo".encode(), "text/plain; charset=utf-8", "héllo", False),
        (b"a=1&b=2", "application/x-www-form-urlencoded", "a=1&b=2", False),
        (b"<x/>", "application/atom+xml", "<x/>", False),
        (b'{"a": 1}', "application/vnd.api+json", '{"a": 1}', False),
        (b"plain", None, "plain", False),  # no type, and UTF-8: text
        (b"\xff\xfe\x00", None, base64.b64encode(b"\xff\xfe\x00").decode(), True),
        (b"\xff\xfe\x00", "text/plain", base64.b64encode(b"\xff\xfe\x00").decode(), True),  # not UTF-8
        (b"PNG", "image/png", base64.b64encode(b"PNG").decode(), True),  # a binary type, even if ASCII
        (b"abc", "application/octet-stream", base64.b64encode(b"abc").decode(), True),
    ],
)
def test_bodies(body: bytes, content_type: str | None, sent: str, encoded: bool) -> None:
    headers = [("content-type", content_type)] if content_type else []
    built = event(request(method="POST", body=body, headers=headers))
    assert (built["body"], built["isBase64Encoded"]) == (sent, encoded)
    if encoded:
        assert base64.b64decode(built["body"]) == body


def test_no_body_no_field() -> None:
    built = event()
    assert "body" not in built
    assert built["isBase64Encoded"] is False


# -- the answer ----------------------------------------------------------------


def answer(value: Any) -> HttpResponse:
    return map_response(json.dumps(value).encode())


JSON = ("content-type", "application/json")


@pytest.mark.parametrize(
    ("value", "status", "headers", "body"),
    [
        ({"hello": "world"}, 200, [JSON], b'{"hello": "world"}'),  # no statusCode: the JSON, 200
        ([1, 2], 200, [JSON], b"[1, 2]"),
        ("text", 200, [JSON], b'"text"'),
        (None, 200, [JSON], b"null"),
        (3, 200, [JSON], b"3"),
        ({"statusCode": 204}, 204, [], b""),
        ({"statusCode": 201, "body": "made"}, 201, [JSON], b"made"),
        ({"statusCode": "404", "body": "gone"}, 404, [JSON], b"gone"),
        (
            {
                "statusCode": 200,
                "headers": {"Content-Type": "text/html", "X-N": 5, "X-B": True},
                "body": "<p>",
            },
            200,
            [("content-type", "text/html"), ("x-n", "5"), ("x-b", "true")],
            b"<p>",
        ),
        (
            {"statusCode": 200, "multiValueHeaders": {"X-M": ["a", "b"]}, "headers": {"X-M": "c"}},
            200,
            [("x-m", "c"), ("x-m", "a"), ("x-m", "b")],
            b"",
        ),
        (
            {"statusCode": 302, "headers": {"Location": "/x"}, "cookies": ["a=1; Path=/", "b=2"]},
            302,
            [("location", "/x"), ("set-cookie", "a=1; Path=/"), ("set-cookie", "b=2")],
            b"",
        ),
        (
            {"statusCode": 200, "isBase64Encoded": True, "body": base64.b64encode(b"\x00\xff").decode()},
            200,
            [JSON],
            b"\x00\xff",
        ),
        (
            {"statusCode": 200, "headers": {"Content-Length": "999", "Connection": "close", "X": "y"}},
            200,
            [("x", "y")],  # framing is the server's
            b"",
        ),
        ({"statusCode": 200, "body": None, "headers": None, "cookies": None}, 200, [], b""),
        ({"statusCode": 200, "body": "é"}, 200, [JSON], "é".encode()),
    ],
)
def test_responses(value: Any, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    assert answer(value) == HttpResponse(status, headers, body)


def test_an_inferred_body_is_the_functions_json_unchanged() -> None:
    result = b'{"b":1,  "a":[true]}'
    assert map_response(result) == HttpResponse(200, [JSON], result)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"statusCode": 99}, "not an HTTP status"),
        ({"statusCode": 600}, "not an HTTP status"),
        ({"statusCode": True}, "not an HTTP status"),
        ({"statusCode": "abc"}, "not an HTTP status"),
        ({"statusCode": 200.5}, "not an HTTP status"),
        ({"statusCode": 200, "body": {"a": 1}}, "body must be a string"),
        ({"statusCode": 200, "headers": ["X: y"]}, "headers must be an object"),
        ({"statusCode": 200, "headers": {"X": {"a": 1}}}, "must be a string or a number"),
        ({"statusCode": 200, "headers": {"X": "a\r\nSet-Cookie: evil=1"}}, "line break"),
        ({"statusCode": 200, "headers": {"Bad Name": "x"}}, "is not a token"),
        ({"statusCode": 200, "headers": {"X": "€"}}, "cannot carry"),
        ({"statusCode": 200, "multiValueHeaders": {"X": "a"}}, "must be a list"),
        ({"statusCode": 200, "cookies": "a=1"}, "cookies must be a list"),
        ({"statusCode": 200, "isBase64Encoded": "yes"}, "true or false"),
        ({"statusCode": 200, "isBase64Encoded": True, "body": "not base64!"}, "not base64"),
    ],
)
def test_malformed_responses_are_a_502(value: Any, problem: str) -> None:
    response = answer(value)
    assert (response.status, response.body) == (502, b'{"message":"Internal Server Error"}')
    assert response.problem is not None and problem in response.problem


def test_failures_like_api_gateway() -> None:
    assert bad_gateway() == HttpResponse(502, [JSON], b'{"message":"Internal Server Error"}')
    assert gateway_timeout() == HttpResponse(504, [JSON], b'{"message":"Endpoint request timed out"}')
