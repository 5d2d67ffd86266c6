"""Routes that read what happened: one invocation's record (an asynchronous call's whole life), a
function's logs."""

from __future__ import annotations

import datetime
import math
import re
import time
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from wuzhao.domain.access import Action
from wuzhao.domain.timestamps import iso
from wuzhao.errors import BadRequest, NotFound
from wuzhao.gateway.context import authorize, platform_of
from wuzhao.gateway.responses import json_response
from wuzhao.queue.api import CallState
from wuzhao.store.api import LogLine

INVOCATION_LOG_TAIL = 100
MAX_SEQ = 2**63 - 1  # log sequence numbers are SQLite integers
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


async def get_invocation(request: Request) -> Response:
    platform = platform_of(request)
    invocation_id = request.path_params["id"]
    namespace = authorize(request, Action.READ)
    state = await platform.queue.get(invocation_id)
    if state is not None:  # an asynchronous call: its life in the queue, every attempt
        if state.call.namespace != namespace:
            raise NotFound(f"invocation {invocation_id!r} does not exist")
        return json_response(call_view(state))
    running = platform.worker.inflight.get(invocation_id)
    if running is not None and running.target.namespace == namespace:
        return json_response(
            {
                "id": invocation_id,
                "function": running.target.function,
                "version": running.target.version,
                "revision": running.target.revision,
                "status": "running",
                "started_at": iso(running.started_at),
                "duration_ms": None,
                "cold_start": running.cold_start,
                "error": None,
                "logs": [],
            }
        )
    await platform.recorder.flush()  # the call may have just finished: read our own writes
    record = await platform.store.get_invocation(invocation_id)
    if record is None or record.namespace != namespace:
        raise NotFound(f"invocation {invocation_id!r} does not exist")
    logs = await platform.store.invocation_logs(invocation_id, limit=INVOCATION_LOG_TAIL)
    return json_response(
        {
            "id": record.id,
            "function": record.function,
            "version": record.version,
            "revision": record.revision,
            "status": record.status,
            "started_at": iso(record.started_at),
            "duration_ms": record.duration_ms,
            "init_duration_ms": record.init_duration_ms,
            "cold_start": record.cold_start,
            "error": record.error,
            "logs": [_line(line) for line in logs],
        }
    )


async def get_logs(request: Request) -> Response:
    platform = platform_of(request)
    name = request.path_params["name"]
    namespace = authorize(request, Action.READ)
    platform.registry.get(namespace, name)  # 404 for an unknown function
    query = request.query_params
    since = parse_since(query["since"], now=time.time()) if query.get("since") else None
    after = query_int(query, "after", None, minimum=0, maximum=MAX_SEQ)
    limit = query_int(query, "limit", 100, minimum=1, maximum=1000) or 100
    await platform.recorder.flush()
    lines = await platform.store.query_logs(namespace, name, since=since, after=after, limit=limit)
    return json_response({"logs": [_line(line) for line in lines], "next": lines[-1].seq if lines else after})


def parse_since(value: str, *, now: float) -> float:
    """A point in time from ISO 8601, unix seconds, or a duration ago (``10m``, ``2h``)."""
    value = value.strip()
    match = _DURATION.match(value)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):  # float() also takes "nan" and "inf"
            return seconds
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"since={value!r} is not an ISO 8601 time, unix seconds or a duration like 10m", field="since"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def query_int(
    query: Any, name: str, default: int | None, *, minimum: int, maximum: int | None = None
) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}={raw!r} is not a whole number", field=name) from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise BadRequest(f"{name} must be {bounds}", field=name)
    return value


def _line(line: LogLine) -> dict[str, Any]:
    return {
        "seq": line.seq,
        "timestamp": iso(line.timestamp),
        "invocation_id": line.invocation_id,
        "stream": line.stream,
        "message": line.message,
    }


def call_view(state: CallState) -> dict[str, Any]:
    """An asynchronous call as ``GET /v1/invocations/{id}`` and the dead-letter routes show it."""
    call = state.call
    return {
        "id": call.id,
        "namespace": call.namespace,
        "function": call.function,
        "qualifier": call.qualifier,
        "status": state.status,
        "async": True,
        "enqueued_at": iso(call.enqueued_at),
        "updated_at": iso(state.updated_at),
        "ordering_key": call.ordering_key,
        "attempts": [
            {
                "number": attempt.number,
                "started_at": iso(attempt.started_at),
                "duration_ms": attempt.duration_ms,
                "outcome": attempt.outcome,
                "error": attempt.error,
            }
            for attempt in state.attempts
        ],
        "result": msgspec.Raw(state.result) if state.result is not None else None,
        "error": state.error,
    }
