"""One instance: a sandboxed runtime process serving one function revision.

An instance runs one call at a time and belongs to exactly one executable (a
function at one version, or one revision of $LATEST) for its whole life; it
never serves another.
Any failure that may have left it in an unknown state (timeout, crash, protocol
violation) ends it: the caller then ``stop()``s it rather than reusing it.

While a call runs, the function may make requests of the platform (``call``
frames, the in-function API): one at a time, numbered, for the call in flight.
Each is handed to the ``serve`` callback of the call and its reply sent back;
the call's deadline stands meanwhile, and anything else the runtime sends
while a request is being performed is a violation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from wuzhao.domain.instances import InstanceState, can_transition
from wuzhao.domain.versions import Executable
from wuzhao.errors import (
    FunctionError,
    InitError,
    InvocationError,
    OutOfMemory,
    ResponseTooLarge,
    RuntimeExited,
    Timeout,
)
from wuzhao.runtimes import protocol
from wuzhao.runtimes.protocol import Frame, FrameTooLarge, ProtocolError
from wuzhao.sandbox.api import SandboxedProcess
from wuzhao.worker.channel import ChannelClosed, RuntimeChannel
from wuzhao.worker.output import OutputCapture

# Performs one request of the function (a ``call`` frame, already checked by
# ``protocol.check_call``) for the call whose id it gets: a task whose result is the reply's
# header fields and body (``worker/function_api.py``), never an exception.
Serve = Callable[[str, Frame], "asyncio.Future[tuple[dict[str, Any], bytes]]"]

# How long a dead runtime's process gets to be reaped before we classify the crash.
EXIT_WAIT_S = 2.0
# An idle instance is frozen this long after its call: freezing a cgroup costs
# ~70 us of the event loop, so a busy instance reused at once never pays it.
FREEZE_AFTER_S = 0.05


class Instance:
    def __init__(
        self,
        instance_id: str,
        target: Executable,
        process: SandboxedProcess,
        channel: RuntimeChannel,
        output: OutputCapture,
        uid: int,
    ) -> None:
        self.id = instance_id
        self.target = target
        self.uid = uid
        self.state = InstanceState.STARTING
        self.idle_since = time.monotonic()
        self.calls = 0
        self._process = process
        self._channel = channel
        self._output = output
        self._stopped = asyncio.Event()
        self._frozen = False
        self._freeze_timer: asyncio.TimerHandle | None = None

    def move(self, new: InstanceState) -> None:
        """Change state. An idle instance is frozen: what the function left running
        (threads, child processes) gets no CPU until the next call thaws it."""
        if not can_transition(self.state, new):
            raise RuntimeError(f"instance {self.id}: {self.state} -> {new} is not allowed")
        if self.state is InstanceState.IDLE:
            self._wake()
        self.state = new
        if new is InstanceState.IDLE:
            self.idle_since = time.monotonic()
            self._freeze_timer = asyncio.get_running_loop().call_later(FREEZE_AFTER_S, self._freeze)

    def _freeze(self) -> None:
        self._freeze_timer = None
        if self.state is InstanceState.IDLE:
            self._process.freeze()
            self._frozen = True

    def _wake(self) -> None:
        if self._freeze_timer is not None:
            self._freeze_timer.cancel()
            self._freeze_timer = None
        if self._frozen:
            self._process.thaw()
            self._frozen = False

    async def initialize(
        self,
        invocation_id: str | None,
        timeout_s: float,
        *,
        layers: Sequence[str] = (),
        max_call_bytes: int | None = None,
    ) -> None:
        """Send INIT and wait for READY; init output belongs to the call that caused it.

        ``layers``: the names of the layers mounted under /opt, in import-path order.
        ``max_call_bytes``: the largest body a ``call`` may carry (the runtime refuses a larger
        request itself, as an error in the function, rather than send it and be killed).
        """
        config = self.target.config
        self._output.begin(invocation_id)
        header: dict[str, Any] = {
            "handler": config.handler,
            "function_name": self.target.function,
            "function_version": self.target.version,
            "memory_limit_in_mb": config.memory_mb,
            "layers": list(layers),
        }
        if max_call_bytes is not None:
            header["max_call_bytes"] = max_call_bytes
        try:
            answer = self._channel.expect()
            self._channel.send(protocol.INIT, header)
            frame = await asyncio.wait_for(answer, timeout_s)
        except TimeoutError:
            raise InitError(f"the handler was not ready within {timeout_s:g} seconds") from None
        except ChannelClosed as closed:
            raise await self._crash(closed, during_init=True) from None
        finally:
            self._output.end()
        if frame.kind == protocol.INIT_ERROR:
            raise InitError(**_error_fields(frame))
        if frame.kind != protocol.READY:
            raise RuntimeExited(f"runtime answered INIT with {frame.kind!r}")

    async def invoke(self, invocation_id: str, event: bytes, serve: Serve | None = None) -> bytes:
        """Run one call; returns the result's JSON bytes or raises an InvocationError.

        ``serve`` performs the requests the function makes meanwhile (None: it may make none).
        """
        timeout_s = self.target.config.timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s
        deadline_ms = int((time.time() + timeout_s) * 1000)
        self.calls += 1
        self._output.begin(invocation_id)
        try:
            answer = self._channel.expect()
            self._channel.send(protocol.INVOKE, {"id": invocation_id, "deadline_ms": deadline_ms}, event)
            frame = await _by(answer, deadline)
            seq = 0
            while frame.kind == protocol.CALL:
                seq += 1
                frame = await self._serve(invocation_id, frame, seq, serve, deadline)
        except TimeoutError:
            self._process.kill()
            if self._channel.pending:  # it began an answer and never finished it
                raise RuntimeExited(
                    f"the runtime sent {self._channel.pending} bytes of a frame and stalled"
                ) from None
            raise Timeout(f"the call timed out after {timeout_s:.2f} seconds") from None
        except ChannelClosed as closed:
            raise await self._crash(closed, during_init=False) from None
        except ProtocolError as violation:
            self._process.kill()
            raise RuntimeExited(f"the runtime broke the protocol: {violation}") from None
        finally:
            self._output.end()
        if frame.header.get("id") != invocation_id:
            self._process.kill()
            raise RuntimeExited("the runtime answered for another call")
        if frame.kind == protocol.RESULT:
            return _checked_result(self, frame)
        if frame.kind == protocol.ERROR:
            raise FunctionError(**_error_fields(frame))
        self._process.kill()
        raise RuntimeExited(f"the runtime answered a call with {frame.kind!r}")

    async def _serve(
        self, invocation_id: str, frame: Frame, seq: int, serve: Serve | None, deadline: float
    ) -> Frame:
        """Perform the function's request ``frame`` (its ``seq``-th), reply, and return the
        runtime's next frame; all by the call's ``deadline`` (TimeoutError past it)."""
        protocol.check_call(frame.header, invocation_id, seq)
        if serve is None:
            raise ProtocolError("a call where none is served")
        # Registered now: while the request is performed, any frame is a violation (one request
        # at a time) and the runtime's death is seen at once; after the reply, the next frame.
        after = self._channel.expect()
        try:
            work = serve(invocation_id, frame)
            timer = asyncio.get_running_loop().call_at(deadline, _expire, after)
            try:
                await asyncio.wait((work, after), return_when=asyncio.FIRST_COMPLETED)
            finally:
                timer.cancel()
            if after.done():  # the deadline, the channel's end, or a frame sent out of turn
                extra = after.result()
                raise ProtocolError(f"a {extra.kind!r} frame while its call {seq} was being performed")
            header, body = work.result()
        except BaseException:  # cancelled, or given up: nobody will wait for the next frame
            after.cancel()
            raise
        self._channel.send(protocol.REPLY, {**header, "id": invocation_id, "seq": seq}, body)
        return await _by(after, deadline)

    async def stop(self) -> None:
        """Kill the instance and release everything it holds; idempotent."""
        if self.state is not InstanceState.STOPPED:
            if self._freeze_timer is not None:
                self._freeze_timer.cancel()
            self.state = InstanceState.STOPPED
            self._output.close()
            self._channel.close()
            await self._process.destroy()
            self._stopped.set()
        else:
            await self._stopped.wait()

    async def _crash(self, closed: ChannelClosed, *, during_init: bool) -> InvocationError:
        """Say why the runtime went away: out of memory, a result too large, or a crash."""
        if isinstance(closed.cause, FrameTooLarge):
            self._process.kill()
            return ResponseTooLarge(
                f"the result is {closed.cause.body_len} bytes; the limit is {closed.cause.limit}"
            )
        self._process.kill()
        status = None
        with contextlib.suppress(TimeoutError):
            status = await asyncio.wait_for(self._process.wait(), EXIT_WAIT_S)
        if self._process.oom_killed():
            memory = self.target.config.memory_mb
            return OutOfMemory(f"the function used more than its {memory} MB of memory")
        how = "the runtime broke the protocol" if closed.cause else "the runtime exited"
        if status is not None and status.signal is not None:
            how += f" (signal {status.signal})"
        elif status is not None and status.code is not None:
            how += f" (exit code {status.code})"
        if closed.cause is not None:
            how += f": {closed.cause}"
        return (InitError if during_init else RuntimeExited)(how)


def _expire(answer: asyncio.Future[Frame]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError())


async def _by(answer: asyncio.Future[Frame], deadline: float) -> Frame:
    """The frame, or TimeoutError at ``deadline`` (loop time).

    A timer on the answer itself: asyncio.wait_for wraps it in a task and a second
    future, which the warm path measurably pays for.
    """
    timer = asyncio.get_running_loop().call_at(deadline, _expire, answer)
    try:
        return await answer
    finally:
        timer.cancel()


def _error_fields(frame: Frame) -> dict[str, Any]:
    header = frame.header
    traceback = header.get("traceback")
    if not isinstance(traceback, list):
        traceback = []
    return {
        "message": str(header.get("message", ""))[:4096],
        "error_type": str(header.get("error_type", "Exception"))[:256],
        "traceback": [str(line)[:4096] for line in traceback[:200]],
    }


def _checked_result(instance: Instance, frame: Frame) -> bytes:
    # The body goes to the caller as application/json: it must be JSON.
    try:
        msgspec.json.decode(frame.body)
    except msgspec.DecodeError:
        instance._process.kill()
        raise RuntimeExited("the runtime returned a result that is not valid JSON") from None
    return frame.body
