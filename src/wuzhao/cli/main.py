"""The `wuzhao` command: a thin noun-verb layer over :class:`wuzhao.client.Client`.

One module per noun registers its commands here: functions.py (invoke, ls,
get, rm, logs, invocation), deploy.py, versions.py (publish, versions,
version, alias), layers.py, secrets.py, objects.py (mb, rb, ls-buckets, ls-objects,
cp, rm-object), tenancy.py (ns, key), triggers.py (trigger, topic), dlq.py (dlq: dead
letters of async calls), top.py and serve.py.

Results a script may use (JSON, log lines, tab-separated rows, summaries) go to
stdout; progress, notices and errors go to stderr. Every API error becomes a
short red message and exit status 1; usage errors exit 2 (click's convention).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import httpx

from wuzhao import __version__, errors
from wuzhao.cli import (
    deploy,
    dlq,
    functions,
    layers,
    objects,
    output,
    secrets,
    tenancy,
    top,
    triggers,
    versions,
)
from wuzhao.cli.serve import serve
from wuzhao.cli.session import Session
from wuzhao.client import DEFAULT_URL, resolve_url

__all__ = ["Session", "cli", "main"]


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
@click.option(
    "--namespace",
    "-n",
    metavar="NAMESPACE",
    help="Act in this namespace (another than the key's own needs an admin key). "
    "[env WUZHAO_NAMESPACE; default: the key's namespace]",
)
@click.version_option(__version__, "--version", prog_name="wuzhao", help="Show the version.")
@click.pass_context
def cli(
    ctx: click.Context, url: str | None, api_key: str | None, data_dir: Path | None, namespace: str | None
) -> None:
    """Deploy and run serverless functions on a wuzhao server."""
    session = ctx.ensure_object(Session)
    session.url, session.api_key, session.data_dir = url, api_key, data_dir
    session.namespace = namespace
    ctx.call_on_close(session.close)


for _command in [
    deploy.deploy,
    *functions.COMMANDS,
    *dlq.COMMANDS,
    *versions.COMMANDS,
    *layers.COMMANDS,
    *objects.COMMANDS,
    *secrets.COMMANDS,
    *tenancy.COMMANDS,
    *triggers.COMMANDS,
    *top.COMMANDS,
    serve,
]:
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="wuzhao")


if __name__ == "__main__":
    main()
