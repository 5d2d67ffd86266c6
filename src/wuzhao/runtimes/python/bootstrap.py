"""The Python runtime loop: speaks ``wuzhao.runtimes.protocol`` on the channel.

It runs in the sandbox, after the zygote's child entered it (or, without
isolation, right after the fork): INIT -> import the handler once -> READY or
INIT_ERROR, then INVOKE -> RESULT or ERROR until the worker closes the channel.
While the handler runs, ``wuzhao.fn`` may send CALL frames on the same channel
and read their REPLY (one at a time); the answer goes out only once no call is
under way. Every module used here was imported by the zygote before the fork.

Error types follow Lambda's names where Lambda has one (``Runtime.*``), else
the exception's class name. The exit code is 0 when the worker closed the
channel, 1 after an INIT_ERROR or a protocol violation.
"""

from __future__ import annotations

import codecs
import importlib
import json
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from wuzhao import fn, heap
from wuzhao.runtimes import memfd, protocol
from wuzhao.runtimes.python.context import LambdaContext, log_stream_name

MAX_EVENT_BYTES = 1 << 30  # the worker bounds payloads; this only guards the runtime
_RECV_BYTES = 1 << 16

Handler = Callable[[Any, LambdaContext], Any]


class InitFailure(Exception):
    def __init__(self, error_type: str, message: str, trace: list[str]) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace


class Channel:
    """Blocking framed I/O on the runtime's end of the channel.

    Bodies of ``protocol.MEMFD_THRESHOLD`` bytes or more travel both ways in a
    memfd sent with the frame (``wuzhao.runtimes.memfd``); each descriptor is
    closed as soon as its body is read, so between calls the runtime holds no
    descriptor but the channel.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._decoder = protocol.FrameDecoder(MAX_EVENT_BYTES, protocol.WORKER_KINDS)
        self._frames: list[protocol.Frame] = []

    def receive(self) -> protocol.Frame | None:
        """The next frame from the worker, or None once it closed the channel.

        An ``invoke`` whose event is in a memfd comes with its ``fd``: :func:`parse_event`
        reads it.
        """
        while not self._frames:
            data, ancillary, flags, _ = self._sock.recvmsg(
                _RECV_BYTES, protocol.ANCILLARY_BYTES, socket.MSG_CMSG_CLOEXEC
            )
            fds = protocol.received_fds(ancillary) if ancillary else ()
            if not data or flags & socket.MSG_CTRUNC:
                for fd in fds:
                    protocol.discard(fd)
                if data:
                    raise protocol.ProtocolError("more descriptors in one read than one frame carries")
                if self._decoder.pending:
                    raise protocol.ProtocolError("channel closed inside a frame")
                return None
            self._frames = self._decoder.feed(data, fds)
        frame = self._frames.pop(0)
        if frame.fd is not None and frame.kind not in (protocol.INVOKE, protocol.REPLY):
            protocol.discard(frame.fd)
            raise protocol.ProtocolError(f"a memfd body with {frame.kind}: only an event or a reply")
        return frame

    def send(self, kind: str, header: dict[str, Any], body: bytes = b"") -> None:
        # The worker attributes log bytes to a call by ordering: everything the
        # call printed must be in the pipes before its answer is on the channel.
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        if len(body) < protocol.MEMFD_THRESHOLD:
            self._sock.sendall(protocol.encode(kind, header, body))
            return
        try:
            fd = memfd.make(body, "wuzhao-result")
        except OSError:  # no memfd (out of descriptors or memory): inline
            self._sock.sendall(protocol.encode(kind, header, body))
            return
        try:
            data = protocol.encode(kind, {**header, protocol.MEMFD: len(body)})
            sent = self._sock.sendmsg([data], protocol.fds_message([fd]))
            self._sock.sendall(data[sent:])
        finally:
            os.close(fd)  # the frame in flight holds the memfd now


def _user_trace(tb: TracebackType | None) -> list[str]:
    """Formatted frames of ``tb`` minus the runtime's and importlib's own."""
    frames = [
        f
        for f in traceback.extract_tb(tb)
        if f.filename != __file__ and not f.filename.startswith("<frozen importlib")
    ]
    return traceback.format_list(frames)


def import_path(task_root: str, layers: object, layer_dirs: Mapping[str, str]) -> list[str]:
    """Where the function's modules are found, first to last, before the standard library.

    The task root, then for each layer INIT names, in its order, the layer's
    ``python`` directory (a Lambda layer zip holds ``python/...``) and the
    layer's root, those that exist. ``layer_dirs`` says where each layer is
    (``/opt/<name>`` in a sandbox); a name it does not know is skipped.
    """
    return [task_root, *layer_path(layers, layer_dirs)]


def layer_path(layers: object, layer_dirs: Mapping[str, str]) -> list[str]:
    """The import path of ``layers`` (names, in order): each one's ``python`` directory, then its root."""
    paths = []
    for name in layers if isinstance(layers, list) else []:
        directory = layer_dirs.get(name) if isinstance(name, str) else None
        if directory is not None:
            paths += [p for p in (f"{directory}/python", directory) if os.path.isdir(p)]
    return paths


