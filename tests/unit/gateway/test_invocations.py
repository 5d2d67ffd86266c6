import datetime

import pytest

from wuzhao.errors import BadRequest
from wuzhao.gateway.invocations import parse_since

NOW = 1_700_000_000.0


def utc(*args: int, **offset: float) -> float:
    tz = datetime.timezone(datetime.timedelta(**offset)) if offset else datetime.UTC
    return datetime.datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0s", NOW),
        ("30s", NOW - 30),
        ("10m", NOW - 600),
        ("2h", NOW - 7200),
        ("1d", NOW - 86400),
        ("1.5h", NOW - 5400),
        ("0.5s", NOW - 0.5),
        ("  10m  ", NOW - 600),
    ],
)
def test_durations_are_taken_back_from_now(value: str, expected: float) -> None:
    assert parse_since(value, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1700000000", 1_700_000_000.0),
        ("1699999999.25", 1_699_999_999.25),
        ("0", 0.0),
        ("1e9", 1e9),
    ],
)
def test_unix_seconds(value: str, expected: float) -> None:
    assert parse_since(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-02T03:04:05Z", utc(2024, 1, 2, 3, 4, 5)),
        ("2024-01-02T03:04:05+00:00", utc(2024, 1, 2, 3, 4, 5)),
        ("2024-01-02T03:04:05+02:00", utc(2024, 1, 2, 1, 4, 5)),
        ("2024-01-02T03:04:05-05:30", utc(2024, 1, 2, 8, 34, 5)),
        ("2024-01-02T03:04:05.250Z", utc(2024, 1, 2, 3, 4, 5) + 0.25),
        ("2024-01-02 03:04:05Z", utc(2024, 1, 2, 3, 4, 5)),
        # naive times are UTC, whatever the server's zone
        ("2024-01-02T03:04:05", utc(2024, 1, 2, 3, 4, 5)),
        ("2024-01-02", utc(2024, 1, 2)),
    ],
)
def test_iso_times(value: str, expected: float) -> None:
    assert parse_since(value, now=NOW) == pytest.approx(expected)


def test_offsets_are_the_same_instant() -> None:
    assert parse_since("2024-06-01T12:00:00+02:00", now=NOW) == parse_since("2024-06-01T10:00:00Z", now=NOW)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "yesterday",
        "10x",
        "10 m",
        "m",
        "10mm",
        "-5m",
        "2024-13-01",
        "2024-01-02T25:00:00",
        "nan",
        "inf",
        "-Infinity",
        "12:00",
    ],
)
def test_garbage_is_a_bad_request_on_since(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_since(value, now=NOW)
    assert info.value.field == "since"
    assert repr(value.strip()) in info.value.message
