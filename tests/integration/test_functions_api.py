"""Managing functions over the HTTP API, bad input included."""

from __future__ import annotations

import base64
import os

import pytest
from tests.conftest import zip_files


def test_create_get_list_update_delete(api, code):
    created = api.put("/v1/functions/fn-crud", json={"code": code(), "memory_mb": 256, "env": {"A": "1"}})
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "fn-crud"
    assert body["runtime"] == "python3.11"
    assert body["handler"] == "main.handler"
    assert body["memory_mb"] == 256
    assert body["timeout_s"] == 30
    assert body["env"] == {"A": "1"}
    assert body["revision"] == 1
    assert len(body["code_sha256"]) == 64
    assert body["instances"] == {"idle": 0, "busy": 0}
    assert body["created_at"].endswith("Z")

    assert api.get("/v1/functions/fn-crud").json() == body
    names = [f["name"] for f in api.get("/v1/functions").json()["functions"]]
    assert "fn-crud" in names

    updated = api.put("/v1/functions/fn-crud", json={"timeout_s": 5})
    assert updated.status_code == 200
    assert updated.json()["revision"] == 2
    assert updated.json()["timeout_s"] == 5
    assert updated.json()["memory_mb"] == 256  # unset fields keep their value

    assert api.delete("/v1/functions/fn-crud").status_code == 204
    missing = api.get("/v1/functions/fn-crud")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NotFound"
    assert api.delete("/v1/functions/fn-crud").status_code == 404


def test_same_deploy_twice_is_idempotent(api, code):
    first = api.put("/v1/functions/fn-idem", json={"code": code()}).json()
    again = api.put("/v1/functions/fn-idem", json={"code": code()})
    assert again.status_code == 200
    assert again.json()["revision"] == first["revision"]


@pytest.mark.parametrize(
    ("name", "body", "status", "code_", "field"),
    [
        ("Bad_Name", {}, 400, "BadRequest", "name"),
        ("-leading", {}, 400, "BadRequest", "name"),
        ("x" * 65, {}, 400, "BadRequest", "name"),
        ("fn-bad", {"memory_mb": 64}, 400, "BadRequest", "memory_mb"),
        ("fn-bad", {"memory_mb": 10241}, 400, "BadRequest", "memory_mb"),
        ("fn-bad", {"memory_mb": "lots"}, 400, "BadRequest", "memory_mb"),
        ("fn-bad", {"timeout_s": 0}, 400, "BadRequest", "timeout_s"),
        ("fn-bad", {"timeout_s": 901}, 400, "BadRequest", "timeout_s"),
        ("fn-bad", {"env": {"A": 1}}, 400, "BadRequest", "env"),
        ("fn-bad", {"env": {"AWS_SECRET": "x"}}, 400, "BadRequest", "env.AWS_SECRET"),
        ("fn-bad", {"handler": "nodot"}, 400, "BadRequest", "handler"),
        ("fn-bad", {"runtime": "cobol"}, 400, "BadRequest", "runtime"),
        ("fn-bad", {"surprise": True}, 400, "BadRequest", "surprise"),
        ("fn-bad", {"handler": "other.handler"}, 400, "InvalidCode", "handler"),
    ],
)
def test_bad_configuration_is_refused_with_the_field(api, code, name, body, status, code_, field):
    response = api.put(f"/v1/functions/{name}", json={"code": code(), **body})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code_
    assert error["field"] == field
    assert error["message"]


def test_bad_code_packages_are_refused(api):
    cases = {
        "not base64 at all!": "InvalidCode",
        base64.b64encode(b"this is not a zip").decode(): "InvalidCode",
        base64.b64encode(zip_files({"other.py": "x = 1"})).decode(): "InvalidCode",
    }
    for payload, expected in cases.items():
        response = api.put("/v1/functions/fn-badzip", json={"code": payload})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == expected
    assert api.get("/v1/functions/fn-badzip").status_code == 404


def test_create_without_code_is_refused(api):
    response = api.put("/v1/functions/fn-nocode", json={"memory_mb": 128})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "code"


def test_malformed_json_bodies(api):
    response = api.put(
        "/v1/functions/fn-json", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidJSON"
    response = api.put("/v1/functions/fn-json", json=[1, 2, 3])
    assert response.status_code == 400


def test_code_over_the_limit_is_413(start_server, code):
    server = start_server(WUZHAO_MAX_CODE_BYTES="2048")
    noise = base64.b64encode(os.urandom(8192)).decode()  # incompressible
    big = {"main.py": "def handler(e, c):\n    return 1\n", "blob.txt": noise}
    response = server.client().put("/v1/functions/fn-big", json={"code": code(big)})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PayloadTooLarge"


def test_unknown_route_and_method(api):
    response = api.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"
    response = api.patch("/v1/functions/x")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "MethodNotAllowed"
