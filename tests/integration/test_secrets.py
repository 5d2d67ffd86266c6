"""Secrets: write-only values, given to functions as environment variables, never shown or stored in clear."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

READER = """
import os, time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {name: os.environ.get(name) for name in event.get("names", ["DB_PASS"])}
"""


def error(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    if field is not None:
        assert body.get("field") == field, body
    return body


def unique_value() -> str:
    return f"pw-{uuid.uuid4().hex}"


def files_holding(root: Path, needle: bytes) -> list[str]:
    """Every file under ``root`` whose bytes contain ``needle``."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                pass
    return found


def test_secret_reaches_the_function_and_nothing_else(start_server, code):
    server = start_server()  # its own data dir, to search it whole
    api = server.client()
    value = unique_value()
    put = api.put("/v1/secrets/db-pass", json={"value": value})
    assert put.status_code == 200, put.text
    assert set(put.json()) == {"name", "updated_at"}
    assert put.json()["name"] == "db-pass"

    listed = api.get("/v1/secrets")
    assert listed.status_code == 200
    assert [set(s) for s in listed.json()["secrets"]] == [{"name", "updated_at"}]
    assert [s["name"] for s in listed.json()["secrets"]] == ["db-pass"]

    deployed = api.put(
        "/v1/functions/uses-secret",
        json={"code": code({"main.py": READER}), "secrets": {"DB_PASS": "db-pass"}, "env": {"MODE": "prod"}},
    )
    assert deployed.status_code == 201, deployed.text
    assert deployed.json()["secrets"] == {"DB_PASS": "db-pass"}
    called = api.post("/v1/functions/uses-secret/invoke", json={"names": ["DB_PASS", "MODE"]})
    assert called.status_code == 200, called.text
    assert called.json() == {"DB_PASS": value, "MODE": "prod"}

    got = api.get("/v1/functions/uses-secret")
    assert (got.json()["secrets"], got.json()["env"]) == ({"DB_PASS": "db-pass"}, {"MODE": "prod"})

    # no answer of the API carries the value (the function's own result aside)
    published = api.post("/v1/functions/uses-secret/versions", json={})
    assert published.status_code == 201
    answers = [
        put,
        listed,
        deployed,
        got,
        published,
        api.get("/v1/functions"),
        api.get("/v1/functions/uses-secret/versions"),
        api.get("/v1/functions/uses-secret/versions/1"),
        api.get(f"/v1/invocations/{called.headers['x-wuzhao-invocation-id']}"),
        api.get("/v1/functions/uses-secret/logs"),
        api.get("/v1/namespaces/default"),
        api.get("/v1/secrets"),
    ]
    for answer in answers:
        assert answer.status_code in (200, 201), answer.text
        assert value not in answer.text, answer.request.url
        assert value not in str(answer.headers)
    # nor the server's log, nor any file of the data dir: the database (and its WAL) holds it
    # encrypted only, and nothing else writes it down
    assert value not in server.log()
    databases = sorted(server.data_dir.glob("wuzhao.db*"))
    assert server.data_dir / "wuzhao.db" in databases
    for database in databases:
        assert value.encode() not in database.read_bytes(), database
    assert files_holding(server.data_dir, value.encode()) == []


