"""``wuzhao.fn``, the in-function API, on the runtime's side: requests framed and numbered, replies
read back (errors as exceptions), one request at a time across threads, and nothing outside an
invocation.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from wuzhao import fn
from wuzhao.runtimes import memfd, protocol
from wuzhao.runtimes.protocol import Frame
from wuzhao.runtimes.python import bootstrap


@dataclass
class FakeChannel:
    """The worker, as the runtime's channel shows it: each request answered by ``answer``."""

    answer: Callable[[dict[str, Any], bytes], tuple[dict[str, Any], bytes]] = lambda header, body: (
        {"ok": True},
        b"",
    )
    sent: list[tuple[str, dict[str, Any], bytes]] = field(default_factory=list)
    pending: list[Frame | None] = field(default_factory=list)
    busy: bool = False
    overlapped: bool = False

    def send(self, kind: str, header: dict[str, Any], body: bytes = b"") -> None:
        protocol.encode(kind, header, body)  # as the real channel: a header that is not JSON raises
        if self.busy:
            self.overlapped = True
        self.busy = True
        self.sent.append((kind, header, body))
        reply, reply_body = self.answer(header, body)
        self.pending.append(
            Frame({"type": protocol.REPLY, "id": header["id"], "seq": header["seq"], **reply}, reply_body)
        )

    def receive(self) -> Frame | None:
        time.sleep(0.001)  # room for another thread to barge in, were the lock missing
        self.busy = False
        return self.pending.pop(0)


@pytest.fixture
def channel() -> Iterator[FakeChannel]:
    fake = FakeChannel()
    with fn.serving(fake, "inv-1", max_body=1000):
        yield fake


def test_outside_an_invocation_fn_raises_not_in_invocation() -> None:
    with pytest.raises(fn.NotInInvocation, match="only while a handler runs") as info:
        fn.get_object("box", "k")
    assert info.value.code == "NotInInvocation"
    assert isinstance(info.value, fn.PlatformError)


def test_each_request_is_a_numbered_call_of_the_invocation(channel: FakeChannel) -> None:
    channel.answer = lambda header, body: ({"ok": True, "object": {"key": header.get("key")}}, b"")
    assert fn.put_object("box", "a.txt", "héllo") == {"key": "a.txt"}
    fn.put_object("box", "b.bin", b"\x00\x01", "application/x-b", metadata={"m": "1"})
    fn.put_object("box", "c.bin", bytearray(b"c"))
    fn.delete_object("box", "a.txt")
    assert [(kind, header, body) for kind, header, body in channel.sent] == [
        (
            "call",
            {
                "bucket": "box",
                "key": "a.txt",
                "content_type": "text/plain; charset=utf-8",
                "id": "inv-1",
                "seq": 1,
                "op": "put_object",
            },
            "héllo".encode(),
        ),
        (
            "call",
            {
                "bucket": "box",
                "key": "b.bin",
                "content_type": "application/x-b",
                "metadata": {"m": "1"},
                "id": "inv-1",
                "seq": 2,
                "op": "put_object",
            },
            b"\x00\x01",
        ),
        ("call", {"bucket": "box", "key": "c.bin", "id": "inv-1", "seq": 3, "op": "put_object"}, b"c"),
        ("call", {"bucket": "box", "key": "a.txt", "id": "inv-1", "seq": 4, "op": "delete_object"}, b""),
    ]


def test_results_are_decoded(channel: FakeChannel) -> None:
    answers = {
        "get_object": ({"ok": True, "object": {}}, b"\xffbytes"),
        "list_objects": ({"ok": True}, b'{"objects": [{"key": "a"}, {"key": "b"}], "next": "b"}'),
        "publish": ({"ok": True, "message_id": "m-1", "deliveries": 2}, b""),
    }
    channel.answer = lambda header, body: answers.get(header["op"], ({"ok": True}, b""))
    assert fn.get_object("box", "k") == b"\xffbytes"
    assert fn.list_objects("box", prefix="a", after="0", limit=2) == [{"key": "a"}, {"key": "b"}]
    assert channel.sent[-1][1] == {
        "bucket": "box",
        "prefix": "a",
        "limit": 2,
        "after": "0",
        "id": "inv-1",
        "seq": 2,
        "op": "list_objects",
    }
    assert fn.publish("orders", {"n": 1}, {"kind": "x"}) == "m-1"
    assert channel.sent[-1][1:] == (
        {"topic": "orders", "attributes": {"kind": "x"}, "id": "inv-1", "seq": 3, "op": "publish"},
        b'{"n": 1}',
    )


