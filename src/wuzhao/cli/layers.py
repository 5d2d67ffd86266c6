"""Commands on layers: versioned zips of shared code that functions mount under /opt."""

from __future__ import annotations

import click

from wuzhao.cli import output
from wuzhao.cli.session import Session
from wuzhao.packaging import zip_directory


@click.group()
def layer() -> None:
    """Shared code for functions: push a directory as a layer version, use it with --layer NAME:VERSION."""


@layer.command("push")
@click.argument("name")
@click.argument("code_dir", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--description", "-d", default="", metavar="TEXT", help="A note to keep with this layer version."
)
@click.pass_obj
def push(session: Session, name: str, code_dir: str, description: str) -> None:
    """Zip DIR and upload it as the next version of layer NAME.

    A function that uses it sees DIR's files read-only under /opt/NAME, with
    DIR (and DIR/python, as in a Lambda layer) on its import path.
    """
    try:
        code_zip = zip_directory(code_dir)
    except OSError as error:
        raise click.ClickException(f"cannot zip {code_dir}: {error}") from error
    with session.err.status(f"uploading layer {name} ({output.human_size(len(code_zip))})"):
        record = session.client().push_layer(name, code_zip=code_zip, description=description)
    click.echo(output.layer_summary(record))


@layer.command("ls")
@click.argument("name", required=False)
@click.pass_obj
def list_layers(session: Session, name: str | None) -> None:
    """List every layer version, or only those of layer NAME."""
    client = session.client()
    records = client.get_layer(name)["versions"] if name else client.list_layers()
    session.rows(
        output.LAYER_COLUMNS,
        (output.layer_row(record) for record in records),
        empty=f"no {'versions of ' + name if name else 'layers'}; push one with `wuzhao layer push NAME DIR`",
    )


@layer.command("rm")
@click.argument("name")
@click.argument("number", metavar="VERSION", type=click.IntRange(min=1))
@click.pass_obj
def delete_layer_version(session: Session, name: str, number: int) -> None:
    """Delete version VERSION of layer NAME (its number is never reused)."""
    session.client().delete_layer_version(name, number)
    session.err.print(f"deleted layer {name}:{number}")


COMMANDS = [layer]
