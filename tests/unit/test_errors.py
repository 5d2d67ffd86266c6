import pytest

from wuzhao import errors
from wuzhao.errors import (
    ERRORS_BY_CODE,
    BadRequest,
    InvocationError,
    NotFound,
    WuzhaoError,
    error_from_body,
)


def all_error_classes() -> list[type[WuzhaoError]]:
    return [
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, WuzhaoError) and obj.__module__ == errors.__name__
    ]


ERROR_CLASSES = all_error_classes()

STATUSES = {
    "InternalError": 500,
    "BadRequest": 400,
    "InvalidJSON": 400,
    "InvalidCode": 400,
    "Unauthorized": 401,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "Conflict": 409,
    "PayloadTooLarge": 413,
    "RangeNotSatisfiable": 416,
    "LeaseLost": 409,
    "RecursiveLoop": 508,
    "ObjectEventFailed": 500,
    "Throttled": 429,
    "Forbidden": 403,
    "QuotaExceeded": 429,
    "ServiceUnavailable": 503,
    "FunctionError": 500,
    "InitError": 500,
    "OutOfMemory": 500,
    "RuntimeExited": 500,
    "ResponseTooLarge": 413,
    "Timeout": 504,
    "LeaseExpired": 500,
}


def test_every_code_is_unique_except_the_abstract_invocation_error() -> None:
    # InvocationError is a grouping class: it inherits InternalError and is never raised itself.
    concrete = [cls for cls in ERROR_CLASSES if cls is not InvocationError]
    codes = [cls.code for cls in concrete]
    assert len(codes) == len(set(codes))
    assert {ERRORS_BY_CODE[code] for code in codes} == set(concrete)


def test_codes_and_statuses() -> None:
    assert {cls.code: cls.status for cls in ERROR_CLASSES if cls is not InvocationError} == STATUSES


@pytest.mark.parametrize("cls", [errors.InvalidJSON, errors.InvalidCode])
def test_bad_request_family(cls: type[WuzhaoError]) -> None:
    assert issubclass(cls, BadRequest)


@pytest.mark.parametrize(
    "cls",
    [
        errors.FunctionError,
        errors.InitError,
        errors.OutOfMemory,
        errors.RuntimeExited,
        errors.ResponseTooLarge,
        errors.Timeout,
        errors.LeaseExpired,
    ],
)
def test_invocation_error_family(cls: type[WuzhaoError]) -> None:
    assert issubclass(cls, InvocationError)


def test_sandbox_unavailable_is_not_an_api_error() -> None:
    assert not issubclass(errors.SandboxUnavailable, WuzhaoError)


def test_to_body_minimal() -> None:
    assert NotFound("no such function").to_body() == {
        "error": {"code": "NotFound", "message": "no such function"}
    }


def test_to_body_with_field_and_details() -> None:
    error = BadRequest("bad memory", field="memory_mb", minimum=128, maximum=10240)
    assert error.to_body() == {
        "error": {
            "code": "BadRequest",
            "message": "bad memory",
            "field": "memory_mb",
            "minimum": 128,
            "maximum": 10240,
        }
    }
    assert str(error) == "bad memory"


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_round_trip_through_the_body(cls: type[WuzhaoError]) -> None:
    original = cls("it broke", field="thing", request_id="r-1", count=3)
    rebuilt = error_from_body(original.status, original.to_body())
    # InvocationError shares InternalError's code, so it comes back as the base class.
    expected = WuzhaoError if cls is InvocationError else cls
    assert type(rebuilt) is expected
    assert rebuilt.message == "it broke"
    assert rebuilt.field == "thing"
    assert rebuilt.details == {"request_id": "r-1", "count": 3}
    assert rebuilt.to_body() == original.to_body()


def test_round_trip_without_field() -> None:
    rebuilt = error_from_body(429, errors.Throttled("slow down").to_body())
    assert isinstance(rebuilt, errors.Throttled)
    assert rebuilt.field is None
    assert rebuilt.details == {}


def test_unknown_code_becomes_the_base_error() -> None:
    rebuilt = error_from_body(418, {"error": {"code": "Teapot", "message": "short and stout"}})
    assert type(rebuilt) is WuzhaoError
    assert rebuilt.message == "short and stout"


@pytest.mark.parametrize(
    "body",
    [None, "", "<html>502 Bad Gateway</html>", 42, [], ["error"], {}, {"error": "oops"}, {"error": None}],
)
def test_garbage_bodies_give_a_base_error_with_the_status(body: object) -> None:
    rebuilt = error_from_body(502, body)
    assert type(rebuilt) is WuzhaoError
    assert rebuilt.message.startswith("HTTP 502: ")
    assert repr(body) in rebuilt.message


def test_garbage_body_message_is_bounded() -> None:
    rebuilt = error_from_body(500, "x" * 100_000)
    assert len(rebuilt.message) <= 500


@pytest.mark.parametrize(
    ("error", "message", "field"),
    [
        ({}, "", None),  # no code, no message
        ({"code": "NotFound"}, "", None),
        ({"code": None, "message": 7}, "7", None),
        ({"code": "BadRequest", "message": "m", "field": "name"}, "m", "name"),
    ],
)
def test_partial_error_objects(error: dict[str, object], message: str, field: str | None) -> None:
    rebuilt = error_from_body(400, {"error": error})
    assert rebuilt.message == message
    assert rebuilt.field == field
    assert isinstance(rebuilt, ERRORS_BY_CODE.get(str(error.get("code")), WuzhaoError))


def test_an_internal_error_body_is_not_taken_for_an_invocation_error() -> None:
    rebuilt = error_from_body(500, {"error": {"code": "InternalError", "message": "boom"}})
    assert type(rebuilt) is WuzhaoError
    assert not isinstance(rebuilt, InvocationError)
