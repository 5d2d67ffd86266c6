"""Images of code and runtime: names, selection, atomic and one-time builds; the loop ioctl's struct."""

from __future__ import annotations

import os
import struct
import sys
import threading
from pathlib import Path

import pytest

from wuzhao.sandbox import images, loop
from wuzhao.sandbox.images import PythonBuild

SHA = "ab" * 32
needs_mkfs = pytest.mark.skipif(images.mkfs() is None, reason="mkfs.erofs is not installed")


def test_code_images_are_named_by_their_package() -> None:
    assert images.code_image_name(SHA) == f"{SHA}.erofs"


@pytest.mark.parametrize("bad", ["", "ab" * 31, "AB" * 32, "../" + "a" * 61, "g" * 64, SHA + "/x"])
def test_code_image_names_take_only_a_sha256(bad: str) -> None:
    with pytest.raises(ValueError):
        images.code_image_name(bad)


@pytest.mark.parametrize(
    ("relative", "kept"),
    [
        ("os.py", True),
        ("json/decoder.py", True),
        ("__pycache__/os.cpython-311.pyc", True),
        ("lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so", True),
        ("unittest/test/test_case.py", True),  # only the top-level test package goes
        ("config-3.11-x86_64-linux-gnu/Makefile", True),
        ("config-3.11-x86_64-linux-gnu/libpython3.11.a", False),  # for linking only
        ("site-packages/", False),
        ("site-packages/pip/__init__.py", False),  # the server's packages, not the runtime's
        ("dist-packages/", False),
        ("test/", False),
        ("test/test_os.py", False),
        ("idlelib/idle.py", False),
        ("tkinter/", False),
        ("turtledemo/", False),
        ("ensurepip/__init__.py", False),
        ("testing.py", True),
    ],
)
def test_the_standard_library_image_leaves_out_what_no_function_needs(relative: str, kept: bool) -> None:
    assert images.stdlib_keeps(relative) is kept


def fake_python(root: Path) -> PythonBuild:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python3.11").write_bytes(b"\x7fELF")
    (root / "lib" / "python3.11" / "json").mkdir(parents=True)
    (root / "lib" / "libpython3.11.so.1.0").write_bytes(b"\x7fELF")
    for relative in ("os.py", "json/__init__.py", "test/test_os.py", "site-packages/pip.py"):
        path = root / "lib" / "python3.11" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# python\n")
    return PythonBuild(str(root), "3.11.7", "bin/python3.11", ("lib/libpython3.11.so.1.0",), "lib/python3.11")


def test_python_image_holds_executable_library_and_the_kept_stdlib(tmp_path: Path) -> None:
    build = fake_python(tmp_path / "py")
    assert images.python_files(build) == [
        "bin/python3.11",
        "lib/libpython3.11.so.1.0",
        "lib/python3.11/json/__init__.py",
        "lib/python3.11/os.py",
    ]


def test_python_image_name_changes_with_the_build_not_with_time(tmp_path: Path) -> None:
    build = fake_python(tmp_path / "py")
    files = images.python_files(build)
    name = images.python_image_name(build, files)
    assert name.startswith("python-3.11.7-") and name.endswith(".erofs")
    assert images.python_image_name(build, images.python_files(build)) == name
    os.utime(tmp_path / "py" / "lib" / "python3.11" / "os.py", (0, 12345))
    assert images.python_image_name(build, files) != name


def test_package_image_name_follows_the_content(tmp_path: Path) -> None:
    files = {"wuzhao/__init__.py": b"x = 1\n", "wuzhao/a.py": b""}
    name = images.package_image_name(files, "0.1.0")
    assert name.startswith("wuzhao-0.1.0-") and name.endswith(".erofs")
    assert images.package_image_name(dict(reversed(files.items())), "0.1.0") == name
    assert images.package_image_name({**files, "wuzhao/a.py": b"y"}, "0.1.0") != name


