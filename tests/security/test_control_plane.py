"""The control plane answers nobody without a valid key, on every route the app has."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route
from tests.security.conftest import NEEDS_SANDBOX

from wuzhao.control import keys as keys_module
from wuzhao.control.keys import KeyRing, hash_key
from wuzhao.gateway.app import ROUTES
from wuzhao.store.api import ApiKeyRecord

pytestmark = NEEDS_SANDBOX

_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def v1_endpoints() -> list[tuple[str, str]]:
    """(method, path with its parameters filled) of every /v1 route of the app, HEAD included."""
    endpoints = []
    for route in ROUTES:
        assert isinstance(route, Route), route  # a Mount would hide routes from this enumeration
        if not (route.path == "/v1" or route.path.startswith("/v1/")):
            continue
        path = _PARAM.sub(lambda m: "probe" if m.group(1) == "name" else "0" * 8, route.path)
        endpoints += [(method, path) for method in sorted(route.methods or ())]
    return endpoints


ENDPOINTS = v1_endpoints()


def wrong_keys(real: str) -> dict[str, dict[str, str]]:
    """Header sets that must all be refused: each a wrong key, or the right key sent wrongly."""
    prefix, key_id, secret = real.split("_", 2)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    return {
        "none": {},
        "empty-bearer": {"Authorization": "Bearer"},
        "garbage": {"Authorization": "Bearer not-a-key"},
        "right-id-wrong-secret": {"Authorization": f"Bearer {prefix}_{key_id}_{flipped}"},
        "unknown-id": {"Authorization": f"Bearer {prefix}_{'0' * 16}_{secret}"},
        "truncated": {"Authorization": f"Bearer {real[:-1]}"},
        "extended": {"Authorization": f"Bearer {real}x"},
        "upper-case": {"Authorization": f"Bearer {real.upper()}"},
        "basic-scheme": {"Authorization": f"Basic {real}"},
        "no-scheme": {"Authorization": real},
        "other-header": {"X-Api-Key": real},
        "the-key-hash": {"Authorization": f"Bearer {hash_key(real)}"},
    }


def test_every_route_is_enumerated():
    methods = {method for method, _ in ENDPOINTS}
    assert {"GET", "PUT", "DELETE", "POST"} <= methods
    assert len(ENDPOINTS) >= 7


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_every_v1_route_answers_401_without_a_valid_key(server, method, path):
    real = server.key
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for name, headers in wrong_keys(real).items():
            response = client.request(method, path, headers=headers, content=b'{"code": ""}')
            assert response.status_code == 401, (name, response.status_code, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            if method != "HEAD":
                assert response.json()["error"]["code"] == "Unauthorized", name
                assert real not in response.text
        # the same route with the key is served (it is a real route, not a catch-all 401)
        with_key = client.request(method, path, headers={"Authorization": f"Bearer {real}"})
        assert with_key.status_code != 401


def test_unknown_v1_paths_answer_401_too(server):
    """Authentication comes before routing: no route list for the unauthenticated."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for method, path in (
            ("GET", "/v1"),
            ("GET", "/v1/"),
            ("GET", "/v1/admin"),
            ("POST", "/v1/keys"),
            ("PATCH", "/v1/functions/x"),
            ("GET", "/v1/../v1/functions"),
        ):
            response = client.request(method, path)
            assert response.status_code == 401, (method, path, response.status_code)


def test_keys_are_stored_hashed(server):
    """No file the server wrote in its data dir holds the key's secret, except the key file itself."""
    key = server.key
    secret = key.split("_", 2)[2]
    # the database may hold the data in its write-ahead log: read every file there is
    files = [p for p in Path(server.data_dir).rglob("*") if p.is_file() and p.name != "admin.key"]
    databases = [p for p in files if ".db" in p.name or "sqlite" in p.name]
    assert databases, files
    stored = b"".join(p.read_bytes() for p in files)
    assert secret.encode() not in stored
    assert key.encode() not in stored
    # what is stored is the SHA-256 of the key (so the check above looked at the right bytes)
    assert hashlib.sha256(key.encode()).hexdigest().encode() in stored
    assert oct(Path(server.data_dir, "admin.key").stat().st_mode & 0o777) == "0o600"


class _OneKey:
    """A store holding one key record, for KeyRing."""

    def __init__(self, record: ApiKeyRecord) -> None:
        self.record = record

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        return self.record if key_id == self.record.key_id else None


def test_keys_are_compared_in_constant_time(monkeypatch):
    """The secret is checked with hmac.compare_digest, whose time does not depend on where bytes differ."""
    key = "wz_0123456789abcdef_" + "s" * 43
    record = ApiKeyRecord(
        key_id="0123456789abcdef",
        secret_hash=hash_key(key),
        namespace="default",
        role="admin",
        created_at=time.time(),
        description="test",
    )
    ring = KeyRing(_OneKey(record))  # type: ignore[arg-type]
    compared: list[tuple[str, str]] = []
    original = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", spy)
    assert asyncio.run(ring.authenticate(key)) is record
    assert asyncio.run(ring.authenticate(key[:-1] + "t")) is None
    assert len(compared) == 2  # both went through the constant-time comparison, not ==
