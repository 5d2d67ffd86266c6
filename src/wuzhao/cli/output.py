"""How the CLI shows things: pure functions from API objects to text and rich renderables.

Results a script may consume (JSON, log lines, piped `ls` rows) are plain strings;
tables, panels and errors are rich renderables for a person. Nothing here
prints, so each rendering is tested on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from wuzhao import errors

if TYPE_CHECKING:
    from wuzhao.manifest import Outcome

INVOCATION_ID_PREFIX = 8  # characters of an invocation id shown per log line


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def human_size(size: int) -> str:
    amount = float(size)
    for unit in ("B", "KiB", "MiB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GiB"


def short_time(iso: str | None) -> str:
    """``2024-05-01T12:00:00.123456Z`` as ``2024-05-01 12:00:00`` (UTC); other text unchanged."""
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def deploy_summary(function: dict[str, Any], *, created: bool) -> str:
    return (
        f"{'created' if created else 'updated'} {function['name']}: "
        f"revision {function['revision']}, {human_size(function['code_size'])}, "
        f"sha256 {function['code_sha256'][:12]}"
    )


def instances(function: dict[str, Any]) -> str:
    counts = function.get("instances") or {}
    return f"{counts.get('idle', 0)} idle / {counts.get('busy', 0)} busy"


FUNCTION_COLUMNS = ("NAME", "RUNTIME", "MEMORY", "TIMEOUT", "IDLE/BUSY", "REVISION", "UPDATED")


def function_row(function: dict[str, Any]) -> list[str]:
    counts = function.get("instances") or {}
    return [
        function["name"],
        function["runtime"],
        f"{function['memory_mb']} MB",
        f"{function['timeout_s']} s",
        f"{counts.get('idle', 0)}/{counts.get('busy', 0)}",
        str(function["revision"]),
        short_time(function.get("updated_at")),
    ]


def table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    """Rows for a person: the first column bold, user values never read as markup."""
    shown = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for index, column in enumerate(columns):
        shown.add_column(column, no_wrap=True, style="bold" if index == 0 else None)
    for row in rows:
        shown.add_row(*(Text(cell) for cell in row))
    return shown


def tsv(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Rows for a pipe: tab-separated, never cut to a terminal's width."""
    return "\n".join("\t".join(row) for row in [columns, *rows])


def functions_table(functions: list[dict[str, Any]]) -> Table:
    return table(FUNCTION_COLUMNS, (function_row(function) for function in functions))


def functions_tsv(functions: list[dict[str, Any]]) -> str:
    return tsv(FUNCTION_COLUMNS, (function_row(function) for function in functions))


def function_panel(function: dict[str, Any]) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    env = function.get("env") or {}
    secrets = function.get("secrets") or {}
    rows = [
        ("runtime", function["runtime"]),
        ("handler", function["handler"]),
        ("memory", f"{function['memory_mb']} MB"),
        ("timeout", f"{function['timeout_s']} s"),
        ("network", function.get("network", "none")),
        ("env", "\n".join(f"{key}={value}" for key, value in sorted(env.items())) or "-"),
        ("secrets", "\n".join(f"{key} <- {name}" for key, name in sorted(secrets.items())) or "-"),
        ("layers", ", ".join(function.get("layers") or []) or "-"),
        ("concurrency", _or_default(function.get("max_concurrency"))),
        ("idle timeout", _or_default(function.get("idle_timeout_s"), " s")),
        *_async_rows(function),
        *_loop_rows(function),
        ("code", f"{human_size(function['code_size'])}, sha256 {function['code_sha256']}"),
        ("revision", str(function["revision"])),
        ("instances", instances(function)),
        ("created", short_time(function.get("created_at"))),
        ("updated", short_time(function.get("updated_at"))),
    ]
    for label, value in rows:
        grid.add_row(label, Text(value))  # Text: user values are never read as markup
    return Panel(grid, title=Text(function["name"], style="bold"), title_align="left", expand=False)


def _async_rows(function: dict[str, Any]) -> list[tuple[str, str]]:
    """How the function's asynchronous calls are retried and sent on (none from a server
    older than asynchronous calls)."""
    if "max_retries" not in function:
        return []
    retries = function["max_retries"]
    delay = f", first after {function['retry_delay_s']:g} s, then doubling" if retries else ""
    hold = function.get("ordering_hold")
    return [
        ("retries", f"{retries}{delay}"),
        ("event age", f"at most {function['max_event_age_s']} s"),
        ("on success", function.get("on_success") or "-"),
        ("on failure", function.get("on_failure") or "-"),
        ("ordering", "a dead call holds its key" if hold else "a dead call lets its key go on"),
    ]


