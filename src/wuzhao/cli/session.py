"""What every command shares: where the server is, the SDK client, and how results are shown.

Results a script may use go to stdout: a rich table or panel when stdout is a
terminal, tab-separated rows or JSON when it is piped. Notices go to stderr.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
from rich.console import Console, RenderableType

from wuzhao.cli import output
from wuzhao.client import Client


@dataclass
class Session:
    """What every command shares. Tests pass their own as ``obj`` to reach no real host."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    transport: httpx.BaseTransport | None = None  # None: the network
    out: Console = field(default_factory=lambda: Console(highlight=False))
    # soft_wrap: messages stay one line each when stderr goes to a file or a log.
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False, soft_wrap=True))
    url: str | None = None
    api_key: str | None = None
    data_dir: Path | None = None
    namespace: str | None = None  # None: WUZHAO_NAMESPACE, else the key's own
    _client: Client | None = field(default=None, init=False, repr=False)

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(
                self.url,
                self.api_key,
                data_dir=self.data_dir,
                environ=self.environ,
                transport=self.transport,
                namespace=self.namespace,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def rows(self, columns: Sequence[str], rows: Iterable[Sequence[str]], *, empty: str) -> None:
        """A table on a terminal, tab-separated rows when piped; ``empty`` (to stderr) if none."""
        rows = list(rows)
        if not rows:
            self.err.print(empty)
        elif self.out.is_terminal:
            self.out.print(output.table(columns, rows))
        else:
            click.echo(output.tsv(columns, rows))

    def record(self, value: Mapping[str, Any], panel: RenderableType | None = None) -> None:
        """``panel`` (or the value's table) on a terminal, JSON when piped."""
        if not self.out.is_terminal:
            click.echo(output.to_json(value))
        else:
            self.out.print(panel if panel is not None else output.fields_panel(value))
