"""Commands on functions: invoke, ls, get, rm, logs, invocation (deploy is in deploy.py)."""

from __future__ import annotations

import json
import sys

import click

from wuzhao.cli import output
from wuzhao.cli.session import Session
from wuzhao.client import LOG_PAGE_MAX


@click.command()
@click.argument("name")
@click.option(
    "--data", "-d", metavar="JSON", help="The event as JSON, or - to read it from stdin. [default {}]"
)
@click.option(
    "--qualifier",
    "-q",
    metavar="QUALIFIER",
    help="What to run: $LATEST, a published version number, or an alias. [default $LATEST]",
)
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Also print invocation id, the version that ran, cold start and duration.",
)
@click.option(
    "--async",
    "queued",
    is_flag=True,
    help="Queue the call and print its invocation id at once; it runs later, with retries "
    "(see `wuzhao invocation ID`, and `wuzhao dlq` for calls that never succeeded).",
)
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="With --async: a repeat with this key within 24 h queues nothing and prints the first id.",
)
@click.option(
    "--ordering-key",
    metavar="KEY",
    help="With --async: calls with the same key run one at a time, in the order they were queued.",
)
@click.pass_obj
def invoke(
    session: Session,
    name: str,
    data: str | None,
    qualifier: str | None,
    verbose: bool,
    queued: bool,
    idempotency_key: str | None,
    ordering_key: str | None,
) -> None:
    """Call function NAME and print its result as JSON (with --async: queue it, print its id)."""
    if not queued and (idempotency_key is not None or ordering_key is not None):
        raise click.UsageError("--idempotency-key and --ordering-key go with --async")
    text = sys.stdin.read() if data == "-" else (data or "{}")
    try:
        json.loads(text)
    except ValueError as error:
        raise click.BadParameter(f"not valid JSON: {error}", param_hint="--data") from error
    # The text goes out as typed, so numbers keep the precision the user wrote.
    if queued:
        invocation_id = session.client().invoke_async(
            name,
            payload=text.encode(),
            qualifier=qualifier,
            idempotency_key=idempotency_key,
            ordering_key=ordering_key,
        )
        click.echo(invocation_id)
        if verbose:
            session.err.print(f"queued; follow it with `wuzhao invocation {invocation_id}`", style="dim")
        return
    result = session.client().invoke(name, payload=text.encode(), qualifier=qualifier)
    click.echo(output.to_json(result.value))
    if verbose:
        stats = output.invocation_stats(
            result.invocation_id, result.cold_start, result.duration_ms, result.version
        )
        session.err.print(stats, style="dim")


@click.command("ls")
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


@click.command()
@click.argument("name")
@click.pass_obj
def get(session: Session, name: str) -> None:
    """Show function NAME (a panel on a terminal, JSON when piped)."""
    function = session.client().get_function(name)
    session.record(function, output.function_panel(function))


@click.command()
@click.argument("name")
@click.pass_obj
def rm(session: Session, name: str) -> None:
    """Delete function NAME, its code and its instances."""
    session.client().delete_function(name)
    session.err.print(f"deleted {name}")


@click.command()
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


@click.command()
@click.argument("invocation_id", metavar="ID")
@click.pass_obj
def invocation(session: Session, invocation_id: str) -> None:
    """Show the record of invocation ID as JSON (status, timing, error, last log lines)."""
    click.echo(output.to_json(session.client().get_invocation(invocation_id)))


COMMANDS = [invoke, list_functions, get, rm, logs, invocation]
