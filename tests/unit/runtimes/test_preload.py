"""Where a preloaded module may come from: a runtime layer or the standard library, nothing else."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

from wuzhao.runtimes.python.preload import origin_allowed

STDLIB = os.path.realpath(sysconfig.get_paths()["stdlib"])


@pytest.mark.parametrize(
    ("file", "allowed"),
    [
        ("{layer}/python/numpy/__init__.py", True),
        ("{layer}/flat.py", True),
        (f"{STDLIB}/json/__init__.py", True),
        (f"{STDLIB}/lib-dynload/_json.so", True),
        (f"{STDLIB}/site-packages/numpy/__init__.py", False),  # the installation's own packages
        (f"{STDLIB}/dist-packages/numpy/__init__.py", False),
        ("{other}/numpy/__init__.py", False),
        ("{layer}-evil/numpy/__init__.py", False),  # a sibling whose name starts like the layer's
        (None, True),  # built in, or a namespace package
    ],
)
def test_a_preloaded_module_comes_from_a_layer_or_the_standard_library(
    tmp_path: Path, file: str | None, allowed: bool
) -> None:
    layer, other = tmp_path / "sci", tmp_path / "venv"
    path = None if file is None else file.format(layer=layer, other=other)
    assert origin_allowed(path, [str(layer)]) is allowed
