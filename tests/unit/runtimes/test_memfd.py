"""Frame bodies in memfds: what each side writes, and what the reader checks before it reads."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wuzhao.runtimes import memfd
from wuzhao.runtimes.protocol import ProtocolError

BODY = b'{"blob": "' + b"x" * 300_000 + b'"}'


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def seals(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_GET_SEALS)


@pytest.fixture
def sealed() -> Callable[..., int]:
    """Factory: a memfd holding ``data`` with ``seals`` (default: what the runtime must send)."""

    def make(data: bytes = BODY, seals: int = memfd.FROM_RUNTIME, size: int | None = None) -> int:
        fd = os.memfd_create("test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.write(fd, data)
        if size is not None:
            os.ftruncate(fd, size)
        if seals:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        return fd

    return make


@pytest.fixture
def tmpfs_file(tmp_path: Path) -> Iterator[int]:
    """A regular file of a tmpfs (what a sandbox's /tmp is): it supports seals, but has only F_SEAL_SEAL."""
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    path = Path("/dev/shm") / f"wuzhao-test-{os.getpid()}"
    path.write_bytes(BODY)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    path.unlink()
    yield fd
    if is_open(fd):
        os.close(fd)


def test_make_holds_the_body_sealed_for_good() -> None:
    fd = memfd.make(BODY, "result")
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == "/memfd:result (deleted)"
        assert seals(fd) == memfd.SEALED
        assert os.pread(fd, len(BODY) + 1, 0) == BODY
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"y", 0)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 1)
    finally:
        os.close(fd)


def test_take_reads_the_body_and_closes() -> None:
    fd = memfd.make(BODY, "result")
    assert memfd.take(fd, len(BODY)) == BODY
    assert not is_open(fd)


def test_take_of_an_empty_body() -> None:
    fd = memfd.make(b"", "result")
    assert memfd.take(fd, 0) == b""
    assert not is_open(fd)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("unsealed", "not a memfd sealed"),
        ("writable", "not a memfd sealed"),  # shrink and grow sealed, not write
        ("shorter", "announced"),
        ("longer", "announced"),
        ("huge-sparse", "announced"),
        ("pipe", "not a memfd sealed"),
        ("tmpfs-file", "not a memfd sealed"),
        ("closed", "cannot be examined"),
    ],
)
def test_take_refuses_anything_but_a_sealed_memfd_of_the_announced_size(
    kind: str, message: str, sealed: Callable[..., int], tmpfs_file: int
) -> None:
    if kind == "unsealed":
        fd = sealed(seals=0)
    elif kind == "writable":
        fd = sealed(seals=fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    elif kind == "shorter":
        fd = sealed(BODY[:-1])
    elif kind == "longer":
        fd = sealed(BODY + b" ")
    elif kind == "huge-sparse":  # never read: its size alone refuses it
        fd = sealed(b"", size=1 << 40)
    elif kind == "pipe":
        fd, write_end = os.pipe()
        os.write(write_end, BODY[:1000])
        os.close(write_end)
    elif kind == "tmpfs-file":
        fd = tmpfs_file
    else:
        fd = sealed()
        os.close(fd)
    with pytest.raises(ProtocolError, match=message):
        memfd.take(fd, len(BODY))
    assert not is_open(fd)


def test_reserve_has_a_capacity_nobody_can_raise() -> None:
    fd = memfd.reserve(1 << 20, "event")
    try:
        assert os.fstat(fd).st_size == 1 << 20
        assert seals(fd) == memfd.RESERVED
        memfd.fill(fd, BODY)
        assert os.pread(fd, len(BODY), 0) == BODY
        with pytest.raises(PermissionError):
            memfd.fill(fd, b"x" * ((1 << 20) + 1))
        with pytest.raises(PermissionError):  # and no further seal: the worker may always shrink it
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    finally:
        os.close(fd)


def test_fill_raises_once_the_peer_shrank_it() -> None:
    fd = memfd.reserve(1 << 20, "event")
    peer = os.dup(fd)
    os.ftruncate(peer, 10)
    with pytest.raises(PermissionError):  # past the end is growing it
        memfd.fill(fd, BODY)
    os.close(peer)
    os.close(fd)


def test_revoke_frees_the_pages_a_kept_descriptor_would_pin() -> None:
    fd = memfd.reserve(1 << 20, "event")
    memfd.fill(fd, BODY)
    kept = os.dup(fd)  # as a runtime could keep it
    memfd.revoke(fd)
    assert not is_open(fd)
    assert os.fstat(kept).st_size == 0
    with pytest.raises(PermissionError):  # and it cannot grow back
        os.pwrite(kept, b"x", 0)
    os.close(kept)


def test_mapped_reads_in_place_and_keeps_nothing() -> None:
    fd = memfd.reserve(1 << 20, "event")
    memfd.fill(fd, BODY)
    before = set(os.listdir("/proc/self/fd"))
    sent = os.dup(fd)  # what the runtime receives
    with memfd.mapped(sent, len(BODY)) as view:
        assert bytes(view) == BODY
    assert not is_open(sent)
    assert set(os.listdir("/proc/self/fd")) == before  # mmap's own copy of the descriptor too
    os.close(fd)


def test_mapped_of_an_empty_event() -> None:
    fd = memfd.reserve(1 << 20, "event")
    sent = os.dup(fd)
    with memfd.mapped(sent, 0) as view:
        assert bytes(view) == b""
    assert not is_open(sent)
    os.close(fd)


@pytest.mark.parametrize("kind", ["shorter-than-announced", "not-grow-sealed", "pipe"])
def test_mapped_refuses_a_bad_descriptor_and_closes_it(kind: str, sealed: Callable[..., int]) -> None:
    if kind == "shorter-than-announced":
        fd = memfd.reserve(100, "event")
    elif kind == "not-grow-sealed":
        fd = sealed(seals=0, size=1 << 20)
    else:
        fd, write_end = os.pipe()
        os.close(write_end)
    with pytest.raises(ProtocolError), memfd.mapped(fd, 1000):
        pass
    assert not is_open(fd)
