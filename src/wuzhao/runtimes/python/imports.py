"""Which zygote an instance is forked from: does its handler import a preloaded module?

Forking the zygote that preloaded the operator's modules costs every cold
start about half a millisecond more than forking the plain one (a bigger
process to copy; docs/performance.md), so only an instance that uses what it
holds is forked from it. The rule, read once per code package and handler
(:func:`uses_preloaded`): the handler's own file has an import statement
naming a preloaded module's top-level package (``import numpy``,
``from numpy.linalg import norm``, anywhere in the file), and the code does
not ship a module of that name itself (``import`` would find it first in
/var/task: the function keeps its own). An import made only from another
module of the code is not seen; that instance imports the module inside its
sandbox as it would without preloading.

Read on the server, never executed: ``ast`` parses the file.
"""

from __future__ import annotations

import ast
import functools
import os
from collections.abc import Collection


@functools.lru_cache(maxsize=4096)  # code directories are content-addressed: a result stays true
def uses_preloaded(code_dir: str, handler: str, preloaded: tuple[str, ...]) -> bool:
    """Whether ``handler`` (``module.function``) of the code in ``code_dir`` imports one of ``preloaded``."""
    tops = {name.split(".")[0] for name in preloaded}
    try:
        entries = os.listdir(code_dir)
    except OSError:
        return False
    if any(shadows(entry, tops) for entry in entries):
        return False
    source = handler_source(code_dir, handler)
    return source is not None and bool(imported(source) & tops)


def shadows(entry: str, tops: Collection[str]) -> bool:
    """Whether a top-level entry of the code (``numpy/``, ``numpy.py``, ``numpy.*.so``) is one of ``tops``."""
    return entry.split(".")[0] in tops


def handler_source(code_dir: str, handler: str) -> str | None:
    """The text of the handler's module (``dir/module.function`` accepted), None if it has no file."""
    module = handler.rpartition(".")[0].replace("/", ".")
    if not module:
        return None
    base = os.path.join(code_dir, *module.split("."))
    for path in (f"{base}.py", os.path.join(base, "__init__.py")):
        try:
            with open(path, "rb") as source:
                return source.read().decode("utf-8", "replace")
        except OSError:
            continue
    return None


def imported(source: str) -> set[str]:
    """The top-level packages ``source`` imports absolutely, anywhere; none if it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found
