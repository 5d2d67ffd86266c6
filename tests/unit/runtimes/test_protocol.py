import contextlib
import itertools
import json
import os
import socket
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wuzhao.runtimes import protocol
from wuzhao.runtimes.protocol import (
    ANCILLARY_BYTES,
    MAX_HEADER_BYTES,
    MEMFD,
    PREFIX,
    RUNTIME_KINDS,
    WORKER_KINDS,
    Frame,
    FrameDecoder,
    FrameTooLarge,
    ProtocolError,
    discard,
    encode,
    encode_parts,
    fds_message,
    received_fds,
)

MAX_BODY = 1024
FUZZ = settings(database=None, deadline=None, max_examples=300)


def raw_frame(header: bytes, body: bytes = b"") -> bytes:
    return PREFIX.pack(len(header), len(body)) + header + body


def split_at(data: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({p for p in points if 0 < p < len(data)})
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def decode_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[Frame]:
    frames = []
    for chunk in chunks:
        frames.extend(decoder.feed(chunk))
    return frames


SAMPLE = [
    (protocol.READY, {}, b""),
    (protocol.RESULT, {"id": "inv-1"}, b'{"answer": 42}'),
    (protocol.ERROR, {"id": "inv-2", "error_type": "ValueError", "message": "ü ✓"}, b""),
    (protocol.RESULT, {"id": "inv-3"}, bytes(range(256))),
]


def test_encode_layout() -> None:
    data = encode(protocol.INVOKE, {"id": "x", "deadline_ms": 5}, b"{}")
    header_len, body_len = struct.unpack(">II", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    assert header == {"id": "x", "deadline_ms": 5, "type": "invoke"}
    assert body_len == 2
    assert data[8 + header_len :] == b"{}"


def test_encode_parts_joins_to_encode() -> None:
    for kind, header, body in SAMPLE:
        parts = encode_parts(kind, header, body)
        assert len(parts) == 3
        assert parts[2] is body  # the body is not copied
        assert b"".join(parts) == encode(kind, header, body)


def test_kind_argument_wins_over_a_type_in_the_header() -> None:
    data = encode(protocol.RESULT, {"type": "init", "id": "a"})
    (frame,) = FrameDecoder(max_body=MAX_BODY).feed(data)
    assert frame.kind == protocol.RESULT


def test_encode_does_not_mutate_the_given_header() -> None:
    header = {"id": "a"}
    encode(protocol.RESULT, header)
    encode_parts(protocol.RESULT, header, b"")
    assert header == {"id": "a"}


def test_round_trip_of_several_frames_in_one_feed() -> None:
    data = b"".join(encode(k, h, b) for k, h, b in SAMPLE)
    decoder = FrameDecoder(max_body=MAX_BODY, allowed=RUNTIME_KINDS)
    frames = decoder.feed(data)
    assert [(f.kind, f.body) for f in frames] == [(k, b) for k, _, b in SAMPLE]
    assert frames[1].header == {"id": "inv-1", "type": "result"}
    assert frames[2].header["message"] == "ü ✓"
    assert decoder.pending == 0


def test_byte_at_a_time() -> None:
    data = b"".join(encode(k, h, b) for k, h, b in SAMPLE)
    decoder = FrameDecoder(max_body=MAX_BODY)
    frames = decode_all(decoder, [data[i : i + 1] for i in range(len(data))])
    assert [f.body for f in frames] == [b for _, _, b in SAMPLE]


@FUZZ
@given(
    frames=st.lists(
        st.tuples(
            st.sampled_from(sorted(RUNTIME_KINDS)),
            st.dictionaries(
                st.text(max_size=8).filter(lambda key: key != MEMFD),  # reserved: a memfd body
                st.one_of(st.integers(), st.text(max_size=20)),
                max_size=4,
            ),
            st.binary(max_size=MAX_BODY),
        ),
        min_size=1,
        max_size=6,
    ),
    points=st.lists(st.integers(min_value=0, max_value=8000), max_size=30),
)
def test_any_split_gives_the_same_frames(
    frames: list[tuple[str, dict[str, object], bytes]], points: list[int]
) -> None:
    data = b"".join(b"".join(encode_parts(k, h, b)) for k, h, b in frames)
    expected = FrameDecoder(max_body=MAX_BODY).feed(data)
    decoder = FrameDecoder(max_body=MAX_BODY, allowed=RUNTIME_KINDS)
    assert decode_all(decoder, split_at(data, points)) == expected
    assert [(f.kind, f.body) for f in expected] == [(k, b) for k, _, b in frames]
    assert decoder.pending == 0


def test_partial_frame_gives_nothing_and_counts_pending() -> None:
    data = encode(protocol.RESULT, {"id": "a"}, b"x" * 100)
    decoder = FrameDecoder(max_body=MAX_BODY)
    assert decoder.feed(data[:3]) == []
    assert decoder.pending == 3
    assert decoder.feed(data[3:-1]) == []
    assert decoder.pending == len(data) - 1
    (frame,) = decoder.feed(data[-1:])
    assert frame.body == b"x" * 100
    assert decoder.pending == 0


def test_a_whole_frame_and_a_partial_one() -> None:
    first = encode(protocol.READY)
    second = encode(protocol.RESULT, {"id": "b"}, b"body")
    decoder = FrameDecoder(max_body=MAX_BODY)
    frames = decoder.feed(first + second[:10])
    assert [f.kind for f in frames] == [protocol.READY]
    assert decoder.pending == 10


def test_body_at_exactly_max_body_is_accepted() -> None:
    (frame,) = FrameDecoder(max_body=10).feed(encode(protocol.RESULT, {}, b"0123456789"))
    assert frame.body == b"0123456789"


def test_header_at_exactly_max_header_bytes_is_accepted() -> None:
    header = {"pad": ""}
    overhead = len(json.dumps({"pad": "", "type": "ready"}, separators=(",", ":")))
    header["pad"] = "p" * (MAX_HEADER_BYTES - overhead)
    data = encode(protocol.READY, header)
    assert struct.unpack(">I", data[:4])[0] == MAX_HEADER_BYTES
    (frame,) = FrameDecoder(max_body=0).feed(data)
    assert frame.kind == protocol.READY


@pytest.mark.parametrize(
    ("header_len", "body_len"),
    [(0, 0), (0, 5), (MAX_HEADER_BYTES + 1, 0), (2**32 - 1, 0)],
)
def test_header_length_out_of_range_is_refused_from_the_prefix_alone(header_len: int, body_len: int) -> None:
    decoder = FrameDecoder(max_body=MAX_BODY)
    with pytest.raises(ProtocolError) as info:
        decoder.feed(PREFIX.pack(header_len, body_len))
    assert not isinstance(info.value, FrameTooLarge)
    assert "header length" in str(info.value)


@pytest.mark.parametrize("body_len", [MAX_BODY + 1, 20 * 1024 * 1024, 2**32 - 1])
def test_body_over_max_body_is_refused_from_the_prefix_alone(body_len: int) -> None:
    decoder = FrameDecoder(max_body=MAX_BODY)
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(PREFIX.pack(20, body_len))
    assert info.value.body_len == body_len
    assert info.value.limit == MAX_BODY
    assert isinstance(info.value, ProtocolError)


@pytest.mark.parametrize(
    "header",
    [
        b"\xff\xfe{}",  # not UTF-8
        b"\xc3",  # truncated UTF-8
        b"not json",
        b"{",
        b"[]",
        b'"ready"',
        b"42",
        b"null",
        b"{}",  # no type
        b'{"type": 1}',
        b'{"type": null}',
        b'{"type": ["ready"]}',
        b'{"kind": "ready"}',
    ],
)
def test_malformed_headers_are_protocol_errors(header: bytes) -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder(max_body=MAX_BODY).feed(raw_frame(header))


def test_frame_kind_not_allowed_is_refused() -> None:
    decoder = FrameDecoder(max_body=MAX_BODY, allowed=RUNTIME_KINDS)
    with pytest.raises(ProtocolError, match="invoke"):
        decoder.feed(encode(protocol.INVOKE, {"id": "x"}))


@pytest.mark.parametrize("kind", sorted(WORKER_KINDS))
def test_worker_kinds_decode_on_the_runtime_side(kind: str) -> None:
    (frame,) = FrameDecoder(max_body=MAX_BODY, allowed=WORKER_KINDS).feed(encode(kind))
    assert frame.kind == kind


def test_any_kind_is_accepted_without_an_allowed_set() -> None:
    (frame,) = FrameDecoder(max_body=MAX_BODY).feed(encode("custom"))
    assert frame.kind == "custom"


def test_kinds_are_disjoint() -> None:
    assert not RUNTIME_KINDS & WORKER_KINDS


# Arbitrary input: mostly garbage, sometimes valid frames, so the decoder gets deep.
chunks = st.lists(
    st.one_of(
        st.binary(max_size=64),
        st.builds(
            lambda k, b: encode(k, {"id": "x"}, b),
            st.sampled_from([*sorted(RUNTIME_KINDS), protocol.INVOKE]),
            st.binary(max_size=80),
        ),
        st.builds(
            lambda h, b: PREFIX.pack(h, b),
            st.integers(0, MAX_HEADER_BYTES + 2),
            st.integers(0, 2**32 - 1),
        ),
    ),
    max_size=20,
)


@FUZZ
@given(chunks=chunks)
def test_fuzz_only_frames_or_protocol_errors(chunks: list[bytes]) -> None:
    max_body = 64
    decoder = FrameDecoder(max_body=max_body, allowed=RUNTIME_KINDS)
    fed = b""
    try:
        for chunk in chunks:
            fed += chunk
            for frame in decoder.feed(chunk):
                assert frame.kind in RUNTIME_KINDS
                assert len(frame.body) <= max_body
            # What stays buffered is less than one frame within the limits; and
            # a prefix that is held has already passed the limit checks, so a
            # rejected frame is never buffered past its 8-byte prefix.
            assert decoder.pending < PREFIX.size + MAX_HEADER_BYTES + max_body
            if decoder.pending >= PREFIX.size:
                header_len, body_len = PREFIX.unpack_from(fed[len(fed) - decoder.pending :])
                assert 0 < header_len <= MAX_HEADER_BYTES
                assert body_len <= max_body
    except ProtocolError:
        pass


# Bodies in a memfd: descriptors that come with the bytes (FrameDecoder.feed's fds).


def open_fd() -> int:
    """A real descriptor for the decoder to hold (and, on a violation, close)."""
    return os.memfd_create("test", os.MFD_CLOEXEC)


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def memfd_frame(length: int, kind: str = protocol.RESULT, body: bytes = b"", **header: object) -> bytes:
    return encode(kind, {"id": "a", MEMFD: length, **header}, body)


def test_a_memfd_frame_takes_the_descriptor_sent_with_it() -> None:
    fd = open_fd()
    (frame,) = FrameDecoder(max_body=MAX_BODY).feed(memfd_frame(42), [fd])
    assert (frame.fd, frame.body, frame.memfd_length) == (fd, b"", 42)
    assert is_open(fd)  # the receiver's now
    os.close(fd)


def test_an_inline_frame_has_no_descriptor_and_length_zero() -> None:
    (frame,) = FrameDecoder(max_body=MAX_BODY).feed(encode(protocol.RESULT, {"id": "a"}, b"1"))
    assert (frame.fd, frame.memfd_length) == (None, 0)


def test_the_descriptor_waits_for_the_rest_of_its_frame() -> None:
    fd = open_fd()
    data = memfd_frame(7)
    decoder = FrameDecoder(max_body=MAX_BODY)
    assert decoder.feed(data[:5], [fd]) == []  # it came with the first bytes
    assert decoder.feed(data[5:-1]) == []
    (frame,) = decoder.feed(data[-1:])
    assert frame.fd == fd
    os.close(fd)


def test_a_frame_then_the_next_ones_descriptor_in_one_read() -> None:
    fd = open_fd()
    data = encode(protocol.READY) + memfd_frame(3)
    ready, result = FrameDecoder(max_body=MAX_BODY).feed(data, [fd])
    assert (ready.fd, result.fd) == (None, fd)
    os.close(fd)


def test_descriptors_go_to_announcing_frames_in_order() -> None:
    first, second = open_fd(), open_fd()
    decoder = FrameDecoder(max_body=MAX_BODY)
    one = decoder.feed(memfd_frame(1) + memfd_frame(2)[:4], [first])
    two = decoder.feed(memfd_frame(2)[4:], [second])
    assert [f.fd for f in one + two] == [first, second]
    os.close(first)
    os.close(second)


VIOLATIONS = {
    # name: (bytes, how many descriptors come with them, what the error says)
    "announced-but-missing": (memfd_frame(4), 0, "did not arrive"),
    "not-announced": (encode(protocol.RESULT, {"id": "a"}, b"1"), 1, "announced none"),
    "two-for-one-frame": (memfd_frame(4), 2, "no frame announced"),
    "two-for-a-partial-frame": (memfd_frame(4)[:6], 2, "no frame announced"),
    "inline-body-too": (memfd_frame(4, body=b"1234"), 1, "inline body"),
    "length-not-an-int": (memfd_frame("4"), 1, "not a length"),  # type: ignore[arg-type]
    "length-a-bool": (memfd_frame(True), 1, "not a length"),  # type: ignore[arg-type]
    "length-negative": (memfd_frame(-1), 1, "not a length"),
    "after-a-good-frame": (memfd_frame(4) + encode(protocol.READY), 2, "announced none"),
}


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_descriptor_violations_are_protocol_errors_and_close_every_descriptor(name: str) -> None:
    data, count, message = VIOLATIONS[name]
    fds = [open_fd() for _ in range(count)]
    with pytest.raises(ProtocolError, match=message):
        FrameDecoder(max_body=MAX_BODY).feed(data, fds)
    assert not any(is_open(fd) for fd in fds)


def test_a_memfd_over_max_body_is_frame_too_large_from_the_header() -> None:
    fd = open_fd()
    with pytest.raises(FrameTooLarge) as info:
        FrameDecoder(max_body=MAX_BODY).feed(memfd_frame(20 * 1024 * 1024), [fd])
    assert (info.value.body_len, info.value.limit) == (20 * 1024 * 1024, MAX_BODY)
    assert not is_open(fd)


def test_a_descriptor_of_an_earlier_read_is_closed_with_a_later_error() -> None:
    fd = open_fd()
    decoder = FrameDecoder(max_body=MAX_BODY)
    decoder.feed(memfd_frame(4)[:3], [fd])
    with pytest.raises(ProtocolError):
        decoder.feed(b"\xff" * 40)
    assert not is_open(fd)


def test_close_closes_what_a_partial_frame_holds() -> None:
    fd = open_fd()
    decoder = FrameDecoder(max_body=MAX_BODY)
    decoder.feed(memfd_frame(4)[:3], [fd])
    assert is_open(fd)
    decoder.close()
    assert not is_open(fd)


def test_received_fds_reads_scm_rights_and_fds_message_makes_it() -> None:
    ours, theirs = socket.socketpair()
    fd = open_fd()
    with ours, theirs:
        ours.sendmsg([b"x"], fds_message([fd]))
        data, ancillary, flags, _ = theirs.recvmsg(16, ANCILLARY_BYTES, socket.MSG_CMSG_CLOEXEC)
    (got,) = received_fds(ancillary)
    assert (data, flags & socket.MSG_CTRUNC) == (b"x", 0)
    assert os.fstat(got).st_ino == os.fstat(fd).st_ino
    assert fds_message([]) == []
    assert received_fds([]) == []
    os.close(got)
    os.close(fd)


def test_discard_closes_a_lingering_socket_without_waiting() -> None:
    """close() of the last reference to a socket with SO_LINGER and unsent data
    blocks for the linger time: a runtime could stall the worker with one."""
    with socket.create_server(("127.0.0.1", 0)) as listener:  # never accepts, never reads
        sender = socket.create_connection(listener.getsockname())
        sender.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:  # fill the peer's receive buffer, then our send buffer
                sender.send(b"x" * 65536)
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 30))
        fd = sender.detach()
        started = time.monotonic()
        discard(fd)
        assert time.monotonic() - started < 5
        assert not is_open(fd)


