"""The store contract: durable platform state.

Implementations: ``store.sqlite.SqliteStore`` (embedded, the default). A cluster
backend (PostgreSQL) implements the same protocol and passes the same contract
tests (``tests/contract/test_store.py``).

Guarantees every store gives:

1. Every method is a coroutine, and when it returns the change is durable
   (committed); readers see it at once (read-your-writes).
2. ``save_function`` is a compare-and-set on the revision: it stores
   ``record`` only if the stored revision is ``record.revision - 1`` (0 meaning
   absent) and raises ``errors.Conflict`` otherwise, so two writers can never
   both think they made revision N.
3. Deleting a function removes its record, not its history: invocation records
   and logs stay until they age out.
4. ``append_logs`` gives each line a ``seq`` that grows with every line across
   the whole store; a reader that follows with ``after=seq`` misses nothing that
   was appended after that line.
5. Batch methods (``save_invocations``, ``append_logs``) write all or nothing.
6. Keys are stored only as hashes; the store never sees a key's secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from wuzhao.domain.functions import FunctionRecord


class ApiKeyRecord(msgspec.Struct, frozen=True):
    key_id: str  # public part of the key, also its primary key
    secret_hash: str  # hex sha256 of the whole key
    namespace: str
    role: str
    created_at: float
    description: str = ""


class InvocationRecord(msgspec.Struct, frozen=True):
    id: str
    namespace: str
    function: str
    revision: int
    status: str  # "succeeded" | "failed"
    started_at: float
    duration_ms: float
    cold_start: bool
    init_duration_ms: float | None = None  # time to start the instance, on cold starts
    error: dict[str, Any] | None = None


class LogLine(msgspec.Struct, frozen=True):
    timestamp: float
    namespace: str
    function: str
    invocation_id: str | None
    stream: str  # "stdout" | "stderr"
    message: str
    seq: int = 0  # assigned by the store


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # functions
    async def save_function(self, record: FunctionRecord) -> None: ...

    async def get_function(self, namespace: str, name: str) -> FunctionRecord | None: ...

    async def list_functions(self, namespace: str | None = None) -> list[FunctionRecord]:
        """All functions of ``namespace`` (or of every namespace), ordered by name."""

    async def delete_function(self, namespace: str, name: str) -> bool: ...

    # API keys
    async def add_key(self, key: ApiKeyRecord) -> None: ...

    async def get_key(self, key_id: str) -> ApiKeyRecord | None: ...

    async def list_keys(self) -> list[ApiKeyRecord]: ...

    # invocations and their output
    async def save_invocations(self, records: Sequence[InvocationRecord]) -> None: ...

    async def get_invocation(self, invocation_id: str) -> InvocationRecord | None: ...

    async def append_logs(self, lines: Sequence[LogLine]) -> None: ...

    async def query_logs(
        self,
        namespace: str,
        function: str,
        *,
        since: float | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[LogLine]:
        """Log lines of one function, oldest first.

        With ``since`` (unix time) or ``after`` (a seq, exclusive): the first
        ``limit`` lines past that point. With neither: the last ``limit`` lines.
        """

    async def invocation_logs(self, invocation_id: str, *, limit: int = 100) -> list[LogLine]:
        """The last ``limit`` lines of one invocation, oldest first."""
