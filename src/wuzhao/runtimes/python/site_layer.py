"""A runtime layer made of packages installed for this interpreter: ``<layer>/python/<package>``.

An instance's Python is the server's own build (the image at /var/lang), so
a package installed for the server's interpreter, compiled extensions
included, works inside a sandbox as it is. The tests and benchmarks build
their numpy layer this way; an operator can too (``pip install --target
<layer>/python`` does the same from an index).
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Sequence
from pathlib import Path


def copy_installed(packages: Sequence[str], layer: Path) -> Path:
    """Copy top-level ``packages`` into ``layer/python`` and return ``layer``.

    Each package's directory is copied whole, byte code included (mtimes
    kept, so it stays valid: a read-only layer could not cache it), with
    ``<package>.libs`` beside it when there is one (the shared libraries a
    manylinux wheel vendors, found through a relative run path).
    """
    target = layer / "python"
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise LookupError(f"{name!r} is not a package installed for this interpreter")
        source = Path(next(iter(spec.submodule_search_locations)))
        for directory in (source, source.with_name(f"{name}.libs")):
            if directory.is_dir():
                shutil.copytree(directory, target / directory.name, symlinks=True, dirs_exist_ok=True)
    for path in (layer, target):
        path.chmod(0o755)
    return layer
