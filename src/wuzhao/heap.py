"""The process heap: glibc's malloc kept from page-faulting on every large body.

glibc serves a block over its *mmap threshold* (128 KB at first, raised as
large blocks are freed, up to 32 MB) with a mapping of its own, unmapped when
freed, and gives the top of the heap back to the kernel once more than its
*trim threshold* (twice the other) is free there. A process that handles a
5 MB body again and again (the server reading an event, joining it and
validating it; the runtime decoding it) then gets new pages for each copy,
zeroed by the kernel at one page fault per 4 KB: ~1300 faults, ~3 ms on a
virtual machine, for each 5 MB copy that itself takes ~0.3 ms.

:func:`keep_warm` sets both from the start for the largest body the process
moves: the mmap threshold just above its size (as glibc would set it itself
after freeing one such block), the trim threshold to hold the copies of it a
call frees together (glibc would allow two). Such blocks then come from, and
go back to, the heap. The price: up to that many copies' worth of freed heap
kept by the process; blocks larger still get their own mapping, as before.
Without glibc (musl) it does nothing.

Used by the server (``server.run``: the body uvicorn collects, the joined
event, the validator's copy, a result) and by the Python runtime in every
instance (``runtimes.python.bootstrap``: the decoded text and the event), each
for its own process.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MIB = 1 << 20
# glibc refuses an mmap threshold over half its heap size (64 MB on 64-bit).
MAX_THRESHOLD = 32 * _MIB
# The default request and response caps are 6 MB (``config.Settings``).
DEFAULT_LARGEST = 6 * _MIB


def thresholds(largest: int, copies: int) -> tuple[int, int]:
    """(mmap threshold, trim threshold) that keep ``copies`` blocks of ``largest`` bytes on the heap."""
    # A body's copies are a little over its size (object headers, a str's
    # terminator, a growing buffer's slack): the next MiB up, plus one.
    mmap_threshold = min(MAX_THRESHOLD, (-(-largest // _MIB) + 1) * _MIB)
    # They are freed together at the end of a call: the heap's top must be
    # allowed to hold all of them, or it is trimmed and the next call faults.
    return mmap_threshold, max(2, copies) * mmap_threshold


def keep_warm(largest: int = DEFAULT_LARGEST, copies: int = 2) -> bool:
    """Set this process's malloc thresholds for ``copies`` live copies of bodies of up to
    ``largest`` bytes; False without glibc."""
    if _mallopt is None:
        return False
    mmap_threshold, trim_threshold = thresholds(largest, copies)
    mmap_set = bool(_mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    return mmap_set and bool(_mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def _find_mallopt() -> Callable[[int, int], int] | None:
    try:
        return ctypes.CDLL(None).mallopt  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc
        return None


# Looked up once, at import: the zygote imports this module, so an instance
# forked from it pays two calls for keep_warm, not the library lookup (~30 us).
_mallopt = _find_mallopt()
