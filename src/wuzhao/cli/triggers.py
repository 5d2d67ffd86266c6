"""Commands on triggers: run a function on HTTP requests (type http) or on a schedule (type cron)."""

from __future__ import annotations

from typing import Any

import click

from wuzhao.cli import output
from wuzhao.cli.session import Session
from wuzhao.domain.schedules import MISSED_TICKS

# The options of each type: given with another type, they are a usage error, not ignored.
HTTP_OPTIONS = {"methods": "--method", "path": "--path", "auth": "--auth"}
CRON_OPTIONS = {"schedule": "--schedule", "timezone": "--timezone", "missed_ticks": "--missed-ticks"}


@click.group()
def trigger() -> None:
    """Triggers: run a function on HTTP requests (--type http) or on a schedule (--type cron)."""


@trigger.command("put")
@click.argument("name")
@click.option("--function", "-f", "function", required=True, metavar="FUNCTION", help="The function to run.")
@click.option(
    "--qualifier", "-q", metavar="QUALIFIER", help="A version or an alias of it. [default: $LATEST]"
)
@click.option("--type", "kind", type=click.Choice(["http", "cron"]), required=True, help="What fires it.")
@click.option(
    "--method",
    "-m",
    "methods",
    multiple=True,
    metavar="METHOD",
    help="http: a method it answers (repeat). [default: ANY]",
)
@click.option("--path", "-p", metavar="PATH", help="http: the path, e.g. /users/{id} or /files/{proxy+}.")
@click.option(
    "--auth",
    type=click.Choice(["key", "none"]),
    help="http: key (callers send an API key that may invoke) or none (open). [default: key]",
)
@click.option(
    "--schedule", "-s", metavar="SCHEDULE", help="cron: 'rate(5 minutes)' or a cron expression ('0 3 * * *')."
)
@click.option("--timezone", "--tz", "timezone", metavar="ZONE", help="cron: an IANA zone. [default: UTC]")
@click.option(
    "--missed-ticks",
    type=click.Choice(MISSED_TICKS),
    help="cron: ticks missed while the server was down: skip, or catch_up_one. [default: the server's]",
)
@click.pass_obj
def put(
    session: Session,
    name: str,
    function: str,
    qualifier: str | None,
    kind: str,
    methods: tuple[str, ...],
    path: str | None,
    auth: str | None,
    schedule: str | None,
    timezone: str | None,
    missed_ticks: str | None,
) -> None:
    """Create or replace trigger NAME: FUNCTION runs on its events.

    \b
      wuzhao trigger put users -f api --type http -m GET --path '/users/{id}' --auth none
      wuzhao trigger put nightly -f report --type cron -s '0 3 * * *' --tz Europe/Paris

    A put states the whole trigger: an option left out takes its default.
    """
    given: dict[str, Any] = {
        "methods": list(methods) or None,
        "path": path,
        "auth": auth,
        "schedule": schedule,
        "timezone": timezone,
        "missed_ticks": missed_ticks,
    }
    own, other = (HTTP_OPTIONS, CRON_OPTIONS) if kind == "http" else (CRON_OPTIONS, HTTP_OPTIONS)
    stray = [flag for key, flag in other.items() if given[key] is not None]
    if stray:
        raise click.UsageError(f"{', '.join(stray)} is not an option of --type {kind}")
    required = "path" if kind == "http" else "schedule"
    if given[required] is None:
        raise click.UsageError(f"--type {kind} needs --{required}")
    settings = {key: value for key, value in given.items() if key in own and value is not None}
    record = session.client().put_trigger(name, function=function, type=kind, qualifier=qualifier, **settings)
    click.echo(output.trigger_summary(record, created=record.created))


@trigger.command("ls")
@click.option("--function", "-f", "function", metavar="FUNCTION", help="Only the triggers of this function.")
@click.pass_obj
def list_triggers(session: Session, function: str | None) -> None:
    """List the triggers of the namespace."""
    session.rows(
        output.TRIGGER_COLUMNS,
        (output.trigger_row(t) for t in session.client().list_triggers(function)),
        empty=f"no triggers{' of ' + function if function else ''}; make one with `wuzhao trigger put`",
    )


@trigger.command("get")
@click.argument("name")
@click.pass_obj
def get_trigger(session: Session, name: str) -> None:
    """Show trigger NAME (JSON when piped)."""
    session.record(session.client().get_trigger(name))


@trigger.command("rm")
@click.argument("name")
@click.pass_obj
def delete_trigger(session: Session, name: str) -> None:
    """Delete trigger NAME: it fires no more."""
    session.client().delete_trigger(name)
    session.err.print(f"deleted trigger {name}")


COMMANDS = [trigger]
