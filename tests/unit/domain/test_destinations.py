import json
from typing import Any

import pytest

from wuzhao.domain.destinations import (
    SUCCESS,
    Finished,
    destination,
    record,
)
from wuzhao.domain.functions import FunctionConfig

NOW = 1_700_000_000.123
LIMIT = 6 * 1024 * 1024


def finished(**changes: Any) -> Finished:
    values: dict[str, Any] = {
        "call_id": "c1",
        "namespace": "team",
        "function": "orders",
        "qualifier": None,
        "event": b'{"order": 7}',
        "version": "$LATEST",
        "attempts": 1,
        "condition": SUCCESS,
        "result": b'{"ok": true}',
    }
    values.update(changes)
    return Finished(**values)


def test_a_success_record_has_lambdas_shape() -> None:
    assert json.loads(record(finished(), now=NOW, limit=LIMIT)) == {
        "version": "1.0",
        "timestamp": "2023-11-14T22:13:20.123Z",
        "requestContext": {
            "requestId": "c1",
            "functionArn": "wuzhao:function:team:orders:$LATEST",
            "condition": "Success",
            "approximateInvokeCount": 1,
        },
        "requestPayload": {"order": 7},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "responsePayload": {"ok": True},
    }


def test_a_failure_record_carries_the_last_error() -> None:
    error = {"code": "Timeout", "message": "the call ran past 3 s"}
    body = json.loads(
        record(
            finished(
                qualifier="live",
                version="4",
                attempts=3,
                condition="RetriesExhausted",
                result=None,
                error=error,
                status=504,
            ),
            now=NOW,
            limit=LIMIT,
        )
    )
    assert body["requestContext"]["functionArn"] == "wuzhao:function:team:orders:live"
    assert body["requestContext"]["condition"] == "RetriesExhausted"
    assert body["requestContext"]["approximateInvokeCount"] == 3
    assert body["responseContext"] == {"statusCode": 504, "executedVersion": "4", "functionError": "Timeout"}
    assert body["responsePayload"] == error


@pytest.mark.parametrize(
    ("result_size", "event_size", "dropped"),
    [
        (10, 10, []),
        (2000, 10, ["responsePayload"]),
        (2000, 2000, ["responsePayload", "requestPayload"]),
        (10, 2000, ["responsePayload", "requestPayload"]),  # the response goes first, even if small
    ],
)
def test_a_record_over_the_limit_drops_the_payloads(
    result_size: int, event_size: int, dropped: list[str]
) -> None:
    event = json.dumps("e" * event_size).encode()
    result = json.dumps("r" * result_size).encode()
    encoded = record(finished(event=event, result=result), now=NOW, limit=1500)
    body = json.loads(encoded)
    assert body.get("truncated", []) == dropped
    for field in ("requestPayload", "responsePayload"):
        assert (body[field] is None) is (field in dropped)
    assert len(encoded) <= 1500


@pytest.mark.parametrize(
    ("config", "succeeded", "expected"),
    [
        (FunctionConfig(), True, None),
        (FunctionConfig(), False, None),
        (FunctionConfig(on_success="a", on_failure="b"), True, "a"),
        (FunctionConfig(on_success="a", on_failure="b"), False, "b"),
        (FunctionConfig(on_failure="b"), True, None),
    ],
)
def test_which_destination(config: FunctionConfig, succeeded: bool, expected: str | None) -> None:
    assert destination(config, succeeded) == expected
