"""`wuzhao deploy`: one function from a directory, or every function of a manifest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, get_args

import click

from wuzhao import manifest
from wuzhao.cli import output
from wuzhao.cli.session import Session
from wuzhao.domain.functions import (
    NETWORK_MODES,
    RECURSIVE_LOOP_MODES,
    MaxChainCalls,
    MaxEventAgeS,
    MaxRetries,
    RetryDelayS,
)
from wuzhao.packaging import zip_directory


def _pairs(what: str) -> Any:
    """A callback that turns repeated KEY=VALUE options into a dict (None when none were given)."""

    def parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str] | None:
        if not values:
            return None  # keep the function's current value
        pairs = {}
        for item in values:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{item!r} is not {what}", ctx=ctx, param=param)
            pairs[key] = value
        return pairs

    return parse


def _within(annotated: Any) -> click.IntRange | click.FloatRange:
    """The bounds the server checks (the domain's ``Annotated`` type), checked here already."""
    kind, meta = get_args(annotated)
    if kind is int:
        return click.IntRange(meta.ge, meta.le)
    return click.FloatRange(meta.ge, meta.le)


def _layers(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str] | None:
    for item in values:
        name, sep, version = item.rpartition(":")
        if not sep or not name or not version.isdigit():
            raise click.BadParameter(f"{item!r} is not NAME:VERSION", ctx=ctx, param=param)
    return list(values) if values else None


@click.command()
@click.argument("code_dir", metavar="[DIR]", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--name", "-n", metavar="NAME", help="Name of the function to create or update from DIR.")
@click.option(
    "--file",
    "-f",
    "manifest_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Deploy every function of this manifest. [default ./{manifest.MANIFEST_FILE} without DIR]",
)
@click.option("--dry-run", is_flag=True, help="With a manifest: show what would change, and change nothing.")
@click.option("--handler", metavar="MODULE.FUNC", help="Entry point, e.g. main.handler.")
@click.option("--memory", "memory_mb", type=click.IntRange(min=1), metavar="MB", help="Memory limit.")
@click.option(
    "--timeout", "timeout_s", type=click.IntRange(min=1), metavar="SECONDS", help="Time limit per call."
)
@click.option(
    "--env",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_pairs("KEY=VALUE"),
    help="Environment variable; repeat for more. Replaces the whole environment.",
)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="ENV=SECRET_NAME",
    callback=_pairs("ENV=SECRET_NAME"),
    help="Set variable ENV from the namespace's secret SECRET_NAME (see `wuzhao secret set`); "
    "repeat for more. Replaces all secret references.",
)
@click.option(
    "--layer",
    "layers",
    multiple=True,
    metavar="NAME:VERSION",
    callback=_layers,
    help="Mount a layer version under /opt (see `wuzhao layer push`); repeat for more, in order. "
    "Replaces the function's layers.",
)
@click.option("--runtime", metavar="RUNTIME", help="Language runtime, e.g. python3.11.")
@click.option(
    "--network",
    type=click.Choice(NETWORK_MODES),
    help="none: only its own loopback; outbound: connections out to the internet.",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=0),
    metavar="N",
    help="Most calls running at once; 0 disables the function (every call gets 429).",
)
@click.option(
    "--min-instances",
    type=click.IntRange(min=0, max=100),
    metavar="N",
    help="Instances kept started even with no calls (provisioned); 0: scale to zero.",
)
@click.option(
    "--idle-timeout",
    "idle_timeout_s",
    type=click.IntRange(min=1),
    metavar="SECONDS",
    help="Stop an instance after this long without a call.",
)
@click.option(
    "--max-retries",
    type=_within(MaxRetries),
    metavar="N",
    help="Async calls: how many times a failed attempt is retried before the call goes dead.",
)
@click.option(
    "--retry-delay",
    "retry_delay_s",
    type=_within(RetryDelayS),
    metavar="SECONDS",
    help="Async calls: the wait before the first retry; each next one waits twice as long.",
)
@click.option(
    "--max-event-age",
    "max_event_age_s",
    type=_within(MaxEventAgeS),
    metavar="SECONDS",
    help="Async calls: an event older than this is not tried again; it goes dead.",
)
@click.option(
    "--on-success",
    metavar="FUNCTION",
    help='Async calls: queue a record of each success for this function ("" removes it).',
)
@click.option(
    "--on-failure",
    metavar="FUNCTION",
    help='Async calls: queue a record of each call that goes dead for this function ("" removes it).',
)
@click.option(
    "--ordering-hold/--no-ordering-hold",
    default=None,
    help="Async calls: a dead call holds its ordering key (later calls of the key wait) until it is "
    "redriven or removed.",
)
@click.option(
    "--max-chain-calls",
    type=_within(MaxChainCalls),
    metavar="N",
    help="Loops: one chain of calls (triggers, destinations, calls from functions) calls this "
    "function at most N times; the next call is not made (dead, RecursiveLoop). [default: 16]",
)
@click.option(
    "--recursive-loop",
    type=click.Choice(RECURSIVE_LOOP_MODES),
    help="Loops: terminate (stop a chain at --max-chain-calls) or allow (never stop it).",
)
@click.pass_context
def deploy(
    ctx: click.Context,
    code_dir: str | None,
    name: str | None,
    manifest_file: Path | None,
    dry_run: bool,
    **settings: Any,
) -> None:
    """Create or update functions: DIR as function NAME, or every function of a manifest.

    With DIR and --name, zip DIR and deploy it; settings not given keep their
    current value (the server's default on create). Without them, deploy every
    function of ./wuzhao.yaml (or -f FILE) and print, per function, whether it
    was created, updated (and what changed) or unchanged. Deploying unchanged
    code and settings again changes nothing.
    """
    session: Session = ctx.obj
    if code_dir is not None or name is not None:
        if manifest_file is not None or dry_run:
            raise click.UsageError("-f/--file and --dry-run deploy a manifest; leave out DIR and --name")
        if code_dir is None or name is None:
            raise click.UsageError("deploy a directory with both DIR and --name NAME")
        _deploy_directory(session, code_dir, name, settings)
        return
    given = [p.opts[0] for p in ctx.command.params if p.name in settings and settings[p.name] is not None]
    if given:
        raise click.UsageError(
            f"{', '.join(given)}: only with DIR and --name; a manifest's settings are written in the manifest"
        )
    if manifest_file is None and not Path(manifest.MANIFEST_FILE).exists():
        raise click.UsageError(
            f"no DIR given and no {manifest.MANIFEST_FILE} here: run `wuzhao deploy DIR --name NAME`, "
            "or name a manifest with -f FILE"
        )
    if not _deploy_manifest(session, manifest_file or Path(manifest.MANIFEST_FILE), dry_run):
        ctx.exit(1)


