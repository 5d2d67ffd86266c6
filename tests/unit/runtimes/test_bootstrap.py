"""The Python runtime: its import path (the task root, then each layer INIT names) and its
end of the channel."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from wuzhao.runtimes import memfd, protocol
from wuzhao.runtimes.python.bootstrap import Channel, import_path, parse_event


def test_each_layer_adds_its_python_dir_and_its_root_in_init_order(tmp_path: Path) -> None:
    for name in ("sci", "lib", "bare"):
        (tmp_path / name).mkdir()
    (tmp_path / "sci" / "python").mkdir()
    (tmp_path / "lib" / "python").mkdir()
    dirs = {name: str(tmp_path / name) for name in ("sci", "lib", "bare")}
    assert import_path("/var/task", ["lib", "sci", "bare"], dirs) == [
        "/var/task",
        f"{tmp_path}/lib/python",
        f"{tmp_path}/lib",
        f"{tmp_path}/sci/python",
        f"{tmp_path}/sci",
        f"{tmp_path}/bare",  # no python/ in it: only its root
    ]


def test_unknown_missing_or_malformed_layers_add_nothing(tmp_path: Path) -> None:
    dirs = {"gone": str(tmp_path / "gone"), "x": str(tmp_path)}
    assert import_path("/var/task", ["gone", "unknown", 7, None], dirs) == ["/var/task"]
    assert import_path("/var/task", "x", dirs) == ["/var/task"]  # not a list
    assert import_path("/var/task", [], {}) == ["/var/task"]


# The runtime's end of the channel: bodies in memfds both ways.


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def channel_pair() -> Iterator[tuple[Channel, socket.socket]]:
    """The runtime's Channel on one end of a socketpair; the test plays the worker on the other."""
    runtime, worker = socket.socketpair()
    channel = Channel(runtime)
    yield channel, worker
    runtime.close()
    worker.close()


def invoke_frame(event: bytes, fd: int | None = None) -> tuple[bytes, list[int]]:
    header = {"id": "i-1", "deadline_ms": 0}
    if fd is None:
        return protocol.encode(protocol.INVOKE, header, event), []
    return protocol.encode(protocol.INVOKE, {**header, protocol.MEMFD: len(event)}), [fd]


def worker_memfd(event: bytes) -> int:
    fd = memfd.reserve(len(event) + 4096, "wuzhao-event")
    memfd.fill(fd, event)
    return fd


def test_a_large_result_goes_in_a_sealed_memfd_and_the_runtime_keeps_no_copy(channel_pair) -> None:
    channel, worker = channel_pair
    body = json.dumps("é" * protocol.MEMFD_THRESHOLD).encode()
    before = open_fds()
    channel.send(protocol.RESULT, {"id": "i-1"}, body)
    assert open_fds() == before
    data, ancillary, _, _ = worker.recvmsg(65536, protocol.ANCILLARY_BYTES)
    (frame,) = protocol.FrameDecoder(max_body=1 << 30).feed(data, protocol.received_fds(ancillary))
    assert frame.header == {"id": "i-1", "type": protocol.RESULT, protocol.MEMFD: len(body)}
    assert frame.fd is not None
    assert os.readlink(f"/proc/self/fd/{frame.fd}") == "/memfd:wuzhao-result (deleted)"
    assert memfd.take(frame.fd, frame.memfd_length) == body


def test_a_small_result_goes_inline(channel_pair) -> None:
    channel, worker = channel_pair
    body = b"1" * (protocol.MEMFD_THRESHOLD - 1)
    channel.send(protocol.RESULT, {"id": "i-1"}, body)
    frames: list[protocol.Frame] = []
    decoder = protocol.FrameDecoder(max_body=1 << 30)
    while not frames:
        data, ancillary, _, _ = worker.recvmsg(1 << 20, protocol.ANCILLARY_BYTES)
        assert ancillary == []
        frames = decoder.feed(data)
    assert frames[0].body == body


def test_an_event_in_a_memfd_is_decoded_in_place_and_its_descriptor_closed(channel_pair) -> None:
    channel, worker = channel_pair
    event = {"blob": "ü" * 100_000, "n": [1, 2.5, None]}
    raw = json.dumps(event).encode()
    fd = worker_memfd(raw)
    before = open_fds()
    data, fds = invoke_frame(raw, fd)
    worker.sendmsg([data], protocol.fds_message(fds))
    frame = channel.receive()
    assert frame is not None and frame.fd is not None
    assert parse_event(frame) == event
    assert open_fds() == before  # the received descriptor and the mapping's are closed
    os.close(fd)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-32-le"])
def test_an_event_from_a_memfd_decodes_as_json_loads_decodes_bytes(channel_pair, encoding: str) -> None:
    channel, worker = channel_pair
    raw = json.dumps({"text": "naïve ✓ 😀"}, ensure_ascii=False).encode(encoding)
    fd = worker_memfd(raw)
    data, fds = invoke_frame(raw, fd)
    worker.sendmsg([data], protocol.fds_message(fds))
    frame = channel.receive()
    assert frame is not None
    assert parse_event(frame) == json.loads(raw)
    os.close(fd)


def test_an_inline_event_is_parsed_from_the_body(channel_pair) -> None:
    channel, worker = channel_pair
    worker.sendall(invoke_frame(b'{"a": 1}')[0])
    frame = channel.receive()
    assert frame is not None
    assert parse_event(frame) == {"a": 1}


def test_a_memfd_with_another_frame_than_invoke_is_a_protocol_error(channel_pair) -> None:
    channel, worker = channel_pair
    fd = worker_memfd(b"{}")
    worker.sendmsg([protocol.encode(protocol.INIT, {protocol.MEMFD: 2})], protocol.fds_message([fd]))
    before = open_fds() - {str(fd)}
    with pytest.raises(protocol.ProtocolError, match="only an event"):
        channel.receive()
    assert open_fds() - {str(fd)} == before
    os.close(fd)
