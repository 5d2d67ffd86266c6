"""Commands on a function's dead letters (its async calls that never succeeded): dlq ls, show, redrive, rm."""

from __future__ import annotations

from typing import Any

import click
from rich.text import Text

from wuzhao.cli import output
from wuzhao.cli.session import Session

PAGE_MAX = 1000  # the server's largest `limit`


@click.group()
def dlq() -> None:
    """Dead letters: a function's async calls that used up their retries (or could not run).

    They wait here until redriven (queued again, retries counted from zero) or removed.
    """


@dlq.command("ls")
@click.argument("name")
@click.option(
    "--limit", type=click.IntRange(1, PAGE_MAX), help="At most this many, oldest first. [default 100]"
)
@click.option("--after", metavar="ID", help="Start after this dead letter (the last of the previous page).")
@click.option("--all", "every", is_flag=True, help="Every dead letter, fetching page after page.")
@click.pass_obj
def list_dead_letters(session: Session, name: str, limit: int | None, after: str | None, every: bool) -> None:
    """List the dead letters of function NAME (a table on a terminal, tab-separated when piped)."""
    client = session.client()
    more: str | None = None
    if every:
        if after is not None:
            raise click.UsageError("--all starts at the oldest: leave out --after")
        found: list[dict[str, Any]] = list(client.iter_dead_letters(name, page_size=limit))
    else:
        page = client.dead_letters(name, limit=limit, after=after)
        found, more = page["dead_letters"], page.get("next")
    session.rows(
        output.DEAD_LETTER_COLUMNS,
        (output.dead_letter_row(dead) for dead in found),
        empty=f"{name} has no dead letters" + (f" after {after}" if after else ""),
    )
    if more:
        session.err.print(Text(f"more: wuzhao dlq ls {name} --after {more}", style="dim"))


@dlq.command("show")
@click.argument("name")
@click.argument("invocation_id", metavar="ID")
@click.pass_obj
def show(session: Session, name: str, invocation_id: str) -> None:
    """Show dead letter ID of function NAME: its attempts and last error (JSON when piped)."""
    dead = session.client().dead_letter(name, invocation_id)
    session.record(dead, output.dead_letter_panel(dead))


@dlq.command("redrive")
@click.argument("name")
@click.argument("invocation_ids", metavar="ID...", nargs=-1, required=True)
@click.pass_obj
def redrive(session: Session, name: str, invocation_ids: tuple[str, ...]) -> None:
    """Queue dead letters of function NAME again, their retries counted from zero; prints each id."""
    client = session.client()
    for invocation_id in invocation_ids:
        click.echo(client.redrive(name, invocation_id))


@dlq.command("rm")
@click.argument("name")
@click.argument("invocation_ids", metavar="ID...", nargs=-1, required=True)
@click.pass_obj
def rm(session: Session, name: str, invocation_ids: tuple[str, ...]) -> None:
    """Delete dead letters of function NAME for good."""
    client = session.client()
    for invocation_id in invocation_ids:
        client.delete_dead_letter(name, invocation_id)
        session.err.print(Text(f"deleted dead letter {invocation_id}"))


COMMANDS = [dlq]
