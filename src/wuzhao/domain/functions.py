"""What a function is, and the rules its configuration must follow."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from wuzhao.errors import BadRequest

# The patterns end in \Z, not $: "$" also matches before a trailing newline.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}\Z"
# A dotted module path, then the attribute: "main.handler", "pkg.mod.handle".
HANDLER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\Z"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*\Z"
RUNTIMES = frozenset({"python3.11"})
# "none": only the instance's own loopback; "outbound": connections out to the
# internet, never to the host, link-local or private addresses (see sandbox/network.py).
NETWORK_MODES = ("none", "outbound")
# What a chain of calls reaching a function's max_chain_calls does (domain/chains.py):
# "terminate" stops the next call (recorded dead, RecursiveLoop); "allow" opts out.
RECURSIVE_LOOP_MODES = ("terminate", "allow")
DEFAULT_NAMESPACE = "default"

_NAME_RE = re.compile(NAME_PATTERN)
_ENV_RE = re.compile(ENV_NAME_PATTERN)

MemoryMB = Annotated[int, msgspec.Meta(ge=128, le=10240)]
TimeoutS = Annotated[int, msgspec.Meta(ge=1, le=900)]
Handler = Annotated[str, msgspec.Meta(pattern=HANDLER_PATTERN, max_length=256)]
MaxConcurrency = Annotated[int, msgspec.Meta(ge=0, le=10_000)]  # 0: disabled, every call gets 429
IdleTimeoutS = Annotated[int, msgspec.Meta(ge=1, le=86_400)]
MinInstances = Annotated[int, msgspec.Meta(ge=0, le=100)]
# Asynchronous calls: attempts after the first, the first retry's delay (it doubles after), and
# how long an event may wait in all (Lambda's bounds; delays down to 0.1 s for tests).
MaxRetries = Annotated[int, msgspec.Meta(ge=0, le=10)]
RetryDelayS = Annotated[float, msgspec.Meta(ge=0.1, le=3600)]
MaxEventAgeS = Annotated[int, msgspec.Meta(ge=1, le=21_600)]
Destination = Annotated[str, msgspec.Meta(max_length=64)]  # a function's name; "" removes it
MaxChainCalls = Annotated[int, msgspec.Meta(ge=1, le=1000)]  # calls of it one chain may make


class FunctionUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``PUT /v1/functions/{name}``; unset fields keep their value."""

    runtime: str | None = None
    handler: Handler | None = None
    memory_mb: MemoryMB | None = None
    timeout_s: TimeoutS | None = None
    env: dict[str, str] | None = None
    secrets: dict[str, str] | None = None  # env var name -> secret name of the namespace
    layers: list[str] | None = None  # ["name:version", ...], mounted under /opt
    network: str | None = None
    max_concurrency: MaxConcurrency | None = None
    min_instances: MinInstances | None = None
    idle_timeout_s: IdleTimeoutS | None = None
    max_retries: MaxRetries | None = None
    retry_delay_s: RetryDelayS | None = None
    max_event_age_s: MaxEventAgeS | None = None
    on_success: Destination | None = None
    on_failure: Destination | None = None
    ordering_hold: bool | None = None
    max_chain_calls: MaxChainCalls | None = None
    recursive_loop: str | None = None
    code: str | None = None  # base64 of a zip


class FunctionConfig(msgspec.Struct, frozen=True):
    """The configuration part of a function: what an instance is built from."""

    runtime: str = "python3.11"
    handler: str = "main.handler"
    memory_mb: int = 128
    timeout_s: int = 30
    env: dict[str, str] = msgspec.field(default_factory=dict)
    secrets: dict[str, str] = msgspec.field(default_factory=dict)
    layers: list[str] = msgspec.field(default_factory=list)
    network: str = "none"
    max_concurrency: int | None = None  # None: the server's default
    min_instances: int = 0  # instances kept started (provisioned), even with no calls
    idle_timeout_s: int | None = None  # None: the server's default
    # Asynchronous calls (domain/retries.py): a failed attempt is retried max_retries times,
    # after retry_delay_s, then twice that, ...; an event older than max_event_age_s goes dead.
    max_retries: int = 2
    retry_delay_s: float = 60.0
    max_event_age_s: int = 21_600
    on_success: str | None = None  # a function of the namespace that gets the record of each success
    on_failure: str | None = None  # ... of each call that ends dead
    ordering_hold: bool = False  # a dead call holds its ordering key until redriven or deleted
    # Loops (domain/chains.py): one chain of calls calls it at most max_chain_calls times, unless
    # recursive_loop is "allow".
    max_chain_calls: int = 16
    recursive_loop: str = "terminate"


