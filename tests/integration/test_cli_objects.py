"""The object commands of `wuzhao` against a real server: mb, cp both ways, ls-objects, rm-object, rb."""

from __future__ import annotations

import hashlib
import os
import pty
import subprocess
from pathlib import Path

from tests.integration.conftest import WUZHAO, Server


def test_a_round_trip_through_the_cli(server: Server, tmp_path: Path) -> None:
    source = tmp_path / "report.csv"
    source.write_bytes(os.urandom(3 * 1024 * 1024))

    made = server.cli("mb", "cli-bucket")
    assert (made.returncode, made.stderr) == (0, "created bucket cli-bucket\n")
    assert server.cli("mb", "cli-bucket").stderr == "there already is a bucket cli-bucket\n"

    up = server.cli("cp", str(source), "wz://cli-bucket/reports/")
    assert up.returncode == 0, up.stderr
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert f"to wz://cli-bucket/reports/report.csv: 3.0 MiB, sha256 {digest[:12]}" in up.stderr
    assert up.stdout == ""
    piped = server.cli("cp", "-", "wz://cli-bucket/notes.txt", input="hello from stdin\n")
    assert piped.returncode == 0, piped.stderr

    listed = server.cli("ls-objects", "cli-bucket")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert rows[0] == ["KEY", "SIZE", "MODIFIED", "SHA256", "CONTENT TYPE"]
    assert [(row[0], row[1], row[3], row[4]) for row in rows[1:]] == [
        (
            "notes.txt",
            "17 B",
            hashlib.sha256(b"hello from stdin\n").hexdigest()[:12],
            "application/octet-stream",
        ),
        ("reports/report.csv", "3.0 MiB", digest[:12], "text/csv"),
    ]
    under = server.cli("ls-objects", "wz://cli-bucket/reports/")
    assert [line.split("\t")[0] for line in under.stdout.splitlines()[1:]] == ["reports/report.csv"]

    into_dir = tmp_path / "down"
    into_dir.mkdir()
    down = server.cli("cp", "wz://cli-bucket/reports/report.csv", str(into_dir))
    assert down.returncode == 0, down.stderr
    assert (into_dir / "report.csv").read_bytes() == source.read_bytes()
    to_stdout = server.cli("cp", "wz://cli-bucket/notes.txt", "-")
    assert (to_stdout.returncode, to_stdout.stdout) == (0, "hello from stdin\n")

    busy = server.cli("rb", "cli-bucket")
    assert busy.returncode == 1
    assert "Conflict" in busy.stderr and "still holds 2 objects" in busy.stderr
    for key in ("notes.txt", "reports/report.csv"):
        removed = server.cli("rm-object", f"wz://cli-bucket/{key}")
        assert (removed.returncode, removed.stderr) == (0, f"deleted wz://cli-bucket/{key}\n")
    assert server.cli("rb", "cli-bucket").returncode == 0
    assert "no buckets" in server.cli("ls-buckets").stderr


def test_a_missing_object_is_an_error_and_leaves_no_file(server: Server, tmp_path: Path) -> None:
    assert server.cli("mb", "cli-missing").returncode == 0
    target = tmp_path / "never.bin"
    missing = server.cli("cp", "wz://cli-missing/nope", str(target))
    assert missing.returncode == 1
    assert "NotFound" in missing.stderr and "'nope' does not exist" in missing.stderr
    assert list(tmp_path.iterdir()) == []
    unknown = server.cli("cp", str(tmp_path), "wz://no-such-bucket/x")
    assert unknown.returncode == 2  # a directory is not a file: a usage error, before any request


def test_the_progress_bar_shows_on_a_terminal(server: Server, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(8 * 1024 * 1024))
    assert server.cli("mb", "cli-progress").returncode == 0
    main, terminal = pty.openpty()
    env = {
        **server.env,
        "WUZHAO_URL": server.url,
        "WUZHAO_DATA_DIR": str(server.data_dir),
        "TERM": "xterm",
        "COLUMNS": "150",
    }
    process = subprocess.Popen(
        [*WUZHAO, "cp", str(source), "wz://cli-progress/big.bin"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        shown += data
    os.close(main)
    assert process.wait(timeout=60) == 0, shown
    assert "━".encode() in shown  # the bar was drawn
    assert b"uploaded" in shown
