"""The Python runtime's import path: the task root, then each layer INIT names."""

from __future__ import annotations

from pathlib import Path

from wuzhao.runtimes.python.bootstrap import import_path


def test_each_layer_adds_its_python_dir_and_its_root_in_init_order(tmp_path: Path) -> None:
    for name in ("sci", "lib", "bare"):
        (tmp_path / name).mkdir()
    (tmp_path / "sci" / "python").mkdir()
    (tmp_path / "lib" / "python").mkdir()
    dirs = {name: str(tmp_path / name) for name in ("sci", "lib", "bare")}
    assert import_path("/var/task", ["lib", "sci", "bare"], dirs) == [
        "/var/task",
        f"{tmp_path}/lib/python",
        f"{tmp_path}/lib",
        f"{tmp_path}/sci/python",
        f"{tmp_path}/sci",
        f"{tmp_path}/bare",  # no python/ in it: only its root
    ]


def test_unknown_missing_or_malformed_layers_add_nothing(tmp_path: Path) -> None:
    dirs = {"gone": str(tmp_path / "gone"), "x": str(tmp_path)}
    assert import_path("/var/task", ["gone", "unknown", 7, None], dirs) == ["/var/task"]
    assert import_path("/var/task", "x", dirs) == ["/var/task"]  # not a list
    assert import_path("/var/task", [], {}) == ["/var/task"]
