"""Host uids for sandboxed instances: one uid per live instance, never two at once.

Uids are handed out round-robin so that a uid just freed is the last to be
reused: if a process of a stopped instance somehow lingered, the next instance
still gets a different identity.
"""

from __future__ import annotations


class UidsExhausted(Exception):
    pass


class UidPool:
    def __init__(self, base: int, count: int) -> None:
        if base <= 0 or count <= 0:
            raise ValueError("uid range must be positive and non-empty")
        self._base = base
        self._count = count
        self._next = 0
        self._used: set[int] = set()

    def acquire(self) -> int:
        if len(self._used) >= self._count:
            raise UidsExhausted(f"all {self._count} sandbox uids are in use")
        while True:
            uid = self._base + self._next
            self._next = (self._next + 1) % self._count
            if uid not in self._used:
                self._used.add(uid)
                return uid

    def release(self, uid: int) -> None:
        self._used.discard(uid)

    @property
    def in_use(self) -> int:
        return len(self._used)
