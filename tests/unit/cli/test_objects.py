import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner
from rich.console import Console
from tests.unit.cli.conftest import Run, Server, failed, ok

from wuzhao.cli.main import Session, cli
from wuzhao.cli.objects import parse_object_url

DATA = b"object bytes " * 1000
SHA = hashlib.sha256(DATA).hexdigest()
STORED = {
    "bucket": "pics",
    "key": "cat.png",
    "size": len(DATA),
    "etag": SHA,
    "content_type": "image/png",
    "created_at": "2024-05-01T12:00:00Z",
    "modified_at": "2024-05-02T08:30:15Z",
    "metadata": {},
}
OBJECT_HEADERS = {
    "ETag": f'"{SHA}"',
    "Content-Type": "image/png",
    "Last-Modified": "Thu, 02 May 2024 08:30:15 GMT",
}


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("wz://pics/cat.png", ("pics", "cat.png")),
        ("wz://pics/a/b/c", ("pics", "a/b/c")),
        ("wz://pics/dir/", ("pics", "dir/")),
    ],
)
def test_object_urls(url: str, parsed: tuple[str, str]) -> None:
    assert parse_object_url(url) == parsed


@pytest.mark.parametrize(
    "url", ["pics/cat.png", "s3://pics/cat", "wz://", "wz:///key", "wz://pics", "wz://pics/"]
)
def test_not_object_urls(url: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_object_url(url)


def run_with_terminal(args: list[str], *replies: httpx.Response, terminal: bool) -> tuple[int, str, Server]:
    """Run with a stderr that is (or is not) a terminal; what it showed."""
    server = Server(list(replies))
    shown = io.StringIO()
    session = Session(
        environ={"WUZHAO_API_KEY": "k"},
        transport=httpx.MockTransport(server),
        err=Console(file=shown, force_terminal=terminal, width=120, highlight=False, soft_wrap=True),
    )
    result = CliRunner().invoke(cli, args, obj=session, catch_exceptions=False)
    return result.exit_code, shown.getvalue(), server


def test_cp_upload_draws_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    source = tmp_path / "cat.png"
    source.write_bytes(DATA)

    code, shown, server = run_with_terminal(["cp", str(source), "wz://pics/"], ok(STORED, 201), terminal=True)

    assert code == 0
    request = server.requests[0]
    assert request.url.path == "/v1/buckets/pics/objects/cat.png"  # wz://pics/: the file's own name
    assert request.content == DATA
    assert "━" in shown  # the bar
    assert f"uploaded {source} to wz://pics/cat.png: 12.7 KiB, sha256 {SHA[:12]}" in shown


def test_cp_draws_no_bar_when_stderr_is_piped(tmp_path: Path) -> None:
    source = tmp_path / "cat.png"
    source.write_bytes(DATA)

    code, shown, _ = run_with_terminal(
        ["cp", str(source), "wz://pics/cat.png"], ok(STORED, 201), terminal=False
    )

    assert code == 0
    assert "━" not in shown and "\x1b" not in shown
    assert shown.strip() == f"uploaded {source} to wz://pics/cat.png: 12.7 KiB, sha256 {SHA[:12]}"


def test_cp_download_into_a_directory_and_to_stdout(run: Callable[..., Run], tmp_path: Path) -> None:
    to_dir = run(
        ["cp", "wz://pics/dir/cat.png", str(tmp_path)],
        httpx.Response(200, content=DATA, headers=OBJECT_HEADERS),
    )
    to_stdout = run(
        ["cp", "wz://pics/cat.png", "-"], httpx.Response(200, content=DATA, headers=OBJECT_HEADERS)
    )

    assert to_dir.result.exit_code == 0, to_dir.result.output
    assert (tmp_path / "cat.png").read_bytes() == DATA
    assert to_dir.request.url.raw_path == b"/v1/buckets/pics/objects/dir%2Fcat.png"
    assert to_stdout.result.exit_code == 0
    assert to_stdout.result.stdout_bytes == DATA  # only the bytes: the summary went to stderr
    assert "downloaded wz://pics/cat.png to stdout" in to_stdout.result.stderr


def test_cp_upload_from_stdin_with_metadata(run: Callable[..., Run]) -> None:
    done = run(
        ["cp", "-", "wz://pics/raw.bin", "--content-type", "text/csv", "--meta", "Owner=me"],
        ok(STORED, 201),
        stdin="a,b\n1,2\n",
    )

    assert done.result.exit_code == 0, done.result.output
    assert done.request.content == b"a,b\n1,2\n"
    assert done.request.headers["content-type"] == "text/csv"
    assert done.request.headers["x-wuzhao-meta-owner"] == "me"


@pytest.mark.parametrize(
    "args",
    [
        ["cp", "a.txt", "b.txt"],  # both local
        ["cp", "wz://a/x", "wz://b/y"],  # both remote
        ["cp", "-", "wz://pics/"],  # stdin has no name to use as the key
        ["cp", "wz://pics/", "out"],  # no key to download
        ["cp", "nonexistent-file", "wz://pics/k"],
        ["cp", "-", "wz://pics/k", "--meta", "novalue"],
        ["rm-object", "pics/cat.png"],
    ],
)
def test_usage_errors_send_nothing(run: Callable[..., Run], args: list[str]) -> None:
    done = run(args)
    assert done.result.exit_code == 2, done.result.output
    assert done.server.requests == []


def test_ls_objects_pages_through_and_prints_rows_when_piped(run: Callable[..., Run]) -> None:
    second = {**STORED, "key": "dog.png", "size": 2048}
    done = run(
        ["ls-objects", "wz://pics/", "--prefix", "c"],
        ok({"objects": [STORED], "next": "cat.png"}),
        ok({"objects": [second], "next": None}),
    )

    assert done.result.exit_code == 0, done.result.output
    assert done.result.stdout.splitlines() == [
        "KEY\tSIZE\tMODIFIED\tSHA256\tCONTENT TYPE",
        f"cat.png\t12.7 KiB\t2024-05-02 08:30:15\t{SHA[:12]}\timage/png",
        f"dog.png\t2.0 KiB\t2024-05-02 08:30:15\t{SHA[:12]}\timage/png",
    ]
    assert [dict(r.url.params) for r in done.server.requests] == [
        {"prefix": "c"},
        {"prefix": "c", "after": "cat.png"},
    ]


def test_bucket_commands(run: Callable[..., Run]) -> None:
    bucket = {"name": "pics", "created_at": "2024-05-01T12:00:00Z"}
    made = run(["mb", "pics"], ok(bucket, 201))
    there = run(["mb", "pics"], ok(bucket, 200))
    listed = run(["ls-buckets"], ok({"buckets": [bucket]}))
    removed = run(["rb", "pics"], httpx.Response(204))
    busy = run(["rb", "pics"], failed(409, "Conflict", "bucket 'pics' still holds 2 objects"))

    assert made.result.stderr == "created bucket pics\n"
    assert there.result.stderr == "there already is a bucket pics\n"
    assert listed.result.stdout == "BUCKET\tCREATED\npics\t2024-05-01 12:00:00\n"
    assert removed.result.stderr == "deleted bucket pics\n"
    assert busy.result.exit_code == 1
    assert "Conflict" in busy.result.stderr and "still holds 2 objects" in busy.result.stderr


def test_rm_object(run: Callable[..., Run]) -> None:
    done = run(["rm-object", "wz://pics/a/[b].png"], httpx.Response(204))
    assert done.result.exit_code == 0
    assert done.request.method == "DELETE"
    assert done.request.url.raw_path == b"/v1/buckets/pics/objects/a%2F%5Bb%5D.png"
    assert done.result.stderr == "deleted wz://pics/a/[b].png\n"  # brackets are not read as markup
