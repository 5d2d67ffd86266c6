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
7. Published versions and layer versions are immutable and numbered 1, 2, …
   per function (per layer): ``add_version`` / ``add_layer`` are compare-and-set
   on the number (``errors.Conflict`` when it is not the next one); a number
   once given is never given again, even after its version is deleted. Deleting a
   function deletes its versions and aliases with it, in one transaction.
8. Secrets are stored as the ciphertext they are given; the store never sees a
   secret's value.
9. A trigger's last fired tick is kept with it (``record_tick``) and goes with
   it; saving a trigger again keeps its tick; deleting a function deletes its
   triggers with it, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from wuzhao.domain.functions import FunctionConfig, FunctionRecord
from wuzhao.domain.triggers import TriggerSpec


class ApiKeyRecord(msgspec.Struct, frozen=True):
    key_id: str  # public part of the key, also its primary key
    secret_hash: str  # hex sha256 of the whole key
    namespace: str
    role: str
    created_at: float
    description: str = ""


class NamespaceRecord(msgspec.Struct, frozen=True):
    name: str
    created_at: float
    max_instances: int | None = None  # quota: concurrent instances of the whole namespace
    max_memory_mb: int | None = None  # quota: sum of memory_mb of its live instances


class VersionRecord(msgspec.Struct, frozen=True):
    """An immutable snapshot of a function's code and configuration."""

    namespace: str
    function: str
    version: int
    config: FunctionConfig
    code_sha256: str
    code_size: int
    description: str
    created_at: float


class AliasRecord(msgspec.Struct, frozen=True):
    namespace: str
    function: str
    name: str
    version: int
    additional_version: int | None  # a second version taking ``additional_weight`` of the calls
    additional_weight: float
    description: str
    updated_at: float


class LayerRecord(msgspec.Struct, frozen=True):
    namespace: str
    name: str
    version: int
    code_sha256: str
    code_size: int
    description: str
    created_at: float


class SecretRecord(msgspec.Struct, frozen=True):
    namespace: str
    name: str
    ciphertext: bytes
    updated_at: float


class TriggerRecord(msgspec.Struct, frozen=True):
    namespace: str
    name: str
    spec: TriggerSpec  # the function it calls, its type and that type's settings
    created_at: float
    updated_at: float  # a schedule counts its rate from here


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
    version: str = "$LATEST"  # which version ran: "$LATEST" or a published number


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

    async def delete_function(self, namespace: str, name: str) -> bool:
        """Delete a function with its versions, aliases and triggers; False if there was none."""

    # namespaces
    async def save_namespace(self, namespace: NamespaceRecord) -> None:
        """Create or replace a namespace record."""

    async def get_namespace(self, name: str) -> NamespaceRecord | None: ...

    async def list_namespaces(self) -> list[NamespaceRecord]: ...

    async def delete_namespace(self, name: str) -> bool:
        """Delete a namespace that holds nothing, with its invocation records and logs;
        ``errors.Conflict`` if it holds anything."""

    # versions and aliases
    async def last_number(self, kind: str, namespace: str, name: str) -> int:
        """The highest number ever given to a ``"version"`` of function ``name`` or a
        ``"layer"`` version of layer ``name`` (0 if none): the next is this + 1."""

    async def add_version(self, version: VersionRecord) -> None: ...

    async def list_versions(self, namespace: str, function: str) -> list[VersionRecord]: ...

    async def delete_version(self, namespace: str, function: str, version: int) -> bool: ...

    async def save_alias(self, alias: AliasRecord) -> None: ...

    async def list_aliases(self, namespace: str, function: str) -> list[AliasRecord]: ...

    async def delete_alias(self, namespace: str, function: str, name: str) -> bool: ...

    # layers and secrets
    async def add_layer(self, layer: LayerRecord) -> None: ...

    async def list_layers(self, namespace: str, name: str | None = None) -> list[LayerRecord]:
        """Every version of one layer (or of all layers of the namespace), ordered."""

    async def delete_layer(self, namespace: str, name: str, version: int) -> bool: ...

    async def save_secret(self, secret: SecretRecord) -> None: ...

    async def list_secrets(self, namespace: str) -> list[SecretRecord]: ...

    async def delete_secret(self, namespace: str, name: str) -> bool: ...

    # API keys
    async def add_key(self, key: ApiKeyRecord) -> None: ...

    async def get_key(self, key_id: str) -> ApiKeyRecord | None: ...

    async def list_keys(self) -> list[ApiKeyRecord]: ...

    async def delete_key(self, key_id: str) -> bool: ...

    # triggers
    async def save_trigger(self, trigger: TriggerRecord) -> None:
        """Create or replace a trigger; its last tick, if any, stays."""

    async def get_trigger(self, namespace: str, name: str) -> TriggerRecord | None: ...

    async def list_triggers(self, namespace: str | None = None) -> list[TriggerRecord]:
        """The triggers of ``namespace`` (or of every namespace), ordered by namespace and name."""

    async def delete_trigger(self, namespace: str, name: str) -> bool: ...

    async def record_tick(self, namespace: str, name: str, tick: int) -> bool:
        """Keep ``tick`` as the trigger's last fired tick; False if there is no such trigger."""

    async def last_ticks(self) -> dict[tuple[str, str], int]:
        """The last fired tick of every trigger that has one, by (namespace, name)."""

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