class FunctionRecord(msgspec.Struct, frozen=True):
    """A deployed function as stored. ``revision`` grows by one on every change."""

    namespace: str
    name: str
    config: FunctionConfig
    code_sha256: str
    code_size: int
    revision: int
    created_at: float
    updated_at: float


def check_name(name: str, *, what: str = "function") -> str:
    """Names of functions, namespaces and layers share one pattern."""
    if not _NAME_RE.match(name):
        raise BadRequest(
            f"{what} name {name!r} is invalid: use 1-64 characters of a-z, 0-9, '-' and '_', "
            "starting with a letter or digit",
            field="name",
        )
    return name


def merge_config(current: FunctionConfig | None, update: FunctionUpdate) -> FunctionConfig:
    """Apply a PUT body to the current configuration (or the defaults)."""
    changes = {
        name: value
        for name in FunctionConfig.__struct_fields__
        if (value := getattr(update, name)) is not None
    }
    for destination in ("on_success", "on_failure"):
        if changes.get(destination) == "":  # the way to remove a destination
            changes[destination] = None
    config = msgspec.structs.replace(current or FunctionConfig(), **changes)
    for destination in ("on_success", "on_failure"):
        name = getattr(config, destination)
        if name is not None and not _NAME_RE.match(name):
            raise BadRequest(
                f'{destination} {name!r} is not a function name ("" removes the destination)',
                field=destination,
            )
    if (
        config.min_instances
        and config.max_concurrency is not None
        and config.min_instances > config.max_concurrency
    ):
        raise BadRequest(
            f"min_instances ({config.min_instances}) is over max_concurrency ({config.max_concurrency})",
            field="min_instances",
        )
    if config.runtime not in RUNTIMES:
        raise BadRequest(
            f"runtime {config.runtime!r} is not supported; supported: {', '.join(sorted(RUNTIMES))}",
            field="runtime",
        )
    if config.network not in NETWORK_MODES:
        raise BadRequest(
            f"network {config.network!r} is not supported; use one of: {', '.join(NETWORK_MODES)}",
            field="network",
        )
    if config.recursive_loop not in RECURSIVE_LOOP_MODES:
        raise BadRequest(
            f"recursive_loop {config.recursive_loop!r} is not supported; use one of: "
            f"{', '.join(RECURSIVE_LOOP_MODES)}",
            field="recursive_loop",
        )
    for key, value in config.env.items():
        _check_env_name(key, "env")
        if "\0" in value:
            raise BadRequest(f"environment variable {key!r} contains a NUL byte", field=f"env.{key}")
    for key in config.secrets:
        _check_env_name(key, "secrets")
        if key in config.env:
            raise BadRequest(f"{key!r} is set both in env and in secrets", field=f"secrets.{key}")
    return config


def _check_env_name(key: str, field: str) -> None:
    if not _ENV_RE.match(key) or key.startswith(("AWS_", "WUZHAO_", "_", "LAMBDA_", "LD_")):
        raise BadRequest(f"environment variable name {key!r} is invalid or reserved", field=f"{field}.{key}")


def handler_module_files(handler: str) -> tuple[str, str]:
    """The two files that can hold the handler's module: ``a/b.py`` or ``a/b/__init__.py``."""
    module = handler.rsplit(".", 1)[0].replace(".", "/")
    return f"{module}.py", f"{module}/__init__.py"