def test_invoke_returns_the_result_or_the_call_s_id(channel: FakeChannel) -> None:
    def answer(header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        if header["async"]:
            return {"ok": True, "invocation_id": "async-1"}, b""
        return {"ok": True, "invocation_id": "sync-1", "version": "$LATEST"}, b'{"got":' + (
            body or b"{}"
        ) + b"}"

    channel.answer = answer
    assert fn.invoke("other", {"n": 1}) == {"got": {"n": 1}}
    assert fn.invoke("other") == {"got": {}}
    assert fn.invoke("other", [1], async_=True, qualifier="live") == "async-1"
    assert [(h["function"], h["async"], h.get("qualifier"), b) for _, h, b in channel.sent] == [
        ("other", False, None, b'{"n":1}'),
        ("other", False, None, b""),
        ("other", True, "live", b"[1]"),
    ]


@pytest.mark.parametrize(
    ("error", "body", "cls"),
    [
        ({"code": "NotFound", "message": "gone"}, b"", fn.NotFound),
        ({"code": "BadRequest", "message": "bad", "field": "key"}, b"", fn.BadRequest),
        ({"code": "InvalidJSON", "message": "bad", "field": "event"}, b"", fn.InvalidJSON),
        ({"code": "RecursiveLoop", "message": "loop"}, b"", fn.RecursiveLoop),
        ({"code": "QuotaExceeded", "message": "full"}, b"", fn.QuotaExceeded),
        ({"code": "Timeout", "message": "slow"}, b'{"invocation_id": "c-1"}', fn.Timeout),
        ({"code": "SomethingNew", "message": "?"}, b"", fn.PlatformError),
        ({}, b"not json", fn.PlatformError),
    ],
)
def test_an_error_reply_raises_the_exception_of_its_code(
    channel: FakeChannel, error: dict[str, Any], body: bytes, cls: type[fn.PlatformError]
) -> None:
    channel.answer = lambda header, _: ({"ok": False, "error": error}, body)
    with pytest.raises(fn.PlatformError) as info:
        fn.get_object("box", "k")
    assert type(info.value) is cls
    assert info.value.code == error.get("code", "InternalError")
    assert info.value.message == error.get("message", "")
    assert info.value.field == error.get("field")
    assert str(info.value) == f"{info.value.code}: {info.value.message}"


def test_a_callee_s_failure_carries_its_error(channel: FakeChannel) -> None:
    details = {
        "error_type": "ValueError",
        "traceback": ["  File x\n"],
        "invocation_id": "c-1",
        "message": "no " * 500,
    }
    channel.answer = lambda header, _: (
        {"ok": False, "error": {"code": "FunctionError", "message": "no " * 10}},
        json.dumps(details).encode(),
    )
    with pytest.raises(fn.FunctionError) as info:
        fn.invoke("other", {})
    error = info.value
    assert isinstance(error, fn.InvocationError)
    assert (error.error_type, error.traceback, error.invocation_id) == ("ValueError", ["  File x\n"], "c-1")
    assert error.message == "no " * 500  # the whole message, from the body


def test_a_request_over_the_worker_s_limit_is_refused_before_it_is_sent(channel: FakeChannel) -> None:
    with pytest.raises(fn.PayloadTooLarge, match="1001 bytes"):
        fn.put_object("box", "k", b"x" * 1001)
    fn.put_object("box", "k", b"x" * 1000)
    assert [header["seq"] for _, header, _ in channel.sent] == [1]


def test_values_that_are_not_json_raise_type_error_and_send_nothing(channel: FakeChannel) -> None:
    with pytest.raises(TypeError):
        fn.invoke("other", {"when": object()})
    with pytest.raises(TypeError):
        fn.get_object("box", object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fn.put_object("box", "k", 42)  # type: ignore[arg-type]
    fn.delete_object("box", "k")
    assert [header["seq"] for _, header, _ in channel.sent] == [1]  # nothing was numbered before


def test_a_broken_channel_fails_the_request_and_marks_the_session() -> None:
    fake = FakeChannel()
    fake.receive = lambda: None  # type: ignore[method-assign]
    with fn.serving(fake, "inv-1") as session:
        with pytest.raises(fn.PlatformError, match="channel broke"):
            fn.get_object("box", "k")
        with pytest.raises(fn.PlatformError, match="is broken"):
            fn.get_object("box", "k")
    assert session.broken is not None


def test_a_reply_to_another_request_breaks_the_session() -> None:
    fake = FakeChannel()
    fake.receive = lambda: Frame({"type": "reply", "id": "inv-1", "seq": 9, "ok": True})  # type: ignore[method-assign]
    with fn.serving(fake, "inv-1") as session, pytest.raises(fn.PlatformError, match="reply to call 1"):
        fn.get_object("box", "k")
    assert session.broken is not None


def test_threads_take_turns_on_the_channel(channel: FakeChannel) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for i in range(10):
                fn.put_object("box", f"k{i}", b"x")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert not channel.overlapped
    assert [header["seq"] for _, header, _ in channel.sent] == list(range(1, 81))


def test_the_invocation_ends_after_a_request_under_way_and_a_late_one_is_refused() -> None:
    released = threading.Event()
    fake = FakeChannel()

    def slow_receive() -> Frame | None:
        released.wait(5)
        return fake.pending.pop(0)

    fake.receive = slow_receive  # type: ignore[method-assign]
    results: list[Any] = []
    background = threading.Thread(target=lambda: results.append(fn.get_object("box", "k")))
    with fn.serving(fake, "inv-1"):
        background.start()
        while not fake.sent:
            time.sleep(0.001)
        threading.Timer(0.2, released.set).start()
        started = time.monotonic()
    waited = time.monotonic() - started
    background.join()
    assert waited >= 0.15  # the handler's answer waited for the reply
    assert results == [b""]
    with pytest.raises(fn.NotInInvocation):
        fn.get_object("box", "k")


def test_a_request_from_inside_a_request_of_the_same_thread_is_refused(channel: FakeChannel) -> None:
    inner: list[BaseException] = []

    def answer(header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        try:
            fn.get_object("box", "inner")  # as a signal handler running mid-request would
        except fn.PlatformError as exc:
            inner.append(exc)
        return {"ok": True}, b""

    channel.answer = answer
    fn.get_object("box", "outer")
    assert len(inner) == 1 and "under way" in str(inner[0])
    assert len(channel.sent) == 1


def test_a_forked_process_cannot_use_fn(channel: FakeChannel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fn.os, "getpid", lambda: -1)
    with pytest.raises(fn.NotInInvocation, match="forked"):
        fn.get_object("box", "k")
    assert channel.sent == []


# The Python runtime's loop: the handler's requests on a real socket, the test playing the worker.


def worker_side(sock: socket.socket, replies: list[tuple[dict[str, Any], bytes]]) -> list[Frame]:
    """Answer one request per reply given, then read the invocation's answer; every frame seen."""
    decoder = protocol.FrameDecoder(1 << 30, protocol.RUNTIME_KINDS)
    frames: list[Frame] = []
    answers = iter(replies)
    while not frames or frames[-1].kind == protocol.CALL:
        data, ancillary, _, _ = sock.recvmsg(1 << 16, protocol.ANCILLARY_BYTES)
        for frame in decoder.feed(data, protocol.received_fds(ancillary)):
            if frame.fd is not None:
                frame = Frame(frame.header, memfd.take(frame.fd, frame.memfd_length))
            frames.append(frame)
            if frame.kind == protocol.CALL:
                header, body = next(answers)
                header = {**header, "id": frame.header["id"], "seq": frame.header["seq"]}
                if len(body) >= protocol.MEMFD_THRESHOLD:
                    fd = memfd.reserve(len(body), "reply")
                    memfd.fill(fd, body)
                    sock.sendmsg(
                        [protocol.encode(protocol.REPLY, {**header, protocol.MEMFD: len(body)})],
                        protocol.fds_message([fd]),
                    )
                else:
                    sock.sendall(protocol.encode(protocol.REPLY, header, body))
    return frames


INIT = {
    "function_name": "f",
    "function_version": "$LATEST",
    "memory_limit_in_mb": 128,
    "max_call_bytes": 1 << 20,
}


def run_invoke(handler: bootstrap.Handler, replies: list[tuple[dict[str, Any], bytes]]) -> list[Frame]:
    runtime, worker = socket.socketpair()
    try:
        seen: list[list[Frame]] = []
        thread = threading.Thread(target=lambda: seen.append(worker_side(worker, replies)))
        thread.start()
        frame = Frame({"type": "invoke", "id": "inv-1", "deadline_ms": 0}, b"{}")
        bootstrap.invoke(bootstrap.Channel(runtime), handler, frame, INIT, "stream")
        thread.join(10)
        return seen[0]
    finally:
        runtime.close()
        worker.close()


def test_the_runtime_serves_the_handler_s_requests_then_answers() -> None:
    big = bytes(range(256)) * 1024  # a reply in a memfd

    def handler(event: Any, context: Any) -> Any:
        data = fn.get_object("box", "big")
        return {"size": len(data), "same": data == big, "sum": fn.invoke("adder", [1, 2])}

    frames = run_invoke(handler, [({"ok": True}, big), ({"ok": True}, b"3")])
    assert [f.kind for f in frames] == ["call", "call", "result"]
    assert json.loads(frames[-1].body) == {"size": len(big), "same": True, "sum": 3}


def test_a_large_request_goes_out_in_a_sealed_memfd() -> None:
    data = b"z" * (protocol.MEMFD_THRESHOLD + 10)

    def handler(event: Any, context: Any) -> Any:
        return fn.put_object("box", "k", data)

    frames = run_invoke(handler, [({"ok": True, "object": {"size": len(data)}}, b"")])
    call, result = frames
    assert call.body == data  # read from the memfd by memfd.take, which checks its seals
    assert json.loads(result.body) == {"size": len(data)}


def test_an_uncaught_platform_error_fails_the_handler_with_its_code() -> None:
    def handler(event: Any, context: Any) -> Any:
        return fn.get_object("box", "missing")

    frames = run_invoke(
        handler, [({"ok": False, "error": {"code": "NotFound", "message": "no such key"}}, b"")]
    )
    assert frames[-1].kind == protocol.ERROR
    assert (frames[-1].header["error_type"], frames[-1].header["message"]) == (
        "NotFound",
        "NotFound: no such key",
    )


def test_the_runtime_exits_when_the_channel_broke_under_a_request() -> None:
    runtime, worker = socket.socketpair()

    def handler(event: Any, context: Any) -> Any:
        worker.close()  # the worker goes away while the request waits for its reply
        with contextlib.suppress(fn.PlatformError):  # swallowed: the runtime must not carry on
            fn.get_object("box", "k")
        return "fine"

    try:
        frame = Frame({"type": "invoke", "id": "inv-1", "deadline_ms": 0}, b"{}")
        with pytest.raises(protocol.ProtocolError, match="broke during a call"):
            bootstrap.invoke(bootstrap.Channel(runtime), handler, frame, INIT, "stream")
    finally:
        runtime.close()


def test_fn_imports_only_what_a_sandbox_has() -> None:
    """Inside a sandbox there is the standard library and the wuzhao package, nothing else."""
    code = (
        "import sys; before = set(sys.modules); import wuzhao.fn; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    outside = [
        name
        for name in loaded.split()
        if name.split(".")[0] not in sys.stdlib_module_names
        and name
        not in ("wuzhao", "wuzhao.fn", "wuzhao.runtimes", "wuzhao.runtimes.protocol", "wuzhao.runtimes.memfd")
    ]
    assert outside == []
    assert "wuzhao.fn" in loaded.split()
