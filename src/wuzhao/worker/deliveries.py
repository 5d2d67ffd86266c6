"""Deliveries: the asynchronous calls the platform makes because of something else.

A trigger's event (an object changed, a message published) and a
destination's record are queued like a client's asynchronous call, with two
differences:

- each is idempotent by a key its cause names (the change and the trigger,
  the message and the trigger, the finished call): a cause delivered again
  (a hook tried again, a call re-run after a crash) makes no second call;
- each continues the chain of calls of its cause (``domain/chains.py``), or
  starts one when its cause is not a call (a client's upload or publish).

When the chain has already called the function ``max_chain_calls`` times, the
call is not made. It is enqueued ``dead`` instead, with the error
``RecursiveLoop`` (``queue/api.py``, guarantee 7), so that it can be read like
any dead letter (``GET /v1/invocations/{id}``, ``wuzhao dlq ls``), and it is
logged and counted (``wuzhao_recursive_loops_total``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wuzhao.config import Settings
from wuzhao.domain import chains
from wuzhao.domain.chains import Chain
from wuzhao.domain.versions import Executable
from wuzhao.errors import NotFound, RecursiveLoop
from wuzhao.observe.metrics import Metrics
from wuzhao.queue.api import AsyncCall, AsyncQueue

log = logging.getLogger("wuzhao.deliveries")

LONGEST_TIMEOUT_S = 900  # the lease of a call whose function or qualifier does not resolve (now)
LEASE_MARGIN_S = 30.0  # a lease outlasts the function's timeout, start and throttle wait by this
# The current executable of (namespace, function, qualifier); NotFound once gone.
Resolver = Callable[[str, str, str | None], Executable]


@dataclass(frozen=True)
class Delivery:
    call_id: str  # the call made, or the first one its idempotency key made
    created: bool  # False: an earlier delivery of the same cause made it
    stopped: bool = False  # not made: a loop, recorded dead (RecursiveLoop)


class Deliveries:
    def __init__(
        self,
        queue: AsyncQueue,
        settings: Settings,
        *,
        resolve: Resolver,
        metrics: Metrics | None = None,
        wake: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._settings = settings
        self._resolve = resolve
        self._metrics = metrics
        self._wake = wake
        self._clock = clock

    async def send(
        self,
        namespace: str,
        function: str,
        event: bytes,
        *,
        idempotency_key: str | None,
        cause: Chain | None,
        qualifier: str | None = None,
        ordering_key: str | None = None,
        origin: Mapping[str, Any] | None = None,
    ) -> Delivery:
        """Queue a call of ``function`` (at ``qualifier``) with ``event``, durably when it returns.

        ``cause``: the chain of the call that caused it (None: no call did; it starts a
        chain). ``origin``: more to keep in the call's origin (the trigger's name...).
        """
        call_id = str(uuid.uuid4())
        try:
            config = self._resolve(namespace, function, qualifier).config
            timeout_s, limit = config.timeout_s, chains.limit_of(config)
        except NotFound:  # queued all the same: it goes dead when leased, visibly (or waits for it)
            timeout_s, limit = LONGEST_TIMEOUT_S, chains.DEFAULT_LIMIT
        stopped: RecursiveLoop | None = None
        if cause is None:
            chain = chains.start(function, call_id)
        else:
            try:
                chain = chains.extend(cause, function, limit=limit)
            except RecursiveLoop as error:
                chain, stopped = cause, error
        call = AsyncCall(
            id=call_id,
            namespace=namespace,
            function=function,
            event=event,
            enqueued_at=self._clock(),
            qualifier=qualifier,
            ordering_key=ordering_key,
            idempotency_key=idempotency_key,
            lease_s=lease_seconds(self._settings, timeout_s),
            origin={**chain.to_origin(), **(origin or {})},
        )
        dead = stopped.to_body()["error"] if stopped is not None else None
        stored_id, created = await self._queue.enqueue(call, dead=dead)
        if created and stopped is None:
            self._wake()
        elif created and stopped is not None:
            log.warning("call %s of %s/%s not made: %s", stored_id, namespace, function, stopped.message)
            if self._metrics is not None:
                self._metrics.recursive_loop(namespace, function)
                self._metrics.async_outcome(namespace, function, "dead")
        return Delivery(stored_id, created, stopped is not None)


def lease_seconds(settings: Settings, timeout_s: float) -> float:
    """How long one attempt may hold a call: it cannot last longer, so a lease still held
    after this means its process died or hung, and the call may be leased again."""
    return timeout_s + settings.init_timeout_s + settings.throttle_wait_s + LEASE_MARGIN_S