def test_bad_secret_references_and_values_are_refused(server, code):
    api = server.client()
    assert api.put("/v1/secrets/api-token", json={"value": "t0ken"}).status_code == 200
    package = code({"main.py": READER})

    missing = api.put("/v1/functions/bad-ref", json={"code": package, "secrets": {"DB_PASS": "nope"}})
    body = error(missing, 400, "BadRequest", "secrets.DB_PASS")
    assert "nope" in body["message"]
    error(api.get("/v1/functions/bad-ref"), 404, "NotFound")  # nothing was made

    both = api.put(
        "/v1/functions/bad-ref",
        json={"code": package, "env": {"TOKEN": "x"}, "secrets": {"TOKEN": "api-token"}},
    )
    error(both, 400, "BadRequest", "secrets.TOKEN")
    for variable in ("AWS_SECRET", "WUZHAO_KEY", "LD_PRELOAD", "1ABC", "A-B", "_X"):
        reserved = api.put(
            "/v1/functions/bad-ref", json={"code": package, "secrets": {variable: "api-token"}}
        )
        error(reserved, 400, "BadRequest", f"secrets.{variable}")
    error(
        api.put("/v1/functions/bad-ref", json={"code": package, "secrets": ["api-token"]}), 400, "BadRequest"
    )
    error(api.put("/v1/functions/bad-ref", json={"code": package, "secrets": {"T": 1}}), 400, "BadRequest")

    # an existing function keeps its configuration when an update names a missing secret
    good = api.put("/v1/functions/good-ref", json={"code": package, "secrets": {"TOKEN": "api-token"}})
    assert good.status_code == 201
    error(
        api.put("/v1/functions/good-ref", json={"secrets": {"TOKEN": "gone"}}),
        400,
        "BadRequest",
        "secrets.TOKEN",
    )
    error(
        api.put("/v1/functions/good-ref", json={"env": {"TOKEN": "clear"}}),
        400,
        "BadRequest",
        "secrets.TOKEN",
    )
    assert api.get("/v1/functions/good-ref").json()["secrets"] == {"TOKEN": "api-token"}
    assert api.post("/v1/functions/good-ref/invoke", json={"names": ["TOKEN"]}).json() == {"TOKEN": "t0ken"}

    # bad secrets
    error(api.put("/v1/secrets/api-token", json={}), 400, "BadRequest", "value")
    error(api.put("/v1/secrets/api-token", json={"value": 5}), 400, "BadRequest", "value")
    error(api.put("/v1/secrets/api-token", json={"value": "a\u0000b"}), 400, "BadRequest", "value")
    error(api.put("/v1/secrets/api-token", json={"value": "x" * (64 * 1024 + 1)}), 400, "BadRequest", "value")
    error(api.put("/v1/secrets/api-token", json={"value": "x", "note": "y"}), 400, "BadRequest", "note")
    error(api.put("/v1/secrets/api-token", content=b"{"), 400, "InvalidJSON")
    for name in ("-lead", "a%20b", "x" * 129, "caf%C3%A9"):
        error(api.put(f"/v1/secrets/{name}", json={"value": "v"}), 400, "BadRequest", "name")
    # none of it changed the stored value
    assert api.post("/v1/functions/good-ref/invoke", json={"names": ["TOKEN"]}).json() == {"TOKEN": "t0ken"}
    names = [s["name"] for s in api.get("/v1/secrets").json()["secrets"]]
    assert "api-token" in names and "gone" not in names


def test_deleting_a_secret(server, code):
    api = server.client()
    assert api.put("/v1/secrets/temp", json={"value": "v"}).status_code == 200
    assert api.put("/v1/secrets/keep", json={"value": "w"}).status_code == 200
    assert api.delete("/v1/secrets/temp").status_code == 204
    names = [s["name"] for s in api.get("/v1/secrets").json()["secrets"]]
    assert "keep" in names and "temp" not in names
    error(api.delete("/v1/secrets/temp"), 404, "NotFound")
    error(api.delete("/v1/secrets/never"), 404, "NotFound")
    # a function can no longer reference it
    error(
        api.put("/v1/functions/late", json={"code": code({"main.py": READER}), "secrets": {"T": "temp"}}),
        400,
        "BadRequest",
        "secrets.T",
    )
    # set again, it is a new secret
    assert api.put("/v1/secrets/temp", json={"value": "v2"}).status_code == 200
    names = [s["name"] for s in api.get("/v1/secrets").json()["secrets"]]
    assert names == sorted(names) and {"keep", "temp"} <= set(names)

    # a secret in use cannot be deleted: the next cold start of its users would fail
    deployed = api.put(
        "/v1/functions/user", json={"code": code({"main.py": READER}), "secrets": {"T": "temp"}}
    )
    assert deployed.status_code == 201
    assert api.post("/v1/functions/user/versions", json={}).status_code == 201
    conflict = error(api.delete("/v1/secrets/temp"), 409, "Conflict")
    assert (
        conflict["message"] == "secret 'temp' is in use by user, user:1; remove it from their secrets first"
    )
    assert api.put("/v1/functions/user", json={"secrets": {}}).status_code == 200
    conflict = error(api.delete("/v1/secrets/temp"), 409, "Conflict")
    assert conflict["message"] == "secret 'temp' is in use by user:1; remove it from their secrets first"
    assert api.delete("/v1/functions/user/versions/1").status_code == 204
    assert api.delete("/v1/secrets/temp").status_code == 204
    assert api.post("/v1/functions/user/invoke", json={"names": ["T"]}).json() == {"T": None}


