"""Which zygote an instance is forked from: the imports of its handler's file."""

from __future__ import annotations

from pathlib import Path

import pytest

from wuzhao.runtimes.python.imports import handler_source, imported, shadows, uses_preloaded


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import numpy", {"numpy"}),
        ("import numpy as np", {"numpy"}),
        ("import os, numpy.linalg", {"os", "numpy"}),
        ("from numpy.linalg import norm", {"numpy"}),
        ("from numpy import *", {"numpy"}),
        ("def handler(e, c):\n    import h5py\n    return h5py", {"h5py"}),  # at call time, too
        ("from . import numpy", set()),  # the code's own module
        ("from .numpy import x", set()),
        ("# import numpy\ntext = 'import numpy'", set()),  # comments and strings are not imports
        ("import numpy(", set()),  # does not parse: nothing
        ("", set()),
    ],
)
def test_the_imports_of_a_file(source: str, found: set[str]) -> None:
    assert imported(source) == found


@pytest.mark.parametrize(
    ("entry", "shadowing"),
    [
        ("numpy", True),
        ("numpy.py", True),
        ("numpy.cpython-311-x86_64-linux-gnu.so", True),
        ("numpy_helpers.py", False),
        ("mynumpy", False),
        ("main.py", False),
    ],
)
def test_a_module_of_the_code_shadows_one_of_the_same_name(entry: str, shadowing: bool) -> None:
    assert shadows(entry, {"numpy"}) is shadowing


def code(tmp_path: Path, files: dict[str, str]) -> str:
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    return str(tmp_path)


def test_the_handlers_file_is_the_module_before_the_functions_name(tmp_path: Path) -> None:
    root = code(tmp_path, {"main.py": "A", "pkg/app.py": "B", "pkg/sub/__init__.py": "C"})
    assert handler_source(root, "main.handler") == "A"
    assert handler_source(root, "pkg.app.handler") == "B"
    assert handler_source(root, "pkg/app.handler") == "B"
    assert handler_source(root, "pkg.sub.handler") == "C"
    assert handler_source(root, "missing.handler") is None
    assert handler_source(root, "handler") is None


@pytest.mark.parametrize(
    ("files", "handler", "uses"),
    [
        ({"main.py": "import numpy\n"}, "main.handler", True),
        ({"app/fn.py": "from numpy.fft import fft\n"}, "app.fn.handler", True),
        ({"main.py": "import h5py.x\n"}, "main.handler", True),  # any of the preloaded modules
        ({"main.py": "import os\n"}, "main.handler", False),
        ({"main.py": "import helper\n", "helper.py": "import numpy\n"}, "main.handler", False),  # not seen
        ({"main.py": "import numpy\n", "numpy.py": ""}, "main.handler", False),  # its own numpy wins
        ({"main.py": "import numpy\n", "numpy/__init__.py": ""}, "main.handler", False),
        ({"main.py": "import numpy\n"}, "other.handler", False),
    ],
)
def test_an_instance_uses_the_preloaded_zygote_when_its_handler_imports_a_preloaded_module(
    tmp_path: Path, files: dict[str, str], handler: str, uses: bool
) -> None:
    assert uses_preloaded(code(tmp_path, files), handler, ("numpy.linalg", "h5py")) is uses


def test_nothing_preloaded_or_no_code_means_the_plain_zygote(tmp_path: Path) -> None:
    root = code(tmp_path, {"main.py": "import numpy\n"})
    assert uses_preloaded(root, "main.handler", ()) is False
    assert uses_preloaded(str(tmp_path / "gone"), "main.handler", ("numpy",)) is False
