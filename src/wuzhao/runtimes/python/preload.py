"""Preloading: the operator's heavy libraries, imported by a zygote before it forks any instance.

A zygote started with ``--preload numpy,h5py`` imports those modules from the
operator's runtime layers (``WUZHAO_RUNTIME_LAYERS``), found as an instance
finds them: each layer's ``python`` directory, then its root, in the layers'
order. An instance forked from it that imports numpy finds it in
``sys.modules``: its cold start is a fork, not a ~70 ms import.

What makes that safe to fork, here:

- Threads: a fork keeps only the calling thread, so a library's worker pool
  would be missing in every instance, and the locks its threads held stay
  held. OpenBLAS, OpenMP and MKL start such a pool when they are loaded unless
  told to use one thread: :data:`THREAD_LIMITS` are set before the first
  import (instances then compute on one thread, about the CPU their memory
  size buys anyway), and :func:`preload` fails if ``/proc/self/task`` lists
  any thread but the zygote's own.
- State: every instance starts with a copy of the zygote's memory, so a
  generator seeded at import would give every instance, of every function,
  the same numbers. CPython reseeds ``random`` in each child; :func:`reseed`,
  an at-fork hook, does the same for NumPy's global generator (about 0.1 ms,
  and only when ``numpy.random`` was preloaded). It is the one function here
  that runs after a fork, in the child, before ``sandbox/enter.py``.
- Paths: the zygote's namespace has the layers mounted where a sandbox has
  them (``wuzhao.sandbox.rootfs.enter_runtime``), so no module, code object
  or mapped library it holds names a host path.
- Trust: this is the operator's code, run as root in the zygote before any
  sandbox exists. A module must come from a runtime layer or the standard
  library (:func:`origin_allowed`); a function's code or layers are never
  imported in a zygote, only inside an instance's sandbox.
"""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
from collections.abc import Mapping, Sequence

from wuzhao.runtimes.python import bootstrap

# Read by the libraries when they are loaded: one thread, so none exists at fork.
THREAD_LIMITS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
THIRD_PARTY = ("site-packages", "dist-packages")  # the installation's, not the operator's layers


class PreloadError(Exception):
    """A module could not be preloaded; the message names it and says why."""


def preload(modules: Sequence[str], layer_dirs: Mapping[str, str]) -> None:
    """Import ``modules`` from the layers ``layer_dirs`` (name -> directory, in order) and the stdlib.

    The layers are on ``sys.path`` only meanwhile: an instance's runtime puts
    them back after its code (``bootstrap.import_path``).
    """
    os.environ.update(THREAD_LIMITS)
    path = bootstrap.layer_path(list(layer_dirs), layer_dirs)
    where = ", ".join(path) or "no layer directory"
    saved = sys.path[:]
    sys.path[:0] = path
    try:
        for name in modules:
            try:
                module = importlib.import_module(name)
            except BaseException as exc:  # a module's import may even call sys.exit
                raise PreloadError(
                    f"cannot import {name!r} (looked in {where} and the standard library): "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            if not origin_allowed(getattr(module, "__file__", None), list(layer_dirs.values())):
                raise PreloadError(
                    f"{name!r} was found at {module.__file__}, which is in no runtime layer ({where})"
                )
    finally:
        sys.path[:] = saved
    threads = sorted(os.listdir("/proc/self/task"))
    if len(threads) > 1:
        raise PreloadError(
            f"after importing {', '.join(modules)} the zygote runs {len(threads)} threads: a fork keeps "
            f"only the calling one, so instances would lack the others (and the locks they hold)"
        )
    os.register_at_fork(after_in_child=reseed)


def origin_allowed(file: str | None, layer_dirs: Sequence[str]) -> bool:
    """Whether a module's ``__file__`` lies in a layer or the standard library (not its site-packages).

    No file: built in, or a namespace package.
    """
    if file is None:
        return True
    real = os.path.realpath(file)
    if any(_under(real, directory) for directory in layer_dirs):
        return True
    paths = sysconfig.get_paths()
    for root in {paths["stdlib"], paths["platstdlib"]}:
        if _under(real, root):
            return os.path.relpath(real, os.path.realpath(root)).split("/")[0] not in THIRD_PARTY
    return False


def _under(path: str, root: str) -> bool:
    return path.startswith(os.path.realpath(root).rstrip("/") + "/")


def reseed() -> None:
    """Give NumPy's global generator (``numpy.random.random`` and friends) fresh entropy in a child."""
    mtrand = sys.modules.get("numpy.random.mtrand")
    if mtrand is not None:
        mtrand.seed()
