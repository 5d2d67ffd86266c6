import asyncio
import contextlib
import os
import re
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from wuzhao.worker.output import CHUNK, MAX_LINE, OutputCapture

Line = tuple[str, str | None, str]
MARKER = re.compile(r"^\[wuzhao\] output truncated: (\d+) bytes past the (\d+)-byte limit dropped$")


@dataclass
class Pipes:
    stdout_r: int
    stdout_w: int
    stderr_r: int
    stderr_w: int

    def write(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]


MakePipes = Callable[[], Pipes]


@pytest.fixture
def make_pipes() -> Iterator[MakePipes]:
    opened: list[int] = []

    def make() -> Pipes:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        opened.extend((out_r, out_w, err_r, err_w))
        return Pipes(out_r, out_w, err_r, err_w)

    yield make
    for fd in opened:
        with contextlib.suppress(OSError):
            os.close(fd)


def capture_with(pipes: Pipes, cap: int = 1 << 20) -> tuple[OutputCapture, list[Line]]:
    lines: list[Line] = []
    capture = OutputCapture(pipes.stdout_r, pipes.stderr_r, lambda *line: lines.append(line), cap=cap)
    return capture, lines


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


def test_lines_belong_to_the_current_invocation(make_pipes: MakePipes) -> None:
    pipes = make_pipes()

    async def main() -> list[Line]:
        capture, lines = capture_with(pipes)
        capture.start()
        try:
            capture.begin("inv-1")
            pipes.write(pipes.stdout_w, b"one\ntwo\n")
            pipes.write(pipes.stderr_w, b"oops\n")
            await until(lambda: len(lines) == 3)  # the loop's readers deliver them
            capture.end()
            capture.begin("inv-2")
            pipes.write(pipes.stdout_w, b"three\n")
            capture.end()  # end() drains even if the loop has not run the reader
            return lines
        finally:
            capture.close()

    lines = asyncio.run(main())
    assert sorted(lines[:3]) == sorted(
        [("stdout", "inv-1", "one"), ("stdout", "inv-1", "two"), ("stderr", "inv-1", "oops")]
    )
    assert [ln for ln in lines if ln[0] == "stdout"][:2] == [
        ("stdout", "inv-1", "one"),
        ("stdout", "inv-1", "two"),
    ]
    assert lines[3:] == [("stdout", "inv-2", "three")]


def test_output_before_any_call_has_no_invocation(make_pipes: MakePipes) -> None:
    pipes = make_pipes()
    capture, lines = capture_with(pipes)
    pipes.write(pipes.stdout_w, b"boot\n")
    capture.end()
    assert lines == [("stdout", None, "boot")]


def test_partial_lines_wait_for_end(make_pipes: MakePipes) -> None:
    pipes = make_pipes()

    async def main() -> list[Line]:
        capture, lines = capture_with(pipes)
        capture.start()
        try:
            capture.begin("inv-1")
            pipes.write(pipes.stdout_w, b"whole\npart")
            pipes.write(pipes.stderr_w, b"err-part")
            await until(lambda: len(lines) == 1)
            await asyncio.sleep(0.02)
            assert lines == [("stdout", "inv-1", "whole")]
            pipes.write(pipes.stdout_w, b"ial")
            capture.end()
            capture.begin("inv-2")
            capture.end()
            return lines
        finally:
            capture.close()

    assert asyncio.run(main()) == [
        ("stdout", "inv-1", "whole"),
        ("stdout", "inv-1", "partial"),
        ("stderr", "inv-1", "err-part"),
    ]


def test_cap_truncation_emits_one_marker_with_the_dropped_bytes(make_pipes: MakePipes) -> None:
    pipes = make_pipes()
    capture, lines = capture_with(pipes, cap=100)
    capture.begin("inv-1")
    line = b"x" * 19 + b"\n"  # 20 bytes counted per line
    pipes.write(pipes.stdout_w, line * 12)
    pipes.write(pipes.stderr_w, line * 3)
    capture.end()
    kept = [ln for ln in lines if not MARKER.match(ln[2])]
    markers = [ln for ln in lines if MARKER.match(ln[2])]
    assert kept == [("stdout", "inv-1", "x" * 19)] * 5
    assert len(markers) == 1
    stream, invocation, text = markers[0]
    assert (stream, invocation) == ("stderr", "inv-1")
    assert MARKER.match(text).groups() == ("200", "100")  # type: ignore[union-attr]
    assert lines[-1] == markers[0]

    # The next call starts with a fresh budget and no marker.
    lines.clear()
    capture.begin("inv-2")
    pipes.write(pipes.stdout_w, line * 2)
    capture.end()
    assert lines == [("stdout", "inv-2", "x" * 19)] * 2