def test_discard_of_a_closed_descriptor_is_quiet() -> None:
    fd = open_fd()
    os.close(fd)
    discard(fd)


# Requests of the function (the in-function API): which call frames are sound.


def test_calls_go_from_the_runtime_and_replies_from_the_worker() -> None:
    assert protocol.CALL in RUNTIME_KINDS
    assert protocol.REPLY in WORKER_KINDS
    assert protocol.INVOKE_FUNCTION in protocol.OPS


@pytest.mark.parametrize("seq", [1, 2, 17])
def test_the_next_call_of_the_invocation_in_flight_is_sound(seq: int) -> None:
    header = {"type": "call", "id": "inv-1", "seq": seq, "op": "get_object", "bucket": "b"}
    assert protocol.check_call(header, "inv-1", seq) == "get_object"


def test_an_op_unknown_to_the_worker_is_still_a_sound_frame() -> None:
    assert protocol.check_call({"id": "i", "seq": 1, "op": "tomorrows_op"}, "i", 1) == "tomorrows_op"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"seq": 1, "op": "get_object"}, "another invocation"),
        ({"id": "inv-2", "seq": 1, "op": "get_object"}, "another invocation"),
        ({"id": 7, "seq": 1, "op": "get_object"}, "another invocation"),
        ({"id": "inv-1", "op": "get_object"}, "where 1 was next"),
        ({"id": "inv-1", "seq": 2, "op": "get_object"}, "where 1 was next"),
        ({"id": "inv-1", "seq": 0, "op": "get_object"}, "where 1 was next"),
        ({"id": "inv-1", "seq": "1", "op": "get_object"}, "where 1 was next"),
        ({"id": "inv-1", "seq": True, "op": "get_object"}, "where 1 was next"),
        ({"id": "inv-1", "seq": 1.0, "op": "get_object"}, "where 1 was next"),
        ({"id": "inv-1", "seq": 1}, "without an 'op'"),
        ({"id": "inv-1", "seq": 1, "op": 5}, "without an 'op'"),
        ({"id": "inv-1", "seq": 1, "op": ""}, "without an 'op'"),
        ({"id": "inv-1", "seq": 1, "op": "x" * 65}, "without an 'op'"),
    ],
)
def test_a_call_out_of_turn_or_without_an_op_is_a_violation(header: dict[str, object], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        protocol.check_call(header, "inv-1", 1)