def test_secrets_belong_to_their_namespace(server, code):
    api = server.client()
    assert api.post("/v1/namespaces", json={"name": "team-s"}).status_code == 201
    team = server.client()
    team.headers["X-Wuzhao-Namespace"] = "team-s"
    assert api.put("/v1/secrets/shared-name", json={"value": "default-value"}).status_code == 200
    assert team.put("/v1/secrets/shared-name", json={"value": "team-value"}).status_code == 200
    assert [s["name"] for s in team.get("/v1/secrets").json()["secrets"]] == ["shared-name"]
    assert team.put("/v1/secrets/team-only", json={"value": "x"}).status_code == 200
    assert "team-only" not in [s["name"] for s in api.get("/v1/secrets").json()["secrets"]]
    error(api.delete("/v1/secrets/team-only"), 404, "NotFound")
    refused = api.put(
        "/v1/functions/ns-ref", json={"code": code({"main.py": READER}), "secrets": {"T": "team-only"}}
    )
    error(refused, 400, "BadRequest", "secrets.T")

    deployed = team.put(
        "/v1/functions/ns-ref", json={"code": code({"main.py": READER}), "secrets": {"T": "shared-name"}}
    )
    assert deployed.status_code == 201
    assert team.post("/v1/functions/ns-ref/invoke", json={"names": ["T"]}).json() == {"T": "team-value"}


def test_updated_secret_reaches_new_instances(server, code):
    api = server.client()
    assert api.put("/v1/secrets/rotating", json={"value": "old-value"}).status_code == 200
    deployed = api.put(
        "/v1/functions/rotates", json={"code": code({"main.py": READER}), "secrets": {"DB_PASS": "rotating"}}
    )
    assert deployed.status_code == 201
    first = api.post("/v1/functions/rotates/invoke", json={})
    assert (first.json(), first.headers["x-wuzhao-cold-start"]) == ({"DB_PASS": "old-value"}, "true")
    assert api.post("/v1/functions/rotates/versions", json={}).json()["version"] == 1

    changed = api.put("/v1/secrets/rotating", json={"value": "new-value"})
    assert changed.status_code == 200
    assert set(changed.json()) == {"name", "updated_at"}

    # the warm instance is busy for a while: the next call needs a new instance, which gets the new value
    held: list[httpx.Response] = []
    holder = threading.Thread(
        target=lambda: held.append(server.client().post("/v1/functions/rotates/invoke", json={"sleep": 2}))
    )
    holder.start()
    deadline = time.monotonic() + 15
    while api.get("/v1/functions/rotates").json()["instances"]["busy"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    fresh = api.post("/v1/functions/rotates/invoke", json={})
    assert (fresh.json(), fresh.headers["x-wuzhao-cold-start"]) == ({"DB_PASS": "new-value"}, "true")
    holder.join(30)
    assert held[0].status_code == 200

    # a published version holds the reference, not the value: its new instances get the new value too
    versioned = api.post("/v1/functions/rotates/invoke?qualifier=1", json={})
    assert (versioned.json(), versioned.headers["x-wuzhao-cold-start"]) == ({"DB_PASS": "new-value"}, "true")
    # and a redeploy's instances do
    assert api.put("/v1/functions/rotates", json={"env": {"MODE": "x"}}).status_code == 200
    assert api.post("/v1/functions/rotates/invoke", json={}).json() == {"DB_PASS": "new-value"}
