"""The in-function API, the worker's side: what a running function asks of the platform.

A function calls ``wuzhao.fn`` (``put_object``, ``publish``, ``invoke``...); its
runtime sends a ``call`` frame on the runtime channel, the instance hands it
here (``worker/instance.py``), and the answer goes back as a ``reply`` frame.
The function never holds an address or a key: who is calling is known from the
instance the frame came from, never from the frame, so every operation acts
as that function, in its namespace, and nowhere else:

- objects through ``control.objects.Objects``, the one way into the store,
  with the call's chain as the change's ``cause``: an object trigger fired by a
  function's write continues that chain, which is what stops a function that
  writes into the bucket that triggers it (``domain/chains.py``);
- messages through ``Notifications.publish``, with the same cause;
- other functions: synchronously through ``Worker.invoke`` under the chain
  extended by one call (a loop is refused as ``RecursiveLoop``), or
  asynchronously through ``Deliveries`` (a loop is recorded as a dead call, as
  for every delivery).

Every error becomes an error reply, which the runtime raises in the function
as an exception; nothing a function sends can fail the worker. Sizes are
bounded both ways: what the function sends by the channel's frame limit (the
response cap), what it gets back by ``max_request_bytes`` (the largest event
the worker sends into an instance).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from wuzhao.config import Settings
from wuzhao.control.objects import Objects, object_view
from wuzhao.domain import chains, platform_calls
from wuzhao.domain.chains import Chain
from wuzhao.domain.platform_calls import (
    DeleteObject,
    GetObject,
    Invoke,
    ListObjects,
    PutObject,
    Request,
)
from wuzhao.domain.versions import Executable
from wuzhao.errors import PayloadTooLarge, RecursiveLoop, WuzhaoError
from wuzhao.observe.metrics import Metrics
from wuzhao.runtimes import protocol
from wuzhao.runtimes.protocol import Frame
from wuzhao.worker.deliveries import Deliveries
from wuzhao.worker.notifications import Notifications

if TYPE_CHECKING:
    from wuzhao.worker.worker import Worker

log = logging.getLogger("wuzhao.function_api")

# The header fields and body of a reply (without id and seq, which the instance adds).
Reply = tuple[dict[str, Any], bytes]
# The current executable of (namespace, function, qualifier); NotFound once gone.
Resolver = Callable[[str, str, str | None], Executable]
MAX_MESSAGE_CHARS = 1024  # of an error reply's message: it travels in the frame's header
MAX_FIELD_CHARS = 256


@dataclass(frozen=True)
class Caller:
    """The running call that makes a request: the instance knows it, the frame never says it."""

    namespace: str
    function: str
    invocation_id: str
    chain: Chain


class FunctionApi:
    def __init__(
        self,
        settings: Settings,
        *,
        objects: Objects,
        notifications: Notifications,
        deliveries: Deliveries,
        resolve: Resolver,
        worker: Worker,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._objects = objects
        self._notifications = notifications
        self._deliveries = deliveries
        self._resolve = resolve
        self._worker = worker
        self._metrics = metrics
        # Operations under way. One outlives its caller's deadline (the caller is killed, the
        # operation finishes: a write half done or a callee cut short would be worse), so they
        # are kept here, and ``close`` waits for them before the stores close.
        self._running: set[asyncio.Task[Reply]] = set()

    def start(self, caller: Caller, frame: Frame) -> asyncio.Task[Reply]:
        """Perform the request of ``frame`` (a ``call`` already checked by
        ``protocol.check_call``) for ``caller``; the task's result is the reply, never an error."""
        task = asyncio.get_running_loop().create_task(self._perform(caller, frame))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def close(self) -> None:
        """Wait for the operations under way (each is bounded: a callee's timeout at most)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def _perform(self, caller: Caller, frame: Frame) -> Reply:
        op = str(frame.header["op"])
        try:
            request = platform_calls.parse(op, frame.header, frame.body)
            reply = await self._do(caller, request, frame.header["seq"])
        except WuzhaoError as error:
            reply = error_reply(error)
        except Exception:  # a bug of ours: the function gets an error, the worker carries on
            log.exception("%s of %s/%s failed", op, caller.namespace, caller.function)
            reply = error_reply(WuzhaoError(f"{op} failed inside the platform"))
        if self._metrics is not None:
            label = op if op in protocol.OPS else "unknown"  # a function names no label
            outcome = "ok" if reply[0]["ok"] else reply[0]["error"]["code"]
            self._metrics.function_api_call(caller.namespace, caller.function, label, outcome)
        return reply

    async def _do(self, caller: Caller, request: Request, seq: int) -> Reply:
        namespace, cause = caller.namespace, caller.chain
        if isinstance(request, PutObject):
            record, created = await self._objects.put(
                namespace,
                request.bucket,
                request.key,
                _one_chunk(request.data),
                content_type=request.content_type,
                metadata=request.metadata,
                declared_size=len(request.data),
                cause=cause,
            )
            return {"ok": True, "object": object_view(record), "created": created}, b""
        if isinstance(request, GetObject):
            return await self._get(namespace, request)
        if isinstance(request, DeleteObject):
            await self._objects.delete(namespace, request.bucket, request.key, cause=cause)
            return {"ok": True}, b""
        if isinstance(request, ListObjects):
            page = await self._objects.list(
                namespace, request.bucket, prefix=request.prefix, after=request.after, limit=request.limit
            )
            listing = {"objects": [object_view(r) for r in page.objects], "next": page.next}
            return {"ok": True}, msgspec.json.encode(listing)
        if isinstance(request, Invoke):
            if request.asynchronous:
                return await self._invoke_async(caller, request, seq)
            return await self._invoke(caller, request)
        published = await self._notifications.publish(
            namespace, request.topic, request.message, request.attributes, cause=cause
        )
        return {"ok": True, "message_id": published.message_id, "deliveries": published.deliveries}, b""

    async def _get(self, namespace: str, request: GetObject) -> Reply:
        limit = self._settings.max_request_bytes
        reader = await self._objects.read(namespace, request.bucket, request.key)
        try:
            record = reader.record
            if record.size > limit:  # refused before a byte is read
                raise PayloadTooLarge(
                    f"object {record.key!r} is {record.size} bytes; a function reads at most {limit} "
                    "(WUZHAO_MAX_REQUEST_BYTES)"
                )
            data = bytearray()
            async for chunk in reader.chunks():
                data += chunk
        finally:
            await reader.close()
        return {"ok": True, "object": object_view(record)}, bytes(data)

    async def _invoke(self, caller: Caller, request: Invoke) -> Reply:
        target = self._resolve(caller.namespace, request.function, request.qualifier)
        try:
            chain = chains.extend(caller.chain, target.function, limit=chains.limit_of(target.config))
        except RecursiveLoop as error:
            log.warning(
                "call of %s/%s by %s not made: %s",
                caller.namespace,
                target.function,
                caller.invocation_id,
                error.message,
            )
            if self._metrics is not None:
                self._metrics.recursive_loop(caller.namespace, target.function)
            raise
        outcome = await self._worker.invoke(target, request.event, chain=chain)
        if outcome.error is not None:  # the callee's error, with the id of its record and logs
            return error_reply(outcome.error, invocation_id=outcome.invocation_id)
        result = outcome.result or b"null"
        if len(result) > self._settings.max_request_bytes:
            raise PayloadTooLarge(
                f"the result of {target.function!r} is {len(result)} bytes; a function receives at most "
                f"{self._settings.max_request_bytes} (WUZHAO_MAX_REQUEST_BYTES)",
                invocation_id=outcome.invocation_id,
            )
        header = {"ok": True, "invocation_id": outcome.invocation_id, "version": outcome.version}
        return header, result

    async def _invoke_async(self, caller: Caller, request: Invoke, seq: int) -> Reply:
        target = self._resolve(caller.namespace, request.function, request.qualifier)  # 404 now
        # The same call of a retried attempt (same place among its calls, same callee and event)
        # makes no second call: the queue answers the first one's id.
        digest = hashlib.sha256(
            f"{target.function}\0{request.qualifier or ''}\0".encode() + request.event
        ).hexdigest()[:32]
        delivery = await self._deliveries.send(
            caller.namespace,
            target.function,
            request.event,
            qualifier=request.qualifier,
            idempotency_key=f"fn:{caller.invocation_id}:{seq}:{digest}",
            cause=caller.chain,
            origin={"caller": caller.invocation_id},
        )
        if delivery.created and not delivery.stopped and self._metrics is not None:
            self._metrics.async_outcome(caller.namespace, target.function, "accepted")
        # A loop is not the caller's error: the call is recorded dead (RecursiveLoop), as an
        # asynchronous call's fate always is, and its id says so.
        return {"ok": True, "invocation_id": delivery.call_id}, b""


def error_reply(error: WuzhaoError, **extra: Any) -> Reply:
    """An error as a reply: code, message (and field) in the header, the rest (a callee's error
    type and traceback...) as a JSON object in the body, where its size cannot break the header's
    limit (a message is cut to ``MAX_MESSAGE_CHARS`` there, and whole in the body)."""
    body = error.to_body()["error"]
    summary: dict[str, Any] = {"code": error.code, "message": error.message[:MAX_MESSAGE_CHARS]}
    if error.field is not None:
        summary["field"] = str(error.field)[:MAX_FIELD_CHARS]
    details = {k: v for k, v in body.items() if k not in ("code", "message", "field")}
    if len(error.message) > MAX_MESSAGE_CHARS:
        details["message"] = error.message
    details.update(extra)
    return {"ok": False, "error": summary}, msgspec.json.encode(details) if details else b""


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data
