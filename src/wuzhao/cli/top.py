"""`wuzhao top`: a live table of functions with call rate, latency, errors and instances."""

from __future__ import annotations

import time

import click
from rich.live import Live

from wuzhao.cli import output
from wuzhao.cli.session import Session
from wuzhao.observe.top import Row, parse, rows

COLUMNS = ("NAMESPACE", "FUNCTION", "CALLS/S", "P50 MS", "P99 MS", "ERRORS/S", "IDLE", "BUSY")


@click.command()
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.option("--once", is_flag=True, help="Measure one interval, print the table and exit.")
@click.pass_obj
def top(session: Session, interval: float, once: bool) -> None:
    """Watch every function's traffic, latency, errors and instances (needs an admin key)."""
    client = session.client()
    before, taken = parse(client.metrics()), time.monotonic()
    if once:
        time.sleep(interval)
        after = parse(client.metrics())
        session.rows(COLUMNS, _cells(rows(before, after, time.monotonic() - taken)), empty="no functions yet")
        return
    try:
        with Live(output.table(COLUMNS, []), console=session.out, refresh_per_second=4) as live:
            while True:
                time.sleep(interval)
                after, now = parse(client.metrics()), time.monotonic()
                live.update(output.table(COLUMNS, _cells(rows(before, after, now - taken))))
                before, taken = after, now
    except KeyboardInterrupt:
        pass


def _cells(table: list[Row]) -> list[tuple[str, ...]]:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    return [
        (
            r.namespace,
            r.function,
            f"{r.rate:.1f}",
            ms(r.p50_ms),
            ms(r.p99_ms),
            f"{r.errors:.1f}",
            str(r.idle),
            str(r.busy),
        )
        for r in table
    ]


COMMANDS = [top]
