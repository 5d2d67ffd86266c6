"""Commands on secrets: write-only values functions get as environment variables.

No command ever prints a secret's value: not on set, not in ls, not in errors.
"""

from __future__ import annotations

import sys

import click

from wuzhao.cli import output
from wuzhao.cli.session import Session


@click.group()
def secret() -> None:
    """Encrypted values for functions: set one, then deploy with --secret ENV=NAME."""


@secret.command("set")
@click.argument("name")
@click.argument("value", required=False)
@click.option(
    "--from-stdin",
    is_flag=True,
    help="Read the value from stdin (one trailing newline is dropped), keeping it out of shell history.",
)
@click.pass_obj
def set_secret(session: Session, name: str, value: str | None, from_stdin: bool) -> None:
    """Create or replace secret NAME with VALUE.

    Without VALUE or --from-stdin, asks for it on the terminal without echoing.
    A VALUE on the command line stays in the shell's history: prefer the other two.
    """
    if value is not None and from_stdin:
        raise click.UsageError("give VALUE or --from-stdin, not both")
    if from_stdin:
        value = sys.stdin.read()
        value = value.removesuffix("\n").removesuffix("\r")
    elif value is None:
        if not sys.stdin.isatty():
            raise click.UsageError("give VALUE, pipe it with --from-stdin, or run on a terminal to be asked")
        value = click.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True, err=True)
    assert value is not None
    record = session.client().set_secret(name, value)
    session.err.print(f"set secret {record['name']}", markup=False)


@secret.command("ls")
@click.pass_obj
def list_secrets(session: Session) -> None:
    """List the secrets of the namespace (names only; values are never shown)."""
    session.rows(
        output.SECRET_COLUMNS,
        (output.secret_row(s) for s in session.client().list_secrets()),
        empty="no secrets; set one with `wuzhao secret set NAME --from-stdin`",
    )


@secret.command("rm")
@click.argument("name")
@click.pass_obj
def delete_secret(session: Session, name: str) -> None:
    """Delete secret NAME."""
    session.client().delete_secret(name)
    session.err.print(f"deleted secret {name}", markup=False)


COMMANDS = [secret]
