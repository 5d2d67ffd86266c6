"""The `wuzhao` command: a thin layer over :class:`wuzhao.client.Client`.

Results a script may use (JSON, log lines, the deploy summary) go to stdout;
progress, notices and errors go to stderr. Every API error becomes a short red
message and exit status 1; usage errors exit 2 (click's convention).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
from rich.console import Console

from wuzhao import __version__, errors
from wuzhao.cli import output
from wuzhao.cli.serve import serve
from wuzhao.client import DEFAULT_URL, LOG_PAGE_MAX, Client, resolve_url
from wuzhao.packaging import zip_directory


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
    _client: Client | None = field(default=None, init=False, repr=False)

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(
                self.url,
                self.api_key,
                data_dir=self.data_dir,
                environ=self.environ,
                transport=self.transport,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class _Commands(click.Group):
    """Turns API and network errors from any command into one message and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        session = ctx.ensure_object(Session)
        try:
            return super().invoke(ctx)
        except errors.WuzhaoError as error:
            session.err.print(output.error_report(error))
        except httpx.ConnectError as error:
            url = resolve_url(session.url, session.environ)
            session.err.print(output.unreachable(url, error))
        except httpx.TransportError as error:
            session.err.print(output.failure(f"request failed: {error}"))
        ctx.exit(1)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    metavar="URL",
    help=f"Address of the wuzhao API. [env WUZHAO_URL; default {DEFAULT_URL}]",
)
@click.option(
    "--api-key",
    metavar="KEY",
    help="API key. [env WUZHAO_API_KEY; default: the local server's DATA_DIR/admin.key]",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory of a local server, to find its key. "
    "[env WUZHAO_DATA_DIR; default ~/.local/share/wuzhao]",
)
@click.version_option(__version__, "--version", prog_name="wuzhao", help="Show the version.")
@click.pass_context
def cli(ctx: click.Context, url: str | None, api_key: str | None, data_dir: Path | None) -> None:
    """Deploy and run serverless functions on a wuzhao server."""
    session = ctx.ensure_object(Session)
    session.url, session.api_key, session.data_dir = url, api_key, data_dir
    ctx.call_on_close(session.close)


cli.add_command(serve)


def _parse_env(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str] | None:
    if not values:
        return None  # keep the function's current environment
    env = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", ctx=ctx, param=param)
        env[key] = value
    return env


@cli.command()
@click.argument("code_dir", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option("--name", "-n", required=True, metavar="NAME", help="Name of the function to create or update.")
@click.option("--handler", metavar="MODULE.FUNC", help="Entry point, e.g. main.handler.")
@click.option("--memory", "memory_mb", type=click.IntRange(min=1), metavar="MB", help="Memory limit.")
@click.option(
    "--timeout", "timeout_s", type=click.IntRange(min=1), metavar="SECONDS", help="Time limit per call."
)
@click.option(
    "--env",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_parse_env,
    help="Environment variable; repeat for more. Replaces the whole environment.",
)
@click.option("--runtime", metavar="RUNTIME", help="Language runtime, e.g. python3.11.")
@click.option(
    "--network",
    type=click.Choice(["none", "outbound"]),
    help="none: only its own loopback; outbound: connections out to the internet.",
)
@click.pass_obj
def deploy(
    session: Session,
    code_dir: str,
    name: str,
    handler: str | None,
    memory_mb: int | None,
    timeout_s: int | None,
    env: dict[str, str] | None,
    runtime: str | None,
    network: str | None,
) -> None:
    """Zip DIR and create or update a function from it.

    Settings not given keep their current value (the server's default on create).
    Deploying an unchanged DIR with the same settings changes nothing.
    """
    try:
        code_zip = zip_directory(code_dir)
    except OSError as error:
        raise click.ClickException(f"cannot zip {code_dir}: {error}") from error
    status = f"uploading {name} ({output.human_size(len(code_zip))})"
    with session.err.status(status):
        function = session.client().deploy(
            name,
            code_zip=code_zip,
            handler=handler,
            memory_mb=memory_mb,
            timeout_s=timeout_s,
            env=env,
            runtime=runtime,
            network=network,
        )
    click.echo(output.deploy_summary(function, created=function.created))


@cli.command()
@click.argument("name")
@click.option(
    "--data", "-d", metavar="JSON", help="The event as JSON, or - to read it from stdin. [default {}]"
)
@click.option("--verbose", "-v", is_flag=True, help="Also print invocation id, cold start and duration.")
@click.pass_obj
def invoke(session: Session, name: str, data: str | None, verbose: bool) -> None:
    """Call function NAME and print its result as JSON."""
    text = sys.stdin.read() if data == "-" else (data or "{}")
    try:
        json.loads(text)
    except ValueError as error:
        raise click.BadParameter(f"not valid JSON: {error}", param_hint="--data") from error
    # The text goes out as typed, so numbers keep the precision the user wrote.
    result = session.client().invoke(name, payload=text.encode())
    click.echo(output.to_json(result.value))
    if verbose:
        stats = output.invocation_stats(result.invocation_id, result.cold_start, result.duration_ms)
        session.err.print(stats, style="dim")


@cli.command("ls")
@click.pass_obj
def list_functions(session: Session) -> None:
    """List the functions (a table on a terminal, tab-separated when piped)."""
    functions = session.client().list_functions()
    if not functions:
        session.err.print("no functions yet; create one with `wuzhao deploy DIR --name NAME`")
        return
    if session.out.is_terminal:
        session.out.print(output.functions_table(functions))
    else:
        click.echo(output.functions_tsv(functions))


@cli.command()
@click.argument("name")
@click.pass_obj
def get(session: Session, name: str) -> None:
    """Show function NAME (a panel on a terminal, JSON when piped)."""
    function = session.client().get_function(name)
    if session.out.is_terminal:
        session.out.print(output.function_panel(function))
    else:
        click.echo(output.to_json(function))


@cli.command()
@click.argument("name")
@click.pass_obj
def rm(session: Session, name: str) -> None:
    """Delete function NAME, its code and its instances."""
    session.client().delete_function(name)
    session.err.print(f"deleted {name}")


@cli.command()
@click.argument("name")
@click.option(
    "--since",
    metavar="WHEN",
    help="Start at a time: ISO 8601, unix seconds, or an age such as 10m, 2h, 30s.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, LOG_PAGE_MAX),
    help="At most this many lines. [default 100]",
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds between polls with --follow.",
)
@click.pass_obj
def logs(
    session: Session,
    name: str,
    since: str | None,
    limit: int | None,
    follow: bool,
    interval: float,
) -> None:
    """Print the log lines of function NAME: time, invocation, stream, message."""
    client = session.client()
    if not follow:
        for line in client.logs(name, since=since, limit=limit)["logs"]:
            click.echo(output.log_line(line))
        return
    try:
        for line in client.follow_logs(name, since=since, limit=limit, poll_interval=interval):
            click.echo(output.log_line(line))
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a follow ends, not a failure


@cli.command()
@click.argument("invocation_id", metavar="ID")
@click.pass_obj
def invocation(session: Session, invocation_id: str) -> None:
    """Show the record of invocation ID as JSON (status, timing, error, last log lines)."""
    click.echo(output.to_json(session.client().get_invocation(invocation_id)))


def main() -> None:
    cli(prog_name="wuzhao")


if __name__ == "__main__":
    main()