def test_package_files_are_the_sources_only(tmp_path: Path) -> None:
    package = tmp_path / "wuzhao"
    (package / "sandbox" / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sandbox" / "api.py").write_text("A = 1\n")
    (package / "sandbox" / "__pycache__" / "api.cpython-311.pyc").write_bytes(b"\0")
    (package / "py.typed").write_text("")
    assert images.package_files(package) == {"wuzhao/__init__.py": b"", "wuzhao/sandbox/api.py": b"A = 1\n"}


def test_a_cached_image_is_built_once_even_by_concurrent_servers(tmp_path: Path, monkeypatch) -> None:
    built: list[Path] = []

    def fake_build(source: Path, target: Path) -> Path:
        built.append(target)
        target.write_bytes((source / "content").read_bytes())
        return target

    def stage(staging: Path) -> None:
        (staging / "content").write_text("image")

    monkeypatch.setattr(images, "build", fake_build)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(images.cached(tmp_path, "python-x-1.erofs", stage)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [tmp_path / "python-x-1.erofs"] * 4
    assert built == [tmp_path / "python-x-1.erofs"]
    # no staging directory or temporary file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [".python-x-1.erofs.lock", "python-x-1.erofs"]


def test_old_builds_of_the_same_kind_are_pruned(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(images, "build", lambda source, target: target.write_bytes(b"") or target)
    for n in range(images.KEEP_CACHED + 2):
        path = tmp_path / f"wuzhao-0.1.0-{n:016x}.erofs"
        images.cached(tmp_path, path.name, lambda staging: None)
        os.utime(path, (n, n))
    other = tmp_path / "python-3.11.7-0000000000000000.erofs"
    other.write_bytes(b"")
    os.utime(other, (0, 0))
    images.cached(tmp_path, "wuzhao-0.1.0-ffffffffffffffff.erofs", lambda staging: None)
    left = sorted(p.name for p in tmp_path.glob("*.erofs"))
    assert len([name for name in left if name.startswith("wuzhao-")]) == images.KEEP_CACHED
    assert "wuzhao-0.1.0-ffffffffffffffff.erofs" in left
    assert "wuzhao-0.1.0-0000000000000000.erofs" not in left  # the oldest went
    assert other.name in left  # another kind is not touched


@needs_mkfs
def test_build_is_atomic_and_cleans_up_after_a_failure(tmp_path: Path) -> None:
    source = tmp_path / "code"
    source.mkdir()
    (source / "app.py").write_text("def handler(event, context):\n    return 1\n")
    target = images.build(source, tmp_path / "out" / f"{SHA}.erofs")
    assert target.read_bytes()[1024:1028] == struct.pack("<I", 0xE0F5E1E2)  # the EROFS magic
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(images.ImageError):
        images.build(tmp_path / "missing", tmp_path / "out" / "other.erofs")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [target.name]


def test_loop_config_is_the_kernels_struct() -> None:
    raw = loop.config(7, "/var/cache/wuzhao/python.erofs")
    assert len(raw) == 304  # struct loop_config
    fd, block_size = struct.unpack_from("=II", raw)
    assert (fd, block_size) == (7, 0)
    flags = struct.unpack_from("=I", raw, 8 + 5 * 8 + 3 * 4)[0]  # loop_info64.lo_flags
    assert flags == loop.LO_FLAGS_READ_ONLY | loop.LO_FLAGS_AUTOCLEAR
    name = raw[8 + 5 * 8 + 4 * 4 :][:64]
    assert name.rstrip(b"\0") == b"/var/cache/wuzhao/python.erofs"
    long_name = loop.config(7, "/x" * 100)[8 + 5 * 8 + 4 * 4 :][:64]
    assert long_name.endswith(b"\0")  # cut, still NUL-terminated


HOME = "/root/.pyenv/versions/3.11.7"


@pytest.mark.parametrize(
    ("relative", "rewritten"),
    [
        ("lib/python3.11/_sysconfigdata__linux_x86_64-linux-gnu.py", True),
        ("lib/python3.11/config-3.11-x86_64-linux-gnu/Makefile", True),
        ("lib/python3.11/config-3.11-x86_64-linux-gnu/python-config.py", True),
        ("lib/python3.11/config-3.11-x86_64-linux-gnu/python.o", False),
        ("lib/python3.11/sysconfig.py", False),
        ("lib/python3.11/os.py", False),
    ],
)
def test_only_the_builds_records_of_its_prefix_are_rewritten(relative: str, rewritten: bool) -> None:
    assert images.records_prefix(relative) is rewritten


def test_relocate_replaces_the_installation_path_only() -> None:
    text = f"'prefix': '{HOME}',\nLIBDIR={HOME}/lib -Wl,-rpath={HOME}/lib\nother={HOME}-debug:{HOME}\n"
    assert images.relocate(text, HOME) == (
        "'prefix': '/var/lang',\nLIBDIR=/var/lang/lib -Wl,-rpath=/var/lang/lib\n"
        f"other={HOME}-debug:/var/lang\n"
    )


def test_relocating_a_staged_copy_never_writes_through_to_the_installation(tmp_path: Path) -> None:
    original = tmp_path / "home" / "_sysconfigdata_x.py"
    original.parent.mkdir()
    original.write_text(f"build_time_vars = {{'prefix': '{tmp_path / 'home'}'}}\n")
    staged = tmp_path / "stage" / "lib" / "python3.11" / "_sysconfigdata_x.py"
    staged.parent.mkdir(parents=True)
    os.link(original, staged)  # how the stage is filled
    images._relocate_copy(staged, str(tmp_path / "home"), "/var/lang/lib/python3.11/_sysconfigdata_x.py")
    assert str(tmp_path) in original.read_text()
    assert staged.read_text() == "build_time_vars = {'prefix': '/var/lang'}\n"
    compiled = (
        staged.parent
        / "__pycache__"
        / f"_sysconfigdata_x.cpython-{sys.version_info[0]}{sys.version_info[1]}.pyc"
    )
    assert b"/var/lang/lib/python3.11/_sysconfigdata_x.py" in compiled.read_bytes()
    assert str(tmp_path).encode() not in compiled.read_bytes()


# Operator runtime layers


def a_layer(root: Path) -> Path:
    (root / "python" / "sci").mkdir(parents=True)
    (root / "python" / "sci" / "__init__.py").write_text("VERSION = 1\n")
    (root / "python" / "sci_helper.py").write_text("def f():\n    return 1\n")
    return root


def test_a_runtime_layers_key_stays_while_its_tree_does(tmp_path: Path) -> None:
    layer = a_layer(tmp_path / "sci")
    key, unreadable = images.tree_key(layer)
    assert images.tree_key(layer) == (key, unreadable) and unreadable == []
    (layer / "python" / "sci_helper.py").read_text()  # reading is no change
    assert images.tree_key(layer)[0] == key
    os.utime(layer / "python" / "sci_helper.py")  # a touch is
    assert images.tree_key(layer)[0] != key


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "python" / "sci" / "__init__.py").write_text("VERSION = 2\n"),  # same size
        lambda root: (root / "python" / "new.py").write_text(""),
        lambda root: (root / "python" / "sci_helper.py").unlink(),
        lambda root: (root / "python" / "sci_helper.py").chmod(0o600),
        lambda root: (root / "python" / "link").symlink_to("sci"),
    ],
)
def test_any_in_place_upgrade_changes_a_runtime_layers_key(tmp_path: Path, change) -> None:
    layer = a_layer(tmp_path / "sci")
    before = images.tree_key(layer)[0]
    change(layer)
    assert images.tree_key(layer)[0] != before