def test_no_marker_when_output_fits_exactly(make_pipes: MakePipes) -> None:
    pipes = make_pipes()
    capture, lines = capture_with(pipes, cap=10)
    capture.begin("inv-1")
    pipes.write(pipes.stdout_w, b"abcd\nefgh\n")  # 5 + 5 bytes
    capture.end()
    assert lines == [("stdout", "inv-1", "abcd"), ("stdout", "inv-1", "efgh")]


def test_long_line_is_split_at_max_line(make_pipes: MakePipes) -> None:
    pipes = make_pipes()
    capture, lines = capture_with(pipes)
    capture.begin("inv-1")
    pipes.write(pipes.stdout_w, b"a" * MAX_LINE + b"b" * MAX_LINE + b"c" * 10 + b"\nnext\n")
    capture.end()
    assert [text for _, _, text in lines] == ["a" * MAX_LINE, "b" * MAX_LINE, "c" * 10, "next"]


def test_invalid_utf8_is_replaced_not_fatal(make_pipes: MakePipes) -> None:
    pipes = make_pipes()
    capture, lines = capture_with(pipes)
    capture.begin("inv-1")
    pipes.write(pipes.stdout_w, b"ok \xff\xfe end\n")
    capture.end()
    assert lines == [("stdout", "inv-1", "ok \ufffd\ufffd end")]


def test_eof_stops_reading_but_keeps_the_partial_line(make_pipes: MakePipes) -> None:
    pipes = make_pipes()

    async def main() -> list[Line]:
        capture, lines = capture_with(pipes)
        capture.start()
        try:
            capture.begin("inv-1")
            pipes.write(pipes.stdout_w, b"last words")
            os.close(pipes.stdout_w)
            await asyncio.sleep(0.02)
            capture.end()
            return lines
        finally:
            capture.close()

    assert asyncio.run(main()) == [("stdout", "inv-1", "last words")]


@pytest.mark.parametrize(
    "chunks",
    [[b"a" * (2 * MAX_LINE + 10) + b"\n"], [b"a" * (MAX_LINE + 5), b"a" * (MAX_LINE + 5) + b"\n"]],
    ids=["one-write", "two-writes"],
)
def test_where_a_long_line_is_cut_does_not_depend_on_chunking(
    make_pipes: MakePipes, chunks: list[bytes]
) -> None:
    pipes = make_pipes()

    async def main() -> list[Line]:
        capture, lines = capture_with(pipes)
        capture.start()
        try:
            capture.begin("inv-1")
            for chunk in chunks:
                pipes.write(pipes.stdout_w, chunk)
                await asyncio.sleep(0.01)  # let the reader take this write on its own
            capture.end()
            return lines
        finally:
            capture.close()

    assert [len(text) for _, _, text in asyncio.run(main())] == [MAX_LINE, MAX_LINE, 10]


@pytest.mark.parametrize("newlines", [False, True], ids=["one-endless-line", "many-lines"])
def test_a_50mb_flood_keeps_memory_bounded(make_pipes: MakePipes, newlines: bool) -> None:
    pipes = make_pipes()
    cap = 1 << 20
    total = 50 * 1024 * 1024
    block = (b"y" * 1023 + b"\n") * 1024 if newlines else b"z" * (1 << 20)
    assert total % len(block) == 0

    def flood() -> None:
        try:
            for _ in range(total // len(block)):
                pipes.write(pipes.stdout_w, block)
        finally:
            os.close(pipes.stdout_w)

    kept: list[int] = []  # sizes only: the sink must not be what holds memory
    markers: list[str] = []

    def sink(stream: str, invocation: str | None, text: str) -> None:
        if MARKER.match(text):
            markers.append(text)
        else:
            assert len(text) <= MAX_LINE
            kept.append(len(text) + 1)

    async def main() -> int:
        capture = OutputCapture(pipes.stdout_r, pipes.stderr_r, sink, cap=cap)
        capture.start()
        writer = threading.Thread(target=flood)
        tracemalloc.start()
        try:
            capture.begin("inv-1")
            writer.start()
            await asyncio.to_thread(writer.join)
            capture.end()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            capture.close()

    peak = asyncio.run(main())
    assert sum(kept) <= cap
    assert len(markers) == 1
    match = MARKER.match(markers[0])
    assert match is not None
    dropped = int(match.group(1))
    assert dropped >= total - cap
    if newlines:  # whole lines: every byte is either kept or counted as dropped
        assert dropped + sum(kept) == total
    # Only chunk-sized buffers ever existed: nothing grew with the flood.
    assert peak < 4 * (MAX_LINE + CHUNK), peak
