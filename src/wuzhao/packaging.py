"""Zip a function's code directory so the same folder always gives the same bytes.

The server addresses code by the SHA-256 of the uploaded zip and treats a
deploy with the same hash as a no-op, so everything that varies between
checkouts of one tree must stay out of the archive:

- entries are sorted by their path inside the zip (``/``-separated), so the
  order of ``os.scandir`` does not matter;
- every entry has the same timestamp (:data:`ZIP_EPOCH`), since mtimes change
  with every checkout, copy or editor save;
- permissions are normalised to 0644, or 0755 when the owner may execute the
  file, since umasks differ between machines;
- byte-code caches and VCS metadata (:data:`SKIPPED_DIRS`,
  :data:`SKIPPED_SUFFIXES`) are left out: they differ per interpreter and
  clone, and the sandbox cannot write them back anyway.

Only files are stored (no directory entries), so an empty directory does not
reach the server. Symlinks to files are stored as the file they point to;
symlinks to directories are not followed, which keeps a stray link to ``/``
from zipping the whole host.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
SKIPPED_DIRS = frozenset({"__pycache__", ".git"})
SKIPPED_SUFFIXES = (".pyc",)
COMPRESS_LEVEL = 6  # explicit, so a change of a library default cannot change the bytes
_UNIX = 3  # "made by" system; fixed so the header is the same on every host


def _files(code_dir: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """The ``(name in zip, path on disk)`` pairs to store, sorted by name."""
    root = Path(code_dir)
    if not root.is_dir():
        raise NotADirectoryError(f"not a directory: {root}")
    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
        for filename in filenames:
            if filename.endswith(SKIPPED_SUFFIXES):
                continue
            path = Path(dirpath, filename)
            if path.is_file():  # skips sockets, fifos and dangling symlinks
                found.append((path.relative_to(root).as_posix(), path))
    found.sort()
    return found


def zip_directory(code_dir: str | os.PathLike[str]) -> bytes:
    """Return a deterministic zip (deflated) of every file under ``code_dir``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, path in _files(code_dir):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.create_system = _UNIX
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | _normal_mode(path)) << 16
            archive.writestr(info, path.read_bytes(), compresslevel=COMPRESS_LEVEL)
    return buffer.getvalue()


def _raise(error: OSError) -> None:
    # os.walk skips unreadable directories silently; a deploy must not lose files.
    raise error


def _normal_mode(path: Path) -> int:
    return 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644