def _deploy_directory(session: Session, code_dir: str, name: str, settings: dict[str, Any]) -> None:
    try:
        code_zip = zip_directory(code_dir)
    except OSError as error:
        raise click.ClickException(f"cannot zip {code_dir}: {error}") from error
    status = f"uploading {name} ({output.human_size(len(code_zip))})"
    with session.err.status(status):
        function = session.client().deploy(name, code_zip=code_zip, **settings)
    click.echo(output.deploy_summary(function, created=function.created))


def _deploy_manifest(session: Session, path: Path, dry_run: bool) -> bool:
    """Deploy (or plan) every function of the manifest at ``path``; False if it stopped on a problem."""
    counts: Counter[str] = Counter()
    try:
        plan = manifest.load(path)
        outcomes = manifest.deploy(session.client(), plan, dry_run=dry_run)
        while True:
            with session.err.status(f"deploying {path}"):
                outcome = next(outcomes, None)
            if outcome is None:
                break
            counts[outcome.change] += 1
            click.echo(output.manifest_outcome(outcome, dry_run=dry_run))
    except manifest.ManifestError as error:
        for problem in error.problems:
            session.err.print(str(problem), markup=False)
        done = sum(counts.values())
        rest = (
            "nothing was deployed" if not done else "the functions above are done, the rest were not deployed"
        )
        session.err.print(output.failure(f"{path} cannot be deployed as it is; {rest}"))
        return False
    summary = ", ".join(f"{counts[change]} {change}" for change in manifest.Change)
    session.err.print(f"{summary}{' (dry run: nothing was changed)' if dry_run else ''}")
    return True