def _loop_rows(function: dict[str, Any]) -> list[tuple[str, str]]:
    """What stops a loop through the function (none from a server older than chains)."""
    if "max_chain_calls" not in function:
        return []
    if function.get("recursive_loop") == "allow":
        return [("loops", "allowed: a chain of calls may call it any number of times")]
    return [("loops", f"stopped after {function['max_chain_calls']} calls in one chain")]


def log_line(line: dict[str, Any]) -> str:
    """``timestamp  invocation-id-prefix  stream  message``, one line per log line."""
    invocation = (line.get("invocation_id") or "-")[:INVOCATION_ID_PREFIX]
    invocation = invocation.ljust(INVOCATION_ID_PREFIX)
    message = str(line.get("message", "")).rstrip("\n")
    return f"{line.get('timestamp', '')}  {invocation}  {line.get('stream', ''):<6}  {message}"


def invocation_stats(invocation_id: str, cold_start: bool, duration_ms: float, version: str = "") -> str:
    ran = f"  version {version}" if version else ""
    return f"invocation {invocation_id}{ran}  {'cold' if cold_start else 'warm'} start  {duration_ms:.1f} ms"


def failure(message: str) -> Text:
    return Text.assemble(("error: ", "bold red"), message)


def unreachable(url: str, error: Exception) -> Text:
    return failure(
        f"cannot reach a wuzhao server at {url} ({error}).\n"
        "Start one on this machine with `wuzhao serve`, or point WUZHAO_URL (or --url) "
        "at a running one."
    )


def error_report(error: errors.WuzhaoError) -> RenderableType:
    """The error's code and message in red, then the traceback and invocation id, if any."""
    headline = Text.assemble(("error: ", "bold red"), (error.code, "red"))
    error_type = error.details.get("error_type")
    if error_type:
        headline.append(f" ({error_type})")
    headline.append(f": {error.message}")
    if error.field:
        headline.append(f" (field: {error.field})", style="dim")
    parts: list[RenderableType] = [headline]
    traceback = error.details.get("traceback")
    if isinstance(traceback, list) and traceback:
        parts.append(Text("\n".join(str(line).rstrip("\n") for line in traceback)))
    invocation_id = getattr(error, "invocation_id", None)
    if invocation_id:
        parts.append(Text(f"invocation {invocation_id}", style="dim"))
    return Group(*parts)


def _or_default(value: Any, unit: str = "") -> str:
    return "server default" if value is None else f"{value}{unit}"


# -- versions and aliases ------------------------------------------------------

VERSION_COLUMNS = ("VERSION", "DESCRIPTION", "HANDLER", "MEMORY", "CODE", "CREATED")


def version_row(version: Mapping[str, Any]) -> list[str]:
    return [
        str(version["version"]),
        version.get("description") or "",
        version.get("handler", ""),
        f"{version.get('memory_mb', '?')} MB",
        str(version.get("code_sha256", ""))[:12],
        short_time(version.get("created_at")),
    ]


def publish_summary(version: Mapping[str, Any], *, created: bool) -> str:
    if created:
        return f"published {version['function']} version {version['version']}"
    return f"{version['function']} has not changed since version {version['version']}; nothing published"


ALIAS_COLUMNS = ("ALIAS", "ROUTES TO", "DESCRIPTION", "UPDATED")


def routes(alias: Mapping[str, Any]) -> str:
    """``3`` or ``3 (90%), 4 (10%)``."""
    routing = alias.get("routing") or {}
    if not routing:
        return str(alias["version"])
    rest = 1.0 - sum(routing.values())
    shares = [f"{alias['version']} ({rest:.0%})", *(f"{v} ({w:.0%})" for v, w in routing.items())]
    return ", ".join(shares)


def alias_row(alias: Mapping[str, Any]) -> list[str]:
    return [alias["name"], routes(alias), alias.get("description") or "", short_time(alias.get("updated_at"))]


def alias_summary(alias: Mapping[str, Any]) -> str:
    return f"alias {alias['name']} of {alias['function']} -> {routes(alias)}"


# -- layers and secrets --------------------------------------------------------

LAYER_COLUMNS = ("LAYER", "SIZE", "SHA256", "DESCRIPTION", "CREATED")


def layer_row(layer: Mapping[str, Any]) -> list[str]:
    return [
        layer.get("reference") or f"{layer['name']}:{layer['version']}",
        human_size(layer.get("code_size", 0)),
        str(layer.get("code_sha256", ""))[:12],
        layer.get("description") or "",
        short_time(layer.get("created_at")),
    ]


def layer_summary(layer: Mapping[str, Any]) -> str:
    reference = layer.get("reference") or f"{layer['name']}:{layer['version']}"
    size = human_size(layer.get("code_size", 0))
    return f"pushed layer {reference}: {size}, sha256 {str(layer.get('code_sha256', ''))[:12]}"


