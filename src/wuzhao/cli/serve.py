"""`wuzhao serve`: run the whole platform (API, gateway, worker) on this machine."""

from __future__ import annotations

import os
from pathlib import Path

import click

from wuzhao.config import Settings
from wuzhao.errors import SandboxUnavailable


@click.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1, env WUZHAO_HOST).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 9600, env WUZHAO_PORT).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State, code and the admin key (default ~/.local/share/wuzhao, env WUZHAO_DATA_DIR).",
)
@click.option(
    "--idle-timeout",
    type=float,
    default=None,
    help="Seconds before an idle instance is stopped (default 300, env WUZHAO_IDLE_TIMEOUT).",
)
@click.option(
    "--insecure-no-sandbox",
    is_flag=True,
    default=None,
    help="DEVELOPMENT ONLY: run functions without namespaces, on hosts that cannot make sandboxes.",
)
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    idle_timeout: float | None,
    insecure_no_sandbox: bool | None,
) -> None:
    """Start the platform on its embedded defaults (SQLite, local folders, real sandboxes)."""
    from wuzhao import server
    from wuzhao.sandbox.zygote_launcher import check_host

    settings = Settings.load(
        os.environ,
        host=host,
        port=port,
        data_dir=data_dir,
        idle_timeout_s=idle_timeout,
        insecure_no_sandbox=insecure_no_sandbox or None,
    )
    if not settings.insecure_no_sandbox:
        try:
            check_host()
        except SandboxUnavailable as exc:
            raise click.ClickException(f"{exc}\nwuzhao refuses to run functions without isolation.") from None
    server.run(settings)
