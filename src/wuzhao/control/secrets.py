"""Secrets: named values of a namespace, encrypted at rest, given to functions as env vars.

Values are encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from
``cryptography``) under a key kept in ``<data-dir>/secrets.key`` (mode 0600),
so a copy of the database alone reveals nothing. A value leaves the platform
only into the environment of an instance of a function that references it; no
API answer ever carries one.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from wuzhao.errors import BadRequest, Conflict, NotFound, WuzhaoError
from wuzhao.store.api import SecretRecord, Store

SECRET_KEY_FILE = "secrets.key"
SECRET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z"
MAX_SECRET_BYTES = 64 * 1024
_NAME_RE = re.compile(SECRET_NAME_PATTERN)


def load_or_create_key(data_dir: Path) -> bytes:
    path = data_dir / SECRET_KEY_FILE
    if path.exists():
        return path.read_bytes().strip()
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key + b"\n")
    return key


def check_secret_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise BadRequest(
            f"secret name {name!r} is invalid: 1-128 of A-Z, a-z, 0-9, '_', '.', '-'", field="name"
        )
    return name


# (namespace, secret name) -> what uses that secret ("fn", "fn:3", ...)
SecretUsers = Callable[[str, str], list[str]]


class Secrets:
    def __init__(self, store: Store, key: bytes, *, users: SecretUsers | None = None) -> None:
        self._store = store
        self._fernet = Fernet(key)
        self._users = users

    async def set(self, namespace: str, name: str, value: str) -> SecretRecord:
        check_secret_name(name)
        if len(value.encode()) > MAX_SECRET_BYTES:
            raise BadRequest(f"a secret holds at most {MAX_SECRET_BYTES} bytes", field="value")
        if "\0" in value:
            raise BadRequest("a secret cannot contain a NUL byte (it becomes an env var)", field="value")
        record = SecretRecord(namespace, name, self._fernet.encrypt(value.encode()), time.time())
        await self._store.save_secret(record)
        return record

    async def names(self, namespace: str) -> list[SecretRecord]:
        return await self._store.list_secrets(namespace)

    async def delete(self, namespace: str, name: str) -> None:
        """Delete a secret nothing uses (else its users' next cold start would fail)."""
        users = self._users(namespace, name) if self._users is not None else []
        if users:
            raise Conflict(
                f"secret {name!r} is in use by {', '.join(users)}; remove it from their secrets first"
            )
        if not await self._store.delete_secret(namespace, name):
            raise NotFound(f"secret {name!r} does not exist")

    async def check(self, namespace: str, references: dict[str, str]) -> None:
        """Refuse a function that references a secret the namespace does not have."""
        if references:
            stored = {s.name for s in await self._store.list_secrets(namespace)}
            for variable, name in references.items():
                if name not in stored:
                    raise BadRequest(
                        f"secret {name!r} (for {variable}) does not exist", field=f"secrets.{variable}"
                    )

    async def resolve(self, namespace: str, references: dict[str, str]) -> dict[str, str]:
        """Environment variables from ``{ENV_NAME: secret name}``; a missing secret is an error."""
        if not references:
            return {}
        stored = {s.name: s for s in await self._store.list_secrets(namespace)}
        env = {}
        for variable, name in references.items():
            secret = stored.get(name)
            if secret is None:
                raise NotFound(
                    f"secret {name!r} (for {variable}) does not exist", field=f"secrets.{variable}"
                )
            try:
                env[variable] = self._fernet.decrypt(secret.ciphertext).decode()
            except InvalidToken:
                raise WuzhaoError(f"secret {name!r} cannot be decrypted with this server's key") from None
        return env