SECRET_COLUMNS = ("SECRET", "UPDATED")


def secret_row(secret: Mapping[str, Any]) -> list[str]:
    return [secret["name"], short_time(secret.get("updated_at"))]


# -- buckets and objects -------------------------------------------------------

OBJECT_URL_SCHEME = "wz://"
BUCKET_COLUMNS = ("BUCKET", "CREATED")
OBJECT_COLUMNS = ("KEY", "SIZE", "MODIFIED", "SHA256", "CONTENT TYPE")


def object_url(bucket: str, key: str = "") -> str:
    return f"{OBJECT_URL_SCHEME}{bucket}/{key}"


def bucket_row(bucket: Mapping[str, Any]) -> list[str]:
    return [bucket["name"], short_time(bucket.get("created_at"))]


def object_row(stored: Mapping[str, Any]) -> list[str]:
    return [
        stored["key"],
        human_size(stored.get("size", 0)),
        short_time(stored.get("modified_at")),
        str(stored.get("etag", ""))[:12],
        stored.get("content_type") or "",
    ]


def transfer_summary(verb: str, source: str, destination: str, stored: Mapping[str, Any]) -> Text:
    """``uploaded a.png to wz://b/a.png: 1.2 MiB, sha256 0123456789ab`` (user text never markup)."""
    return Text(
        f"{verb} {source} to {destination}: {human_size(stored.get('size', 0))}, "
        f"sha256 {str(stored.get('etag', ''))[:12]}"
    )


# -- namespaces and keys -------------------------------------------------------

TRIGGER_COLUMNS = ("TRIGGER", "TYPE", "FUNCTION", "ON", "WHERE / NEXT TICK")


def trigger_target(trigger: Mapping[str, Any]) -> str:
    qualifier = trigger.get("qualifier")
    return f"{trigger['function']}:{qualifier}" if qualifier else str(trigger["function"])


def trigger_on(trigger: Mapping[str, Any]) -> str:
    """``GET,POST /users/{id}``, ``rate(5 minutes)`` (with its zone if not UTC), ``created,deleted``
    or ``kind=refund|chargeback region=eu`` (a topic's filter; ``any message`` without one)."""
    kind = trigger.get("type")
    if kind == "http":
        return f"{','.join(trigger.get('methods') or ['ANY'])} {trigger.get('path', '')}"
    if kind == "object":
        return ",".join(trigger.get("events") or ["created"])
    if kind == "topic":
        filter_ = trigger.get("filter") or {}
        return " ".join(f"{name}={'|'.join(values)}" for name, values in filter_.items()) or "any message"
    zone = trigger.get("timezone") or "UTC"
    return str(trigger.get("schedule", "")) + ("" if zone == "UTC" else f" ({zone})")


def trigger_where(trigger: Mapping[str, Any]) -> str:
    """``/http/default/users/{id} (key)``, the next tick, ``wz://photos/in/*.png`` or ``topic orders``."""
    kind = trigger.get("type")
    if kind == "http":
        auth = "open" if trigger.get("auth") == "none" else "key"
        return f"{trigger.get('url_path', '')} ({auth})"
    if kind == "object":
        keys = f"{trigger.get('prefix') or ''}*{trigger.get('suffix') or ''}"
        return object_url(str(trigger.get("bucket", "")), keys)
    if kind == "topic":
        return f"topic {trigger.get('topic', '')}"
    return short_time(trigger.get("next_tick"))


def trigger_row(trigger: Mapping[str, Any]) -> list[str]:
    return [
        str(trigger["name"]),
        str(trigger.get("type", "")),
        trigger_target(trigger),
        trigger_on(trigger),
        trigger_where(trigger),
    ]


def trigger_summary(trigger: Mapping[str, Any], *, created: bool) -> str:
    """``created trigger users: GET /users/{id} -> hello at /http/default/users/{id} (open)``."""
    return f"{'created' if created else 'updated'} trigger {trigger['name']}: {_trigger_line(trigger)}"


def _trigger_line(trigger: Mapping[str, Any]) -> str:
    where = {"http": "at", "cron": "next", "object": "in", "topic": "from"}.get(
        str(trigger.get("type")), "at"
    )
    return f"{trigger_on(trigger)} -> {trigger_target(trigger)} {where} {trigger_where(trigger)}"


NAMESPACE_COLUMNS = ("NAMESPACE", "INSTANCES", "MEMORY", "CREATED")


def _used_of(used: Any, limit: Any, unit: str = "") -> str:
    return f"{used}{unit} / " + ("no limit" if limit is None else f"{limit}{unit}")


