"""Destinations: the record of a finished asynchronous call, sent on to another function.

A function's ``on_success`` gets the record of each call that succeeded, its
``on_failure`` the record of each call that went dead (retries used up, or the
event too old). The record has Lambda's shape, so handlers written for Lambda
destinations read it unchanged::

    {"version": "1.0", "timestamp": "...",
     "requestContext": {"requestId", "functionArn", "condition", "approximateInvokeCount"},
     "requestPayload": <the event>,
     "responseContext": {"statusCode", "executedVersion", "functionError"?},
     "responsePayload": <the result, or the error>}

It is enqueued as an asynchronous call of the destination, with that
function's own retries, and continues the chain of the call it tells of
(``domain/chains.py``): functions that name each other (or themselves) are
stopped by the loop rule once the chain has called one of them
``max_chain_calls`` times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from wuzhao.domain.functions import FunctionConfig
from wuzhao.domain.timestamps import iso_ms

SUCCESS = "Success"
FUNCTION_REF = "wuzhao:function:{namespace}:{function}:{qualifier}"  # Lambda's functionArn, our way


@dataclass(frozen=True)
class Finished:
    """A call at its end, as its destination record needs it."""

    call_id: str
    namespace: str
    function: str
    qualifier: str | None
    event: bytes
    version: str  # what ran last: $LATEST or a number
    attempts: int
    condition: str  # SUCCESS or a retries.Reason
    result: bytes | None = None  # the function's answer (success)
    error: dict[str, Any] | None = None  # the last error (failure)
    status: int = 200  # the HTTP status the attempt would have answered


def destination(config: FunctionConfig, succeeded: bool) -> str | None:
    return config.on_success if succeeded else config.on_failure


def record(finished: Finished, *, now: float, limit: int) -> bytes:
    """The record's JSON, at most ``limit`` bytes: the response, then the request payload,
    give way (null, with ``truncated`` naming them) when it would be larger."""
    body: dict[str, Any] = {
        "version": "1.0",
        "timestamp": iso_ms(now),
        "requestContext": {
            "requestId": finished.call_id,
            "functionArn": FUNCTION_REF.format(
                namespace=finished.namespace,
                function=finished.function,
                qualifier=finished.qualifier or "$LATEST",
            ),
            "condition": finished.condition,
            "approximateInvokeCount": finished.attempts,
        },
        "requestPayload": msgspec.Raw(finished.event),
        "responseContext": {"statusCode": finished.status, "executedVersion": finished.version},
        "responsePayload": msgspec.Raw(finished.result) if finished.result is not None else finished.error,
    }
    if finished.error is not None:
        body["responseContext"]["functionError"] = finished.error.get("code", "Unhandled")
    encoded = msgspec.json.encode(body)
    truncated: list[str] = []
    for field in ("responsePayload", "requestPayload"):
        if len(encoded) <= limit:
            break
        body[field] = None
        truncated.append(field)
        body["truncated"] = truncated
        encoded = msgspec.json.encode(body)
    return encoded
