"""Rows of the queue's tables to and from the contract's structs (JSON through msgspec)."""

from __future__ import annotations

from typing import Any, cast

import msgspec

from wuzhao.queue.api import AsyncCall, Attempt, CallState, Status

# The columns of an AsyncCall, in the order of its constructor, then the event (from ``events``).
CALL = (
    "c.id, c.namespace, c.function, c.enqueued_at, c.qualifier, c.ordering_key,"
    " c.idempotency_key, c.lease_s, c.origin, e.event"
)
_CALL_WIDTH = 10
# A CallState: the call, then where it is.
STATE = (
    CALL + ", c.status, c.attempts, c.due_at, c.updated_at, c.result, c.error, c.retries_used, c.hold_key,"
    " c.deliveries"
)
FROM = "calls c JOIN events e ON e.seq = c.seq"

_encoder = msgspec.json.Encoder()
_attempts = msgspec.json.Decoder(list[Attempt])
_object = msgspec.json.Decoder(dict[str, Any])


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def encode_object(value: dict[str, Any] | None) -> bytes | None:
    return None if not value else _encoder.encode(value)


def decode_object(blob: bytes | None) -> dict[str, Any] | None:
    return None if blob is None else _object.decode(blob)


def decode_attempts(blob: bytes | None) -> list[Attempt]:
    return [] if blob is None else _attempts.decode(blob)


def call_from(row: Any) -> AsyncCall:
    return AsyncCall(
        id=row[0],
        namespace=row[1],
        function=row[2],
        enqueued_at=row[3],
        qualifier=row[4],
        ordering_key=row[5],
        idempotency_key=row[6],
        lease_s=row[7],
        origin=decode_object(row[8]) or {},
        event=bytes(row[9]),
    )


def state_from(row: Any) -> CallState:
    status, attempts, due_at, updated_at, result, error, retries_used, hold_key, deliveries = row[
        _CALL_WIDTH:
    ]
    return CallState(
        call=call_from(row),
        status=cast(Status, status),
        attempts=tuple(decode_attempts(attempts)),
        due_at=due_at,
        updated_at=updated_at,
        result=None if result is None else bytes(result),
        error=decode_object(error),
        retries_used=retries_used,
        hold_key=bool(hold_key),
        deliveries=deliveries,
    )
