"""Commands on triggers (trigger put, ls, get, rm), and publishing to topics (topic publish).

A trigger runs a function on HTTP requests (type http), on a schedule (type
cron), on changes of objects in a bucket (type object) or on messages
published to a topic (type topic).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from wuzhao.cli import output
from wuzhao.cli.session import Session
from wuzhao.domain.schedules import MISSED_TICKS

# The options of each type: given with another type, they are a usage error, not ignored.
OPTIONS = {
    "http": {"methods": "--method", "path": "--path", "auth": "--auth"},
    "cron": {"schedule": "--schedule", "timezone": "--timezone", "missed_ticks": "--missed-ticks"},
    "object": {"bucket": "--bucket", "events": "--event", "prefix": "--prefix", "suffix": "--suffix"},
    "topic": {"topic": "--topic", "filter": "--filter"},
}
REQUIRED = {"http": "path", "cron": "schedule", "object": "bucket", "topic": "topic"}


def _filter(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, list[str]] | None:
    """Repeated NAME=VALUE: a name given more than once may have any of its values."""
    if not values:
        return None
    found: dict[str, list[str]] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", ctx=ctx, param=param)
        found.setdefault(name, []).append(value)
    return found


@click.group()
def trigger() -> None:
    """Triggers: run a function on HTTP requests, a schedule, object changes or topic messages."""


@trigger.command("put")
@click.argument("name")
@click.option("--function", "-f", "function", required=True, metavar="FUNCTION", help="The function to run.")
@click.option(
    "--qualifier", "-q", metavar="QUALIFIER", help="A version or an alias of it. [default: $LATEST]"
)
@click.option("--type", "kind", type=click.Choice(list(OPTIONS)), required=True, help="What fires it.")
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
@click.option("--bucket", "-b", metavar="BUCKET", help="object: the bucket whose objects fire it.")
@click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice(["created", "deleted"]),
    help="object: what fires it, created or deleted (repeat for both). [default: created]",
)
@click.option("--prefix", metavar="TEXT", help="object: only keys that start with this.")
@click.option("--suffix", metavar="TEXT", help="object: only keys that end with this, e.g. .png.")
@click.option("--topic", "-t", metavar="TOPIC", help="topic: the topic whose messages fire it.")
@click.option(
    "--filter",
    "filter_",
    multiple=True,
    metavar="NAME=VALUE",
    callback=_filter,
    help="topic: only messages whose attribute NAME is VALUE (repeat: every NAME must match, "
    "a NAME given twice may be either VALUE). [default: every message]",
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
    bucket: str | None,
    events: tuple[str, ...],
    prefix: str | None,
    suffix: str | None,
    topic: str | None,
    filter_: dict[str, list[str]] | None,
) -> None:
    """Create or replace trigger NAME: FUNCTION runs on its events.

    \b
      wuzhao trigger put users -f api --type http -m GET --path '/users/{id}' --auth none
      wuzhao trigger put nightly -f report --type cron -s '0 3 * * *' --tz Europe/Paris
      wuzhao trigger put thumbs -f resize --type object -b photos --prefix in/ --suffix .png
      wuzhao trigger put refunds -f refund --type topic -t orders --filter kind=refund

    A put states the whole trigger: an option left out takes its default.
    """
    given: dict[str, Any] = {
        "methods": list(methods) or None,
        "path": path,
        "auth": auth,
        "schedule": schedule,
        "timezone": timezone,
        "missed_ticks": missed_ticks,
        "bucket": bucket,
        "events": list(events) or None,
        "prefix": prefix,
        "suffix": suffix,
        "topic": topic,
        "filter": filter_,
    }
    own = OPTIONS[kind]
    others = {
        key: flag for other, options in OPTIONS.items() if other != kind for key, flag in options.items()
    }
    stray = [flag for key, flag in others.items() if given[key] is not None]
    if stray:
        raise click.UsageError(f"{', '.join(stray)} is not an option of --type {kind}")
    required = REQUIRED[kind]
    if given[required] is None:
        raise click.UsageError(f"--type {kind} needs {own[required]}")
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


@click.group()
def topic() -> None:
    """Topics: publish messages to the topic triggers that subscribe to them."""


@topic.command("publish")
@click.argument("name", metavar="TOPIC")
@click.argument("message")
@click.option(
    "--attr",
    "attributes",
    multiple=True,
    metavar="NAME=VALUE",
    help="A string attribute of the message (what subscribers' filters read); repeat for more.",
)
@click.option("--json", "as_json", is_flag=True, help="MESSAGE is JSON: send the value, not the text.")
@click.pass_obj
def publish_message(
    session: Session, name: str, message: str, attributes: tuple[str, ...], as_json: bool
) -> None:
    """Publish MESSAGE to TOPIC (- reads it from stdin): every topic trigger of TOPIC whose
    filter passes the attributes gets an asynchronous call. Prints the message id.

    \b
      wuzhao topic publish orders 'order 7 refunded' --attr kind=refund
      wuzhao topic publish orders '{"order": 7}' --json --attr kind=refund --attr region=eu
    """
    text = sys.stdin.read() if message == "-" else message
    pairs: dict[str, str] = {}
    for item in attributes:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--attr")
        pairs[key] = value
    body: Any = text
    if as_json:
        try:
            body = json.loads(text)
        except ValueError as error:
            raise click.BadParameter(f"MESSAGE is not JSON: {error}", param_hint="MESSAGE") from None
    published = session.client().publish_message(name, body, pairs)
    click.echo(published["message_id"])
    count = published["deliveries"]
    session.err.print(f"published to {name}: {count} subscriber{'s' if count != 1 else ''} will get it")


COMMANDS = [trigger, topic]
