"""Code packages, stored content-addressed in the data dir.

A package is kept three times: the zip as uploaded (``packages/<sha256>.zip``,
the source of truth), unpacked (``code/<sha256>/``) and as a read-only
filesystem image of that tree (``images/<sha256>.erofs``, what sandboxes
mount: a bind of the tree would show its host path inside, see
``wuzhao.sandbox.images``). All are written to a temporary name and renamed
into place, so a crash never leaves a half-written package under its final
name, and two functions with the same code share one copy. The image is made
at deploy and again at the first cold start if it went missing; on a host
without mkfs.erofs there is none and sandboxes bind the tree.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from wuzhao.errors import InvalidCode, PayloadTooLarge
from wuzhao.sandbox import images

MAX_ENTRIES = 20_000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackageInfo:
    sha256: str
    size: int


class CodePackages:
    def __init__(self, root: Path, *, max_bytes: int, max_unpacked_bytes: int) -> None:
        self._zips = root / "packages"
        self._code = root / "code"
        self._images = root / "images"
        self._max_bytes = max_bytes
        self._max_unpacked = max_unpacked_bytes
        for directory in (self._zips, self._code, self._images):
            directory.mkdir(parents=True, exist_ok=True)
            # Sandboxes run as unprivileged uids: the unpacked tree must be
            # world-readable (never writable) all the way down.
            directory.chmod(0o755)

    def add(self, data: bytes, *, required_files: tuple[str, ...] = ()) -> PackageInfo:
        """Validate a zip, store it and unpack it; idempotent for the same bytes.

        ``required_files``: at least one of them must be in the zip (the
        handler's module), else the deploy fails now rather than at first call.
        """
        if len(data) > self._max_bytes:
            raise PayloadTooLarge(
                f"code package is {len(data)} bytes; the limit is {self._max_bytes}", field="code"
            )
        names = self._validate(data)
        if not names:
            raise InvalidCode("the zip archive is empty", field="code")
        if required_files and not names.intersection(required_files):
            raise InvalidCode(
                f"the handler's module is not in the code package: expected {' or '.join(required_files)}",
                field="handler",
            )
        sha = hashlib.sha256(data).hexdigest()
        zip_path = self._zips / f"{sha}.zip"
        if not zip_path.exists():
            _write_atomically(zip_path, data)
        self._unpack(sha, zip_path)
        try:
            self.code_image(sha)  # now rather than in the first cold start
        except images.ImageError:
            log.exception("no image of code package %s yet; the first cold start tries again", sha)
        return PackageInfo(sha, len(data))

    def code_dir(self, sha256: str) -> Path:
        """The unpacked tree of a stored package (unpacked again if it went missing)."""
        target = self._code / sha256
        if not target.is_dir():
            self._unpack(sha256, self._zips / f"{sha256}.zip")
        return target

    def code_image(self, sha256: str) -> Path | None:
        """The read-only image of a stored package's code (made if missing); None without mkfs.erofs."""
        target = self._images / images.code_image_name(sha256)
        if target.is_file():
            return target
        if images.mkfs() is None:
            return None
        return images.build(self.code_dir(sha256), target)

    def _validate(self, data: bytes) -> set[str]:
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, ValueError) as exc:
            raise InvalidCode(f"code is not a valid zip archive: {exc}", field="code") from None
        with archive:
            infos = archive.infolist()
            if len(infos) > MAX_ENTRIES:
                raise InvalidCode(f"code package has over {MAX_ENTRIES} entries", field="code")
            total = 0
            names: set[str] = set()
            for info in infos:
                path = PurePosixPath(info.filename)
                if path.is_absolute() or ".." in path.parts or "\\" in info.filename:
                    raise InvalidCode(
                        f"code package entry {info.filename!r} points outside the package",
                        field="code",
                    )
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise InvalidCode(
                        f"code package entry {info.filename!r} is a symbolic link", field="code"
                    )
                total += info.file_size
                names.add(info.filename)
            if total > self._max_unpacked:
                raise PayloadTooLarge(
                    f"code package unpacks to {total} bytes; the limit is {self._max_unpacked}",
                    field="code",
                )
            bad = archive.testzip()
            if bad is not None:
                raise InvalidCode(f"code package entry {bad!r} is corrupt", field="code")
        return names

    def _unpack(self, sha256: str, zip_path: Path) -> None:
        target = self._code / sha256
        if target.is_dir():
            return
        staging = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}-", dir=self._code))
        try:
            with zipfile.ZipFile(zip_path) as archive:
                archive.extractall(staging)
                executable = {i.filename for i in archive.infolist() if (i.external_attr >> 16) & 0o111}
            for dirpath, _dirnames, filenames in os.walk(staging):
                os.chmod(dirpath, 0o755)
                for name in filenames:
                    path = os.path.join(dirpath, name)
                    relative = os.path.relpath(path, staging)
                    os.chmod(path, 0o755 if relative in executable else 0o644)
            try:
                staging.rename(target)
            except OSError:
                if not target.is_dir():  # lost a race with an identical unpack: fine
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
