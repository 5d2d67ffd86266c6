"""Settings: one frozen object, loaded once from a given mapping.

Every setting has one name, one environment variable and one line of
documentation, here; ``docs/config.md`` is generated from this table by
``python -m wuzhao.config`` and a test keeps the two equal. Loading takes the
environment as a mapping, so tests never touch the real one.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wuzhao.domain.schedules import MISSED_TICKS
from wuzhao.errors import BadRequest
from wuzhao.sandbox.api import LayerMount

_LAYER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def _setting(default: Any, env: str, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


def default_data_dir(environ: Mapping[str, str]) -> Path:
    home = environ.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".local" / "share" / "wuzhao"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = _setting(
        None, "WUZHAO_DATA_DIR", "State, code packages and the admin key. Default ~/.local/share/wuzhao."
    )
    host: str = _setting("127.0.0.1", "WUZHAO_HOST", "Address the API and gateway listen on.")
    port: int = _setting(9600, "WUZHAO_PORT", "Port the API and gateway listen on.")
    idle_timeout_s: float = _setting(
        300.0, "WUZHAO_IDLE_TIMEOUT", "Seconds an instance may stay idle before it is stopped."
    )
    max_concurrency: int = _setting(
        100, "WUZHAO_MAX_CONCURRENCY", "Instances one function may run at once; beyond it calls queue."
    )
    node_memory_mb: int = _setting(
        0,
        "WUZHAO_NODE_MEMORY_MB",
        "Memory all instances of this node may hold together (sum of their memory_mb); 0: 80 % of the "
        "machine's memory. Idle instances are stopped, least recently used first, to fit new ones.",
    )
    throttle_wait_s: float = _setting(
        1.0, "WUZHAO_THROTTLE_WAIT", "How long a call waits for a free instance before 429 Throttled."
    )
    init_timeout_s: float = _setting(
        10.0, "WUZHAO_INIT_TIMEOUT", "Seconds a new instance has to import its handler."
    )
    shutdown_grace_s: float = _setting(
        30.0, "WUZHAO_SHUTDOWN_GRACE", "On SIGTERM, how long in-flight calls may run before they are killed."
    )
    async_concurrency: int = _setting(
        64,
        "WUZHAO_ASYNC_CONCURRENCY",
        "Asynchronous calls this node runs at once, all functions together; the rest wait in the queue.",
    )
    retry_budget: float = _setting(
        0.2,
        "WUZHAO_RETRY_BUDGET",
        "Share of a function's max_concurrency its asynchronous retries may use at once (at least one "
        "instance), so a failing function's retries do not grow its footprint; its backlog waits.",
    )
    async_retention_s: float = _setting(
        86400.0,
        "WUZHAO_ASYNC_RETENTION",
        "Seconds a succeeded asynchronous call stays readable (GET /v1/invocations/{id}). Idempotency "
        "keys are remembered 24 h whatever this says; dead calls stay until redriven or deleted.",
    )
    cron_missed_ticks: str = _setting(
        "skip",
        "WUZHAO_CRON_MISSED_TICKS",
        "What a cron trigger does about ticks missed while the server was down (unless the trigger says): "
        "`skip` them, or `catch_up_one` (one call, for the most recent missed tick).",
    )
    cron_grace_s: float = _setting(
        10.0,
        "WUZHAO_CRON_GRACE",
        "Seconds a cron tick may be late and still fire as usual; a tick later than this was missed.",
    )
    max_code_bytes: int = _setting(
        50 * 1024 * 1024, "WUZHAO_MAX_CODE_BYTES", "Largest accepted code zip (compressed)."
    )
    max_unpacked_code_bytes: int = _setting(
        250 * 1024 * 1024, "WUZHAO_MAX_UNPACKED_CODE_BYTES", "Largest code package once unpacked."
    )
    max_request_bytes: int = _setting(
        6 * 1024 * 1024,
        "WUZHAO_MAX_REQUEST_BYTES",
        "Largest invoke event (larger gets 413), and largest answer a function gets through wuzhao.fn.",
    )
    max_response_bytes: int = _setting(
        6 * 1024 * 1024,
        "WUZHAO_MAX_RESPONSE_BYTES",
        "Largest handler result (larger fails the call), and largest request a function sends "
        "through wuzhao.fn.",
    )
    log_bytes_per_call: int = _setting(
        1024 * 1024, "WUZHAO_LOG_BYTES_PER_CALL", "Output kept per call; the rest is cut with a marker."
    )
    max_object_bytes: int = _setting(
        5 * 1024**3,
        "WUZHAO_MAX_OBJECT_BYTES",
        "Largest object a PUT may store (streamed to disk, never held in memory); larger gets 413.",
    )
    uid_base: int = _setting(
        200000, "WUZHAO_UID_BASE", "First host uid given to sandboxed instances (one uid each)."
    )
    uid_count: int = _setting(
        65536, "WUZHAO_UID_COUNT", "How many host uids from uid_base instances may use."
    )
    cpu_hard_limit: bool = _setting(
        False,
        "WUZHAO_CPU_HARD_LIMIT",
        "Cap each instance's CPU in proportion to its memory (1769 MB = one core), not only weight it.",
    )
    tmp_size_mb: int = _setting(512, "WUZHAO_TMP_SIZE_MB", "Size of each instance's /tmp.")
    pids_max: int = _setting(512, "WUZHAO_PIDS_MAX", "Processes and threads one instance may have.")
    network_allow: str = _setting(
        "",
        "WUZHAO_NETWORK_ALLOW",
        "Comma-separated CIDRs (e.g. 10.20.0.0/16) that functions with network `outbound` may reach "
        "although they are private, link-local or otherwise blocked. The server's own addresses stay "
        "unreachable.",
    )
    runtime_layers: str = _setting(
        "",
        "WUZHAO_RUNTIME_LAYERS",
        "Host directories every function gets read-only under /opt, as `name=/path` pairs separated by "
        "commas (e.g. `sci=/srv/wuzhao/sci`): libraries the operator upgrades in place, with no redeploy. "
        "Each is imaged at server start (again only if it changed): an upgrade reaches instances started "
        "after the next restart. A missing directory stops the server.",
    )
    runtime_preload: str = _setting(
        "",
        "WUZHAO_RUNTIME_PRELOAD",
        "Comma-separated modules (e.g. `numpy,h5py`) a second zygote imports from the runtime layers "
        "before the server serves; an instance whose handler's file imports one is forked from it, so "
        "its cold start is a fork, not an import. Runs the operator's code as root: list only modules "
        "of layers trusted like the server. BLAS and OpenMP libraries get one thread. A module that "
        "cannot be imported stops the server.",
    )
    zygote_shells: int = _setting(
        2,
        "WUZHAO_ZYGOTE_SHELLS",
        "Sandboxes each zygote keeps prepared (cgroup joined, namespaces, the root but the function's "
        "part) so that a cold start skips that work; 0 forks each instance when it is asked for. Each "
        "holds about 2 MB while it waits (1 MB of it charged to the instance it becomes). At most 8.",
    )
    insecure_no_sandbox: bool = _setting(
        False, "WUZHAO_INSECURE_NO_SANDBOX", "Development only: run functions without namespaces."
    )

    def __post_init__(self) -> None:
        self.allowed_networks()  # a bad entry stops the server at start
        self.runtime_layer_mounts()
        if self.async_concurrency < 1:
            raise BadRequest("WUZHAO_ASYNC_CONCURRENCY must be at least 1", field="WUZHAO_ASYNC_CONCURRENCY")
        if not 0 < self.retry_budget <= 1:
            raise BadRequest(
                "WUZHAO_RETRY_BUDGET must be a share above 0 and at most 1, e.g. 0.2",
                field="WUZHAO_RETRY_BUDGET",
            )
        self.runtime_preload_modules()
        if not 0 <= self.zygote_shells <= 8:
            raise BadRequest("WUZHAO_ZYGOTE_SHELLS must be between 0 and 8", field="WUZHAO_ZYGOTE_SHELLS")
        if self.cron_missed_ticks not in MISSED_TICKS:
            raise BadRequest(
                f"WUZHAO_CRON_MISSED_TICKS must be one of {', '.join(MISSED_TICKS)}",
                field="WUZHAO_CRON_MISSED_TICKS",
            )
        if self.cron_grace_s < 0:
            raise BadRequest("WUZHAO_CRON_GRACE must be 0 or more seconds", field="WUZHAO_CRON_GRACE")

    def allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``network_allow`` parsed; BadRequest naming the variable and the entry."""
        networks = []
        for item in filter(None, (part.strip() for part in self.network_allow.split(","))):
            try:
                networks.append(ipaddress.ip_network(item))
            except ValueError as exc:
                raise BadRequest(
                    f"WUZHAO_NETWORK_ALLOW: {item!r} is not a network in CIDR notation ({exc})",
                    field="WUZHAO_NETWORK_ALLOW",
                ) from None
        return tuple(networks)

    def runtime_layer_mounts(self, *, check_dirs: bool = False) -> tuple[LayerMount, ...]:
        """``runtime_layers`` parsed; BadRequest naming the variable and the entry.

        ``check_dirs`` (at server start): each path must be an existing directory.
        """
        mounts: list[LayerMount] = []
        for item in filter(None, (part.strip() for part in self.runtime_layers.split(","))):
            name, _, path = item.partition("=")
            if not _LAYER_NAME.match(name) or not path.startswith("/"):
                raise BadRequest(
                    f"WUZHAO_RUNTIME_LAYERS: {item!r} must look like name=/absolute/path",
                    field="WUZHAO_RUNTIME_LAYERS",
                )
            if any(m.name == name for m in mounts):
                raise BadRequest(
                    f"WUZHAO_RUNTIME_LAYERS: {name!r} appears twice", field="WUZHAO_RUNTIME_LAYERS"
                )
            if check_dirs and not os.path.isdir(path):
                raise BadRequest(
                    f"WUZHAO_RUNTIME_LAYERS: {item!r}: {path} is not an existing directory",
                    field="WUZHAO_RUNTIME_LAYERS",
                )
            mounts.append(LayerMount(name=name, directory=path))
        return tuple(mounts)

    def runtime_preload_modules(self) -> tuple[str, ...]:
        """``runtime_preload`` parsed: dotted module names, in order; BadRequest naming the entry."""
        modules: list[str] = []
        for item in filter(None, (part.strip() for part in self.runtime_preload.split(","))):
            if not _MODULE_NAME.match(item):
                raise BadRequest(
                    f"WUZHAO_RUNTIME_PRELOAD: {item!r} is not a module name (like numpy or numpy.linalg)",
                    field="WUZHAO_RUNTIME_PRELOAD",
                )
            if item in modules:
                raise BadRequest(
                    f"WUZHAO_RUNTIME_PRELOAD: {item!r} appears twice", field="WUZHAO_RUNTIME_PRELOAD"
                )
            modules.append(item)
        return tuple(modules)

    @classmethod
    def load(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Build settings from ``environ`` (the WUZHAO_* variables), then ``overrides``.

        Overrides whose value is None are ignored, so CLI options can be passed
        straight through.
        """
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("data_dir") is None:
            values["data_dir"] = default_data_dir(environ)
        values["data_dir"] = Path(values["data_dir"]).expanduser().absolute()
        return cls(**values)


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    try:
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        return raw
    except ValueError:
        raise BadRequest(
            f"{f.metadata['env']}={raw!r} is not a valid {kind}", field=f.metadata["env"]
        ) from None


def reference_table() -> str:
    """The Markdown table of every setting (the body of docs/config.md)."""
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(Settings):
        default = "see meaning" if f.default is None else f"`{f.default}`" if f.default != "" else "empty"
        rows.append(f"| `{f.name}` | `{f.metadata['env']}` | {default} | {f.metadata['doc']} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(reference_table(), end="")
