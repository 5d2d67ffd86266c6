"""Commands on the object store: mb, rb, ls-buckets, ls-objects, cp, rm-object.

An object is named ``wz://BUCKET/KEY``. ``cp`` copies one file either way
between this machine and the store (``-`` is stdin or stdout), streaming it,
with a progress bar when stderr is a terminal. What was copied is reported on
stderr, so that ``wuzhao cp wz://b/k - | tool`` gets only the object's bytes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from wuzhao.cli import output
from wuzhao.cli.session import Session
from wuzhao.client import Client
from wuzhao.client import Progress as ProgressCallback

STDIO = "-"


def parse_object_url(value: str, *, key_required: bool = True) -> tuple[str, str]:
    """``wz://bucket/key`` as (bucket, key); a usage error for anything else."""
    if not value.startswith(output.OBJECT_URL_SCHEME):
        raise click.BadParameter(f"{value!r} is not an object: name one as wz://BUCKET/KEY")
    bucket, _, key = value.removeprefix(output.OBJECT_URL_SCHEME).partition("/")
    if not bucket or (key_required and not key):
        raise click.BadParameter(
            f"{value!r} names no {'bucket' if not bucket else 'key'}: use wz://BUCKET/KEY"
        )
    return bucket, key


@click.command("mb")
@click.argument("bucket")
@click.pass_obj
def make_bucket(session: Session, bucket: str) -> None:
    """Make bucket BUCKET in the namespace (nothing changes if it exists)."""
    created = session.client().create_bucket(bucket).created
    session.err.print(Text(f"{'created' if created else 'there already is a'} bucket {bucket}"))


@click.command("rb")
@click.argument("bucket")
@click.pass_obj
def remove_bucket(session: Session, bucket: str) -> None:
    """Remove bucket BUCKET; it must be empty (remove its objects with rm-object first)."""
    session.client().delete_bucket(bucket)
    session.err.print(Text(f"deleted bucket {bucket}"))


@click.command("ls-buckets")
@click.pass_obj
def list_buckets(session: Session) -> None:
    """List the namespace's buckets."""
    buckets = session.client().list_buckets()
    session.rows(
        output.BUCKET_COLUMNS,
        (output.bucket_row(bucket) for bucket in buckets),
        empty="no buckets; make one with `wuzhao mb BUCKET`",
    )


@click.command("ls-objects")
@click.argument("bucket", metavar="BUCKET")
@click.option("--prefix", "-p", default="", metavar="PREFIX", help="Only keys that start with PREFIX.")
@click.pass_obj
def list_objects(session: Session, bucket: str, prefix: str) -> None:
    """List the objects of BUCKET in key order (BUCKET may be given as wz://BUCKET/PREFIX)."""
    if bucket.startswith(output.OBJECT_URL_SCHEME):
        bucket, within = parse_object_url(bucket, key_required=False)
        prefix = within + prefix
    stored = session.client().iter_objects(bucket, prefix=prefix or None)
    session.rows(
        output.OBJECT_COLUMNS,
        (output.object_row(item) for item in stored),
        empty=f"no objects in {output.object_url(bucket, prefix)}",
    )


@click.command("cp")
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST")
@click.option(
    "--content-type",
    metavar="TYPE",
    help="Uploads: the object's media type. [default: guessed from the file name, else "
    "application/octet-stream]",
)
@click.option(
    "--meta",
    "metadata",
    multiple=True,
    metavar="NAME=VALUE",
    help="Uploads: metadata kept with the object (repeatable).",
)
@click.pass_obj
def copy(
    session: Session, source: str, destination: str, content_type: str | None, metadata: tuple[str, ...]
) -> None:
    """Copy a file to an object or an object to a file; one of SRC and DST is wz://BUCKET/KEY.

    \b
      wuzhao cp photo.png wz://pics/            upload as wz://pics/photo.png
      wuzhao cp - wz://pics/raw.bin < data      upload stdin
      wuzhao cp wz://pics/photo.png ./          download into this directory
      wuzhao cp wz://pics/raw.bin - | sha256sum download to stdout
    """
    remote_source = source.startswith(output.OBJECT_URL_SCHEME)
    remote_destination = destination.startswith(output.OBJECT_URL_SCHEME)
    if remote_source == remote_destination:
        raise click.UsageError("exactly one of SRC and DST must be an object (wz://BUCKET/KEY)")
    if remote_destination:
        _upload(session, source, destination, content_type, _parse_metadata(metadata))
    else:
        _download(session, source, destination)


@click.command("rm-object")
@click.argument("url", metavar="wz://BUCKET/KEY")
@click.pass_obj
def remove_object(session: Session, url: str) -> None:
    """Delete one object."""
    bucket, key = parse_object_url(url)
    session.client().delete_object(bucket, key)
    session.err.print(Text(f"deleted {output.object_url(bucket, key)}"))


def _upload(
    session: Session, source: str, destination: str, content_type: str | None, metadata: dict[str, str]
) -> None:
    bucket, key = parse_object_url(destination, key_required=False)
    if not key or key.endswith("/"):  # wz://bucket/ or wz://bucket/dir/: the file's own name
        if source == STDIO:
            raise click.BadParameter("name the key to upload stdin to: wz://BUCKET/KEY", param_hint="DST")
        key += Path(source).name
    client = session.client()
    with _progress(session, f"{Path(source).name} → {output.object_url(bucket, key)}") as report:
        if source == STDIO:
            stdin = sys.stdin.buffer
            stored = client.put_object(
                bucket, key, stdin, content_type=content_type, metadata=metadata, progress=report
            )
        else:
            if not os.path.isfile(source):
                raise click.BadParameter(f"{source!r} is not a file", param_hint="SRC")
            stored = client.put_object(
                bucket, key, source, content_type=content_type, metadata=metadata, progress=report
            )
    session.err.print(output.transfer_summary("uploaded", source, output.object_url(bucket, key), stored))


def _download(session: Session, source: str, destination: str) -> None:
    bucket, key = parse_object_url(source)
    client: Client = session.client()
    url = output.object_url(bucket, key)
    if destination == STDIO:
        with _progress(session, f"{url} → stdout") as report:
            stored = client.download_object(bucket, key, sys.stdout.buffer, progress=report)
        session.err.print(output.transfer_summary("downloaded", url, "stdout", stored))
        return
    target = Path(destination)
    if target.is_dir() or destination.endswith(os.sep):
        name = key.rsplit("/", 1)[-1]
        if name in ("", ".", ".."):  # the server refuses such keys; a file name is never made of one
            raise click.BadParameter(
                f"{url} has no file name to save it under; name the file", param_hint="DST"
            )
        target = target / name
    with _progress(session, f"{url} → {target.name}") as report:
        stored = client.download_object(bucket, key, target, progress=report)
    session.err.print(output.transfer_summary("downloaded", url, str(target), stored))


@contextlib.contextmanager
def _progress(session: Session, description: str) -> Iterator[ProgressCallback | None]:
    """A progress bar on stderr when it is a terminal (None otherwise: nothing to draw)."""
    if not session.err.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=session.err, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def report(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield report


def _parse_metadata(pairs: tuple[str, ...]) -> dict[str, str]:
    metadata = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--meta")
        metadata[name.lower()] = value
    return metadata


COMMANDS = [make_bucket, remove_bucket, list_buckets, list_objects, copy, remove_object]
