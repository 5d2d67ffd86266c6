"""How the CLI shows things: pure functions from API objects to text and rich renderables.

Results a script may consume (JSON, log lines, piped `ls` rows) are plain strings;
tables, panels and errors are rich renderables for a person. Nothing here
prints, so each rendering is tested on its own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from wuzhao import errors

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


def functions_table(functions: list[dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in FUNCTION_COLUMNS:
        table.add_column(column, no_wrap=True, style="bold" if column == "NAME" else None)
    for function in functions:
        table.add_row(*function_row(function))
    return table


def functions_tsv(functions: list[dict[str, Any]]) -> str:
    """The table for a pipe: tab-separated, never cut to a terminal's width."""
    rows = [FUNCTION_COLUMNS, *(function_row(function) for function in functions)]
    return "\n".join("\t".join(row) for row in rows)


def function_panel(function: dict[str, Any]) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    env = function.get("env") or {}
    rows = [
        ("runtime", function["runtime"]),
        ("handler", function["handler"]),
        ("memory", f"{function['memory_mb']} MB"),
        ("timeout", f"{function['timeout_s']} s"),
        ("network", function.get("network", "none")),
        ("env", "\n".join(f"{key}={value}" for key, value in sorted(env.items())) or "-"),
        ("code", f"{human_size(function['code_size'])}, sha256 {function['code_sha256']}"),
        ("revision", str(function["revision"])),
        ("instances", instances(function)),
        ("created", short_time(function.get("created_at"))),
        ("updated", short_time(function.get("updated_at"))),
    ]
    for label, value in rows:
        grid.add_row(label, Text(value))  # Text: user values are never read as markup
    return Panel(grid, title=Text(function["name"], style="bold"), title_align="left", expand=False)


def log_line(line: dict[str, Any]) -> str:
    """``timestamp  invocation-id-prefix  stream  message``, one line per log line."""
    invocation = (line.get("invocation_id") or "-")[:INVOCATION_ID_PREFIX]
    invocation = invocation.ljust(INVOCATION_ID_PREFIX)
    message = str(line.get("message", "")).rstrip("\n")
    return f"{line.get('timestamp', '')}  {invocation}  {line.get('stream', ''):<6}  {message}"


def invocation_stats(invocation_id: str, cold_start: bool, duration_ms: float) -> str:
    return f"invocation {invocation_id}  {'cold' if cold_start else 'warm'} start  {duration_ms:.1f} ms"


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
