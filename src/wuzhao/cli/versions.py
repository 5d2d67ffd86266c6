"""Commands on published versions and aliases: publish, versions, version …, alias …."""

from __future__ import annotations

import click

from wuzhao.cli import output
from wuzhao.cli.session import Session

DESCRIPTION = click.option(
    "--description", "-d", default="", metavar="TEXT", help="A note to keep with it, e.g. a release name."
)


@click.command()
@click.argument("name")
@DESCRIPTION
@click.pass_obj
def publish(session: Session, name: str, description: str) -> None:
    """Publish function NAME's $LATEST (code and settings) as its next immutable version.

    When nothing changed since the last version, that version is kept and no
    new one is made.
    """
    version = session.client().publish(name, description)
    click.echo(output.publish_summary(version, created=version.created))


@click.command()
@click.argument("name")
@click.pass_obj
def versions(session: Session, name: str) -> None:
    """List the published versions of function NAME."""
    session.rows(
        output.VERSION_COLUMNS,
        (output.version_row(v) for v in session.client().list_versions(name)),
        empty=f"{name} has no published versions; publish one with `wuzhao publish {name}`",
    )


@click.group()
def version() -> None:
    """Published versions of a function (list them with `wuzhao versions NAME`)."""


version.add_command(versions, "ls")


@version.command("get")
@click.argument("name")
@click.argument("number", metavar="VERSION", type=click.IntRange(min=1))
@click.pass_obj
def get_version(session: Session, name: str, number: int) -> None:
    """Show version VERSION of function NAME (JSON when piped)."""
    session.record(session.client().get_version(name, number))


@version.command("rm")
@click.argument("name")
@click.argument("number", metavar="VERSION", type=click.IntRange(min=1))
@click.pass_obj
def delete_version(session: Session, name: str, number: int) -> None:
    """Delete version VERSION of function NAME (refused while an alias points to it)."""
    session.client().delete_version(name, number)
    session.err.print(f"deleted version {number} of {name}")


def _routes(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, float] | None:
    routing: dict[str, float] = {}
    for item in values:
        other, sep, raw = item.partition("=")
        try:
            weight = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
        except ValueError:
            weight = -1.0
        if not sep or not other.isdigit() or not 0 < weight < 1:
            raise click.BadParameter(
                f"{item!r} is not VERSION=WEIGHT with a weight between 0 and 1 (or 0% and 100%), e.g. 4=0.1",
                ctx=ctx,
                param=param,
            )
        routing[other] = weight
    return routing or None


@click.group()
def alias() -> None:
    """Named pointers to a version, optionally sending a share of calls to a second one."""


@alias.command("set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("number", metavar="VERSION", type=click.IntRange(min=1))
@click.option(
    "--route",
    "routing",
    multiple=True,
    metavar="VERSION=WEIGHT",
    callback=_routes,
    help="Send this share of the calls to another version, e.g. 4=0.1 or 4=10%; the rest run VERSION.",
)
@DESCRIPTION
@click.pass_obj
def set_alias(
    session: Session,
    name: str,
    alias_name: str,
    number: int,
    routing: dict[str, float] | None,
    description: str,
) -> None:
    """Point ALIAS of function NAME at VERSION (creating the alias if needed).

    Invoke it with `wuzhao invoke NAME --qualifier ALIAS`.
    """
    record = session.client().set_alias(name, alias_name, number, routing=routing, description=description)
    click.echo(output.alias_summary(record))


@alias.command("ls")
@click.argument("name")
@click.pass_obj
def list_aliases(session: Session, name: str) -> None:
    """List the aliases of function NAME."""
    session.rows(
        output.ALIAS_COLUMNS,
        (output.alias_row(a) for a in session.client().list_aliases(name)),
        empty=f"{name} has no aliases; add one with `wuzhao alias set {name} ALIAS VERSION`",
    )


@alias.command("get")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.pass_obj
def get_alias(session: Session, name: str, alias_name: str) -> None:
    """Show ALIAS of function NAME (JSON when piped)."""
    session.record(session.client().get_alias(name, alias_name))


@alias.command("rm")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.pass_obj
def delete_alias(session: Session, name: str, alias_name: str) -> None:
    """Delete ALIAS of function NAME (its versions stay)."""
    session.client().delete_alias(name, alias_name)
    session.err.print(f"deleted alias {alias_name} of {name}")


COMMANDS = [publish, versions, version, alias]
