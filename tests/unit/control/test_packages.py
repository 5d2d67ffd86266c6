import hashlib
import io
import shutil
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from wuzhao.control.packages import CodePackages
from wuzhao.errors import InvalidCode, PayloadTooLarge

MakePackages = Callable[..., CodePackages]
Entry = tuple[str, bytes] | tuple[str, bytes, int]

HANDLER = ("main.py", "main/__init__.py")


def make_zip(*entries: Entry) -> bytes:
    """A zip of (name, data[, unix mode]) entries."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry in entries:
            info = zipfile.ZipInfo(entry[0], date_time=(2020, 1, 1, 0, 0, 0))
            mode = entry[2] if len(entry) == 3 else stat.S_IFREG | 0o644
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entry[1])
    return buffer.getvalue()


@pytest.fixture
def make_packages(tmp_path: Path) -> MakePackages:
    def make(max_bytes: int = 1024 * 1024, max_unpacked_bytes: int = 4 * 1024 * 1024) -> CodePackages:
        return CodePackages(tmp_path / "data", max_bytes=max_bytes, max_unpacked_bytes=max_unpacked_bytes)

    return make


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_valid_zip_is_stored_and_unpacked(make_packages: MakePackages, tmp_path: Path) -> None:
    data = make_zip(
        ("main.py", b"def handler(e, c):\n    return e\n"),
        ("lib/util.py", b"X = 1\n"),
        ("bin/tool", b"#!/bin/sh\necho hi\n", stat.S_IFREG | 0o755),
        ("secret.txt", b"private", stat.S_IFREG | 0o600),
    )
    packages = make_packages()
    info = packages.add(data, required_files=HANDLER)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.size == len(data)

    stored = tmp_path / "data" / "packages" / f"{info.sha256}.zip"
    assert stored.read_bytes() == data
    assert mode(stored) == 0o644

    code = packages.code_dir(info.sha256)
    assert code == tmp_path / "data" / "code" / info.sha256
    assert (code / "main.py").read_bytes() == b"def handler(e, c):\n    return e\n"
    assert (code / "lib" / "util.py").read_text() == "X = 1\n"
    # World-readable, never writable by others; the exec bit survives.
    assert mode(code / "main.py") == 0o644
    assert mode(code / "secret.txt") == 0o644
    assert mode(code / "bin" / "tool") == 0o755
    assert mode(code) == mode(code / "lib") == mode(code / "bin") == 0o755
    assert mode(tmp_path / "data" / "code") == mode(tmp_path / "data" / "packages") == 0o755
    # No staging directory or temporary file is left behind.
    assert [p.name for p in (tmp_path / "data" / "code").iterdir()] == [info.sha256]
    assert [p.name for p in (tmp_path / "data" / "packages").iterdir()] == [stored.name]


def test_adding_the_same_bytes_again_is_idempotent(make_packages: MakePackages) -> None:
    data = make_zip(("main.py", b"x = 1\n"))
    packages = make_packages()
    first = packages.add(data)
    inode = packages.code_dir(first.sha256).stat().st_ino
    second = packages.add(data)
    assert second == first
    assert packages.code_dir(first.sha256).stat().st_ino == inode  # not unpacked again


def test_different_code_gets_a_different_directory(make_packages: MakePackages) -> None:
    packages = make_packages()
    a = packages.add(make_zip(("main.py", b"a = 1\n")))
    b = packages.add(make_zip(("main.py", b"b = 2\n")))
    assert a.sha256 != b.sha256
    assert (packages.code_dir(a.sha256) / "main.py").read_text() == "a = 1\n"
    assert (packages.code_dir(b.sha256) / "main.py").read_text() == "b = 2\n"


def test_a_second_store_on_the_same_root_sees_the_package(make_packages: MakePackages) -> None:
    data = make_zip(("main.py", b"x = 1\n"))
    sha = make_packages().add(data).sha256
    assert (make_packages().code_dir(sha) / "main.py").is_file()


@pytest.mark.parametrize(
    "data",
    [b"", b"not a zip at all", b"PK\x03\x04" + b"\0" * 40, make_zip(("main.py", b"x"))[:-10]],
    ids=["empty", "text", "bad-header", "truncated"],
)
def test_not_a_zip_is_invalid_code(make_packages: MakePackages, data: bytes) -> None:
    with pytest.raises(InvalidCode) as info:
        make_packages().add(data)
    assert info.value.field == "code"


def test_corrupt_entry_is_invalid_code(make_packages: MakePackages) -> None:
    payload = b"hello world " * 100
    data = bytearray(make_zip(("main.py", payload)))
    # Flip a byte inside the compressed data: the CRC check must catch it.
    start = data.index(b"main.py") + len(b"main.py")
    data[start + 5] ^= 0xFF
    with pytest.raises(InvalidCode):
        make_packages().add(bytes(data))


@pytest.mark.parametrize(
    "name",
    ["../evil.py", "lib/../../evil.py", "/etc/passwd", "a/../../b", "..\\evil.py", "lib\\..\\x.py"],
)
def test_entries_pointing_outside_are_invalid_code(
    make_packages: MakePackages, tmp_path: Path, name: str
) -> None:
    with pytest.raises(InvalidCode, match="outside") as info:
        make_packages().add(make_zip(("main.py", b"x"), (name, b"evil")))
    assert info.value.field == "code"
    assert not (tmp_path / "evil.py").exists()
    assert list((tmp_path / "data" / "code").iterdir()) == []
    assert list((tmp_path / "data" / "packages").iterdir()) == []


def test_symlink_entry_is_invalid_code(make_packages: MakePackages, tmp_path: Path) -> None:
    data = make_zip(("main.py", b"x"), ("link", b"/etc/shadow", stat.S_IFLNK | 0o777))
    with pytest.raises(InvalidCode, match="symbolic link"):
        make_packages().add(data)
    assert list((tmp_path / "data" / "packages").iterdir()) == []


def test_zip_over_max_bytes_is_payload_too_large(make_packages: MakePackages) -> None:
    data = make_zip(("main.py", bytes(range(256)) * 8))
    packages = make_packages(max_bytes=len(data) - 1)
    with pytest.raises(PayloadTooLarge) as info:
        packages.add(data)
    assert info.value.field == "code"
    assert make_packages(max_bytes=len(data)).add(data).size == len(data)


def test_unpacked_size_over_the_limit_is_payload_too_large(
    make_packages: MakePackages, tmp_path: Path
) -> None:
    # A zip bomb in miniature: 1 MB of zeros compresses to about a kilobyte.
    data = make_zip(("main.py", b"x = 1\n"), ("zeros.bin", b"\0" * 1024 * 1024))
    assert len(data) < 10_000
    with pytest.raises(PayloadTooLarge, match="unpacks to"):
        make_packages(max_unpacked_bytes=1024 * 1024).add(data)
    assert list((tmp_path / "data" / "code").iterdir()) == []
    assert make_packages(max_unpacked_bytes=1024 * 1024 + 6).add(data).size == len(data)


@pytest.mark.parametrize(
    ("files", "ok"),
    [
        (["main.py"], True),
        (["main/__init__.py"], True),
        (["lib/main.py"], False),
        (["main.pyc"], False),
        (["README.md"], False),
    ],
)
def test_required_files(make_packages: MakePackages, files: list[str], ok: bool) -> None:
    data = make_zip(*((name, b"x = 1\n") for name in files))
    packages = make_packages()
    if ok:
        packages.add(data, required_files=HANDLER)
    else:
        with pytest.raises(InvalidCode) as info:
            packages.add(data, required_files=HANDLER)
        assert info.value.field == "handler"
        assert "main.py or main/__init__.py" in info.value.message


def test_code_dir_unpacks_again_when_the_tree_was_removed(make_packages: MakePackages) -> None:
    packages = make_packages()
    sha = packages.add(
        make_zip(("main.py", b"x = 1\n"), ("run", b"#!/bin/sh\n", stat.S_IFREG | 0o755))
    ).sha256
    shutil.rmtree(packages.code_dir(sha))
    code = packages.code_dir(sha)
    assert (code / "main.py").read_text() == "x = 1\n"
    assert mode(code / "run") == 0o755


def test_add_unpacks_again_when_the_tree_was_removed(make_packages: MakePackages, tmp_path: Path) -> None:
    data = make_zip(("main.py", b"x = 1\n"))
    packages = make_packages()
    sha = packages.add(data).sha256
    tree = tmp_path / "data" / "code" / sha
    shutil.rmtree(tree)
    packages.add(data)
    assert (tree / "main.py").is_file()
