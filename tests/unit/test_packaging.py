import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from wuzhao.packaging import ZIP_EPOCH, zip_directory

MakeTree = Callable[..., Path]


@pytest.fixture
def make_tree(tmp_path: Path) -> MakeTree:
    """Build a directory from {relative path: text}, in the order given."""
    count = 0

    def make(files: dict[str, str]) -> Path:
        nonlocal count
        count += 1
        root = tmp_path / f"tree{count}"
        root.mkdir()
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return root

    return make


def entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def test_same_tree_gives_same_bytes_whatever_order_and_mtime(make_tree: MakeTree) -> None:
    files = {"main.py": "def handler(e, c): return e\n", "lib/util.py": "X = 1\n", "a.txt": "a"}
    first = make_tree(files)
    second = make_tree(dict(reversed(files.items())))
    os.utime(second / "main.py", (1_000_000_000, 1_000_000_000))

    assert zip_directory(first) == zip_directory(second)
    assert zip_directory(first) == zip_directory(first)


def test_entries_are_sorted_posix_paths_with_fixed_time(make_tree: MakeTree) -> None:
    root = make_tree({"b.py": "b", "a/z.py": "z", "a/b/c.py": "c"})

    with zipfile.ZipFile(io.BytesIO(zip_directory(root))) as archive:
        infos = archive.infolist()

    assert [info.filename for info in infos] == ["a/b/c.py", "a/z.py", "b.py"]
    assert {info.date_time for info in infos} == {ZIP_EPOCH}
    assert {info.compress_type for info in infos} == {zipfile.ZIP_DEFLATED}


def test_caches_and_vcs_metadata_are_left_out(make_tree: MakeTree) -> None:
    root = make_tree(
        {
            "main.py": "pass",
            "main.pyc": "junk",
            "__pycache__/main.cpython-311.pyc": "junk",
            "pkg/__pycache__/x.txt": "junk",
            ".git/HEAD": "ref: refs/heads/main",
            ".env": "KEPT=1",
        }
    )

    assert entries(zip_directory(root)) == {".env": b"KEPT=1", "main.py": b"pass"}


def test_modes_are_normalised(make_tree: MakeTree) -> None:
    root = make_tree({"run.sh": "#!/bin/sh", "data.txt": "x", "other.txt": "y"})
    (root / "run.sh").chmod(0o700)
    (root / "data.txt").chmod(0o600)
    (root / "other.txt").chmod(0o664)

    with zipfile.ZipFile(io.BytesIO(zip_directory(root))) as archive:
        modes = {info.filename: (info.external_attr >> 16) & 0o777 for info in archive.infolist()}

    assert modes == {"data.txt": 0o644, "other.txt": 0o644, "run.sh": 0o755}


def test_symlinked_file_is_stored_as_its_content_and_directories_are_not_followed(
    make_tree: MakeTree,
) -> None:
    outside = make_tree({"secret/key": "k", "shared.py": "S = 1"})
    root = make_tree({"main.py": "pass"})
    (root / "shared.py").symlink_to(outside / "shared.py")
    (root / "everything").symlink_to(outside / "secret")
    (root / "dangling.py").symlink_to(root / "missing.py")

    assert entries(zip_directory(root)) == {"main.py": b"pass", "shared.py": b"S = 1"}


def test_a_file_is_not_a_code_dir(make_tree: MakeTree) -> None:
    root = make_tree({"main.py": "pass"})

    with pytest.raises(NotADirectoryError):
        zip_directory(root / "main.py")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
def test_an_unreadable_directory_fails_the_zip(make_tree: MakeTree) -> None:
    root = make_tree({"main.py": "pass", "private/data.txt": "x"})
    (root / "private").chmod(0)
    try:
        with pytest.raises(PermissionError):
            zip_directory(root)
    finally:
        (root / "private").chmod(0o755)