def load_handler(name: str, task_root: str) -> Handler:
    """Import ``module.function`` (``dir/module.function`` accepted) once."""
    module_name, _, function_name = name.rpartition(".")
    if not module_name or not function_name:
        raise InitFailure("Runtime.MalformedHandlerName", f"Bad handler '{name}'", [])
    module_name = module_name.replace("/", ".")
    if task_root not in sys.path:
        sys.path.insert(0, task_root)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        message = f"Unable to import module '{module_name}': {exc}"
        raise InitFailure("Runtime.ImportModuleError", message, []) from None
    except SyntaxError as exc:
        message = f"Syntax error in module '{module_name}': {exc}"
        raise InitFailure("Runtime.UserCodeSyntaxError", message, []) from None
    except Exception as exc:
        trace = _user_trace(exc.__traceback__)
        raise InitFailure(type(exc).__name__, str(exc), trace) from None
    handler = getattr(module, function_name, None)
    if not callable(handler):
        message = f"Handler '{function_name}' missing on module '{module_name}'"
        raise InitFailure("Runtime.HandlerNotFound", message, [])
    return handler  # type: ignore[no-any-return]


def _error(request_id: str, error_type: str, message: str, trace: list[str]) -> dict[str, Any]:
    return {"id": request_id, "error_type": error_type, "message": message, "traceback": trace}


def parse_event(frame: protocol.Frame) -> Any:
    """The event of an ``invoke``: JSON in its body, or in its memfd (then closed).

    From a memfd it is decoded straight from the mapped pages, as ``json.loads``
    would decode bytes (same encoding detection and error handler), so no copy
    of the bytes is made and none outlives the parse.
    """
    if frame.fd is None:
        return json.loads(frame.body) if frame.body else None
    with memfd.mapped(frame.fd, frame.memfd_length) as view:
        text = codecs.decode(view, json.detect_encoding(view[:4]), "surrogatepass") if view else ""
    return json.loads(text) if text else None


def invoke(
    channel: Channel, handler: Handler, frame: protocol.Frame, init: dict[str, Any], stream: str
) -> None:
    request_id = str(frame.header["id"])
    context = LambdaContext(
        request_id=request_id,
        deadline_ms=int(frame.header["deadline_ms"]),
        function_name=str(init["function_name"]),
        function_version=str(init["function_version"]),
        memory_limit_in_mb=int(init["memory_limit_in_mb"]),
        log_stream_name=stream,
    )
    try:
        event = parse_event(frame)
    except (ValueError, RecursionError) as exc:
        error = _error(request_id, "Runtime.UnmarshalError", f"Unable to parse event: {exc}", [])
        channel.send(protocol.ERROR, error)
        return
    pid = os.getpid()
    limit = init.get("max_call_bytes")
    failure: Exception | None = None
    # wuzhao.fn's requests go out for this call; leaving waits for one another thread has under way.
    with fn.serving(channel, request_id, max_body=limit if type(limit) is int else None) as session:
        try:
            result = handler(event, context)
        except Exception as exc:
            failure = exc
    if os.getpid() != pid:
        os._exit(1 if failure else 0)  # a fork the handler made must never answer for the runtime
    if session.broken is not None:  # the channel failed under a request: nothing can follow
        raise protocol.ProtocolError(f"the channel broke during a call: {session.broken}")
    if failure is not None:
        trace = _user_trace(failure.__traceback__)
        channel.send(protocol.ERROR, _error(request_id, type(failure).__name__, str(failure), trace))
        return
    try:
        body = json.dumps(result, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        message = f"Unable to marshal response: {exc}"
        channel.send(protocol.ERROR, _error(request_id, "Runtime.MarshalError", message, []))
        return
    channel.send(protocol.RESULT, {"id": request_id}, body)


def run(channel_fd: int, task_root: str, layer_dirs: Mapping[str, str] | None = None) -> int:
    """Serve the channel until the worker closes it; returns the exit code."""
    heap.keep_warm()  # a warm instance decodes large events in memory it already has
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.dont_write_bytecode = True  # the code is read-only; don't even try
    sys.argv = [""]  # not the zygote's command line
    sys.orig_argv = [sys.executable]
    channel = Channel(socket.socket(fileno=channel_fd))
    frame = channel.receive()
    if frame is None:
        return 0
    if frame.kind != protocol.INIT:
        raise protocol.ProtocolError(f"expected {protocol.INIT}, got {frame.kind}")
    init = frame.header
    paths = import_path(task_root, init.get("layers", []), layer_dirs or {})
    sys.path[:0] = [p for p in dict.fromkeys(paths) if p not in sys.path]
    try:
        handler = load_handler(str(init["handler"]), task_root)
    except InitFailure as failure:
        header = {"error_type": failure.error_type, "message": failure.message}
        channel.send(protocol.INIT_ERROR, {**header, "traceback": failure.trace})
        return 1
    channel.send(protocol.READY, {})
    stream = log_stream_name(str(init["function_version"]), os.urandom(16).hex(), time.time())
    while (frame := channel.receive()) is not None:
        if frame.kind != protocol.INVOKE:
            raise protocol.ProtocolError(f"unexpected {frame.kind} after init")
        invoke(channel, handler, frame, init, stream)
    return 0
