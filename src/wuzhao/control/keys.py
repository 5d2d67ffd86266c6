"""API keys: issued once, stored only as hashes, checked in constant time.

A key looks like ``wz_<key id>_<secret>``. The key id is public and locates
the record; the whole key is hashed (SHA-256: keys are 256-bit random, so a
slow password hash buys nothing) and compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from wuzhao.domain.functions import DEFAULT_NAMESPACE
from wuzhao.errors import Conflict
from wuzhao.store.api import ApiKeyRecord, Store

PREFIX = "wz"
ADMIN_KEY_FILE = "admin.key"
MAX_VERIFIED = 10_000  # keys remembered as checked; past it the memory starts over


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its id."""
    key_id = secrets.token_hex(8)
    return f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}", key_id


def key_id_of(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


class KeyRing:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[str, ApiKeyRecord] = {}
        # Keys already checked, by their whole text: hashing costs ~10 us a request
        # (OpenSSL 3 context set-up). Emptied by every revocation.
        self._verified: dict[str, ApiKeyRecord] = {}
        self._revocations = 0  # a lookup that a revoke overtook must not fill the caches

    async def authenticate(self, key: str) -> ApiKeyRecord | None:
        """The record of a valid key, or None. Never says why a key is refused."""
        verified = self._verified.get(key)
        if verified is not None:
            return verified
        key_id = key_id_of(key)
        if key_id is None:
            return None
        revocations = self._revocations
        record = self._cache.get(key_id)
        if record is None:
            record = await self._store.get_key(key_id)
            if record is None:
                return None
            if revocations == self._revocations:
                self._cache[key_id] = record
        if not hmac.compare_digest(record.secret_hash, hash_key(key)):
            return None
        if revocations == self._revocations:
            if len(self._verified) >= MAX_VERIFIED:
                self._verified.clear()
            self._verified[key] = record
        return record

    async def create(self, namespace: str, role: str, description: str = "") -> tuple[str, ApiKeyRecord]:
        """Issue a key; the returned string is the only time its secret exists outside the caller."""
        key, key_id = new_key()
        record = await self._add(key, key_id, role, namespace=namespace, description=description)
        return key, record

    async def all(self) -> list[ApiKeyRecord]:
        return await self._store.list_keys()

    async def revoke(self, key_id: str) -> bool:
        """Revoke at once: the next request with this key is refused.

        The last admin key cannot go: nobody could manage the platform afterwards.
        """
        keys = await self._store.list_keys()
        admins = [k.key_id for k in keys if k.role == "admin"]
        if admins == [key_id]:
            raise Conflict("the last admin key cannot be revoked; create another admin key first")
        self._cache.pop(key_id, None)
        self._verified.clear()
        deleted = await self._store.delete_key(key_id)
        self._revocations += 1
        self._cache.pop(key_id, None)
        self._verified.clear()
        return deleted

    async def ensure_admin_key(self, data_dir: Path) -> tuple[Path, bool]:
        """Make sure ``<data_dir>/admin.key`` exists and is a valid admin key.

        Returns the file's path and whether the key was created now. A key file
        whose record was lost (a wiped database) is registered again: the file is
        the operator's credential.
        """
        path = data_dir / ADMIN_KEY_FILE
        if path.exists():
            key = path.read_text().strip()
            key_id = key_id_of(key)
            if key_id is not None:
                if await self._store.get_key(key_id) is None:
                    await self._add(key, key_id, "admin")
                return path, False
        key, key_id = new_key()
        await self._add(key, key_id, "admin")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
        os.chmod(path, 0o600)
        return path, True

    async def _add(
        self,
        key: str,
        key_id: str,
        role: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        description: str = "created by wuzhao serve",
    ) -> ApiKeyRecord:
        record = ApiKeyRecord(
            key_id=key_id,
            secret_hash=hash_key(key),
            namespace=namespace,
            role=role,
            created_at=time.time(),
            description=description,
        )
        await self._store.add_key(record)
        return record