def test_entries_a_function_cannot_read_are_reported(tmp_path: Path) -> None:
    layer = a_layer(tmp_path / "sci")
    (layer / "python" / "sci_helper.py").chmod(0o600)
    (layer / "python" / "sci").chmod(0o700)
    assert sorted(images.tree_key(layer)[1]) == ["python/sci", "python/sci_helper.py"]
    layer.chmod(0o700)  # the root becomes /opt/<name> itself
    assert sorted(images.tree_key(layer)[1]) == [".", "python/sci", "python/sci_helper.py"]


def test_runtime_layer_images_are_named_by_directory_and_tree_and_pruned_by_layer() -> None:
    key = "0123456789abcdef" * 4
    name = images.layer_image_name("sci", "/srv/sci", key)
    others = [
        images.layer_image_name("sci", "/srv/other", key),
        images.layer_image_name("sci", "/srv/sci", "f" * 64),
    ]
    assert name.startswith("layer-sci-") and name.endswith(".erofs") and name not in others
    kinds = {n.rsplit("-", 1)[0] for n in [name, *others]}  # what pruning keeps apart
    assert kinds == {"layer-sci"}
    assert images.layer_image_name("sci-x", "/srv/sci", key).rsplit("-", 1)[0] == "layer-sci-x"


def test_a_runtime_layer_is_built_from_its_directory_once_per_tree(tmp_path: Path, monkeypatch) -> None:
    built: list[Path] = []

    def fake_build(source: Path, target: Path) -> Path:
        built.append(source)
        target.write_bytes(b"")
        return target

    monkeypatch.setattr(images, "build", fake_build)
    layer = a_layer(tmp_path / "sci")
    cache = tmp_path / "cache"
    first = images.layer_image("sci", str(layer), cache)
    assert images.layer_image("sci", str(layer), cache) == first  # a restart: not built again
    (layer / "python" / "sci_helper.py").write_text("def f():\n    return 2\n")
    second = images.layer_image("sci", str(layer), cache)
    assert second != first and built == [layer, layer]  # straight from the directory, no copy
    with pytest.raises(images.ImageError, match="not a directory"):
        images.layer_image("gone", str(tmp_path / "missing"), cache)


@needs_mkfs
def test_a_runtime_layers_image_holds_its_tree(tmp_path: Path) -> None:
    layer = a_layer(tmp_path / "sci")
    image = images.layer_image("sci", str(layer), tmp_path / "cache")
    assert image.read_bytes()[1024:1028] == struct.pack("<I", 0xE0F5E1E2)
    assert image.parent == tmp_path / "cache" and image.name.startswith("layer-sci-")