def namespace_row(namespace: Mapping[str, Any]) -> list[str]:
    usage = namespace.get("usage") or {}
    return [
        namespace["name"],
        _used_of(usage.get("instances", 0), namespace.get("max_instances")),
        _used_of(usage.get("memory_mb", 0), namespace.get("max_memory_mb"), " MB"),
        short_time(namespace.get("created_at")),
    ]


KEY_COLUMNS = ("KEY ID", "NAMESPACE", "ROLE", "DESCRIPTION", "CREATED")


def key_row(key: Mapping[str, Any]) -> list[str]:
    return [
        key["key_id"],
        key["namespace"],
        key["role"],
        key.get("description") or "",
        short_time(key.get("created_at")),
    ]


# -- manifests -----------------------------------------------------------------


def manifest_outcome(outcome: Outcome, *, dry_run: bool = False) -> str:
    """One line per function (or trigger) of a manifest deploy: what changed, and the revision now."""
    fields = f" ({', '.join(outcome.fields)})" if outcome.fields else ""
    if outcome.kind == "trigger":
        return _trigger_outcome(outcome, fields, dry_run=dry_run)
    function = outcome.function
    if outcome.change == "unchanged":
        revision = f": revision {function['revision']}" if function else ""
        return f"unchanged {outcome.name}{revision}"
    if dry_run or function is None:
        verb = "create" if outcome.change == "created" else "update"
        return f"would {verb} {outcome.name}{fields}"
    return (
        f"{outcome.change} {outcome.name}{fields}: revision {function['revision']}, "
        f"{human_size(function['code_size'])}, sha256 {function['code_sha256'][:12]}"
    )


def _trigger_outcome(outcome: Outcome, fields: str, *, dry_run: bool) -> str:
    trigger = outcome.trigger
    if outcome.change == "unchanged":
        return f"unchanged trigger {outcome.name}"
    if dry_run or trigger is None:
        verb = "create" if outcome.change == "created" else "update"
        return f"would {verb} trigger {outcome.name}{fields}"
    return f"{outcome.change} trigger {outcome.name}{fields}: {_trigger_line(trigger)}"


def fields_panel(value: Mapping[str, Any]) -> Panel:
    """Any API object as label/value rows (nested values as compact JSON)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    for label, item in value.items():
        shown = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
        grid.add_row(label, Text(shown))
    title = value.get("name") or value.get("function")
    return Panel(
        grid, title=Text(str(title), style="bold") if title else None, title_align="left", expand=False
    )


# -- dead letters --------------------------------------------------------------

DEAD_LETTER_COLUMNS = ("ID", "ENQUEUED", "ATTEMPTS", "ORDERING KEY", "LAST ERROR")


def call_error(error: Mapping[str, Any] | None) -> str:
    """``FunctionError (ValueError): boom``: an async call's error on one line ("" when none)."""
    if not error:
        return ""
    kind = str(error.get("code", "Error"))
    if error.get("error_type"):
        kind += f" ({error['error_type']})"
    message = str(error.get("message", "")).strip().splitlines()
    return f"{kind}: {message[0]}" if message else kind


def dead_letter_row(dead: Mapping[str, Any]) -> list[str]:
    return [
        str(dead["id"]),
        short_time(dead.get("enqueued_at")),
        str(len(dead.get("attempts") or [])),
        dead.get("ordering_key") or "",
        call_error(dead.get("error")),
    ]


def dead_letter_panel(dead: Mapping[str, Any]) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    function = str(dead.get("function", ""))
    if dead.get("qualifier"):
        function += f":{dead['qualifier']}"
    attempts = [
        f"{attempt.get('number', '?')}  {short_time(attempt.get('started_at'))}  "
        f"{float(attempt.get('duration_ms') or 0):.1f} ms  "
        + (call_error(attempt.get("error")) or str(attempt.get("outcome", "")))
        for attempt in dead.get("attempts") or []
    ]
    rows = [
        ("function", function),
        ("status", str(dead.get("status", ""))),
        ("enqueued", short_time(dead.get("enqueued_at"))),
        ("updated", short_time(dead.get("updated_at"))),
        ("ordering key", dead.get("ordering_key") or "-"),
        ("attempts", "\n".join(attempts) or "none (given up before running)"),
        ("last error", call_error(dead.get("error")) or "-"),
    ]
    traceback = (dead.get("error") or {}).get("traceback")
    if isinstance(traceback, list) and traceback:
        rows.append(("traceback", "".join(str(line) for line in traceback).rstrip("\n")))
    for label, value in rows:
        grid.add_row(label, Text(value))  # Text: user values are never read as markup
    return Panel(grid, title=Text(str(dead.get("id", "")), style="bold"), title_align="left", expand=False)
