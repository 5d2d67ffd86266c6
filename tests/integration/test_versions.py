"""Published versions, aliases and qualifiers against a real server and real sandboxes."""

from __future__ import annotations

import urllib.parse
from typing import Any

import httpx


def tagged(tag: str) -> dict[str, str]:
    """A handler that says which code ran, in which instance, as which version."""
    return {
        "main.py": f"""
        import os, uuid
        INSTANCE = uuid.uuid4().hex  # one per instance
        def handler(event, context):
            return {{
                "tag": "{tag}",
                "instance": INSTANCE,
                "env_version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"],
                "context_version": context.function_version,
                "greeting": os.environ.get("GREETING"),
            }}
        """
    }


def invoke(api: httpx.Client, name: str, qualifier: str | None = None) -> httpx.Response:
    path = f"/v1/functions/{name}/invoke"
    if qualifier is not None:
        path += "?qualifier=" + urllib.parse.quote(qualifier, safe="")
    return api.post(path, json={})


def ran(api: httpx.Client, name: str, qualifier: str | None = None) -> dict[str, Any]:
    """Invoke and check that the version header, the environment and the context agree."""
    response = invoke(api, name, qualifier)
    assert response.status_code == 200, response.text
    body = response.json()
    executed = response.headers["x-wuzhao-executed-version"]
    assert body["env_version"] == body["context_version"] == executed
    return {**body, "executed": executed, "cold": response.headers["x-wuzhao-cold-start"] == "true"}


def publish(api: httpx.Client, name: str, description: str | None = None) -> httpx.Response:
    body = {} if description is None else {"description": description}
    return api.post(f"/v1/functions/{name}/versions", json=body)


def error(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    if field is not None:
        assert body.get("field") == field, body
    return body


def test_publish_numbers_versions_and_keeps_descriptions(api, deploy):
    first = deploy("ver-pub", tagged("one"))
    created = publish(api, "ver-pub", "first cut")
    assert created.status_code == 201, created.text
    v1 = created.json()
    assert v1["function"] == "ver-pub"
    assert v1["version"] == 1
    assert v1["description"] == "first cut"
    assert v1["code_sha256"] == first["code_sha256"]
    assert (v1["handler"], v1["memory_mb"], v1["runtime"]) == ("main.handler", 128, "python3.11")

    # nothing changed since version 1: the same version, 200, its description kept
    again = publish(api, "ver-pub", "ignored")
    assert again.status_code == 200
    assert again.json() == v1

    second = deploy("ver-pub", tagged("two"))
    v2 = publish(api, "ver-pub")
    assert v2.status_code == 201
    assert (v2.json()["version"], v2.json()["description"]) == (2, "")
    assert v2.json()["code_sha256"] == second["code_sha256"] != first["code_sha256"]

    # a configuration change alone is a new version too (a snapshot of code and configuration)
    assert api.put("/v1/functions/ver-pub", json={"memory_mb": 256}).status_code == 200
    v3 = publish(api, "ver-pub", "more memory")
    assert (v3.status_code, v3.json()["version"], v3.json()["memory_mb"]) == (201, 3, 256)
    assert v3.json()["code_sha256"] == second["code_sha256"]

    listed = api.get("/v1/functions/ver-pub/versions")
    assert listed.status_code == 200
    assert [(v["version"], v["description"], v["memory_mb"]) for v in listed.json()["versions"]] == [
        (1, "first cut", 128),
        (2, "", 128),
        (3, "more memory", 256),
    ]
    got = api.get("/v1/functions/ver-pub/versions/1")
    assert got.status_code == 200
    assert got.json() == v1

    error(api.get("/v1/functions/ver-pub/versions/4"), 404, "NotFound")
    error(api.get("/v1/functions/ver-pub/versions/abc"), 400, "BadRequest", "version")
    error(api.get("/v1/functions/ver-pub/versions/0"), 400, "BadRequest", "version")
    error(api.delete("/v1/functions/ver-pub/versions/-1"), 400, "BadRequest", "version")
    error(api.get("/v1/functions/nobody/versions"), 404, "NotFound")
    error(publish(api, "nobody"), 404, "NotFound")
    error(publish(api, "ver-pub", "x" * 257), 400, "BadRequest", "description")
    error(api.post("/v1/functions/ver-pub/versions", json={"notes": "x"}), 400, "BadRequest", "notes")
    error(
        api.post("/v1/functions/ver-pub/versions", json={"description": 7}), 400, "BadRequest", "description"
    )
    error(api.post("/v1/functions/ver-pub/versions", content=b"{oops"), 400, "InvalidJSON")
    # none of the refused requests made a version
    assert len(api.get("/v1/functions/ver-pub/versions").json()["versions"]) == 3


def test_qualifiers_run_the_right_code(api, deploy):
    deploy("ver-q", tagged("one"))
    assert publish(api, "ver-q").json()["version"] == 1
    deploy("ver-q", tagged("two"))
    assert publish(api, "ver-q").json()["version"] == 2
    deploy("ver-q", tagged("latest"))  # not published

    one = ran(api, "ver-q", "1")
    assert (one["tag"], one["executed"]) == ("one", "1")
    two = ran(api, "ver-q", "2")
    assert (two["tag"], two["executed"]) == ("two", "2")
    latest = ran(api, "ver-q", "$LATEST")
    assert (latest["tag"], latest["executed"]) == ("latest", "$LATEST")
    assert ran(api, "ver-q")["tag"] == "latest"  # no qualifier: $LATEST
    assert ran(api, "ver-q", "")["tag"] == "latest"
    # the URL really carried the encoded form
    encoded = api.post("/v1/functions/ver-q/invoke?qualifier=%24LATEST", json={})
    assert encoded.headers["x-wuzhao-executed-version"] == "$LATEST"

    # unknown versions and aliases do not exist; malformed qualifiers are bad requests
    error(invoke(api, "ver-q", "3"), 404, "NotFound")
    error(invoke(api, "ver-q", "prod"), 404, "NotFound")
    error(invoke(api, "nobody", "1"), 404, "NotFound")
    error(api.post("/v1/functions/ver-q/invoke?qualifier=%20x", json={}), 400, "BadRequest", "qualifier")
    for bad in ("0", "-1", "1.5", "Prod", "$latest", "LATEST", "a b", "x" * 65, "²"):
        error(invoke(api, "ver-q", bad), 400, "BadRequest", "qualifier")


def test_aliases_point_at_versions_and_move(api, deploy):
    deploy("ver-alias", tagged("one"))
    publish(api, "ver-alias")
    deploy("ver-alias", tagged("two"))
    publish(api, "ver-alias")

    created = api.put("/v1/functions/ver-alias/aliases/prod", json={"version": 1, "description": "live"})
    assert created.status_code == 201, created.text
    alias = created.json()
    assert {k: alias[k] for k in ("function", "name", "version", "routing", "description")} == {
        "function": "ver-alias",
        "name": "prod",
        "version": 1,
        "routing": None,
        "description": "live",
    }
    prod = ran(api, "ver-alias", "prod")
    assert (prod["tag"], prod["executed"]) == ("one", "1")

    moved = api.put("/v1/functions/ver-alias/aliases/prod", json={"version": 2})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["version"], moved.json()["description"]) == (2, "")
    prod = ran(api, "ver-alias", "prod")
    assert (prod["tag"], prod["executed"]) == ("two", "2")

    assert api.put("/v1/functions/ver-alias/aliases/staging", json={"version": 1}).status_code == 201
    listed = api.get("/v1/functions/ver-alias/aliases").json()["aliases"]
    assert [(a["name"], a["version"]) for a in listed] == [("prod", 2), ("staging", 1)]
    assert api.get("/v1/functions/ver-alias/aliases/prod").json()["version"] == 2
    error(api.get("/v1/functions/ver-alias/aliases/canary"), 404, "NotFound")
    error(api.get("/v1/functions/nobody/aliases"), 404, "NotFound")

    assert api.delete("/v1/functions/ver-alias/aliases/staging").status_code == 204
    error(api.delete("/v1/functions/ver-alias/aliases/staging"), 404, "NotFound")
    error(invoke(api, "ver-alias", "staging"), 404, "NotFound")
    assert [a["name"] for a in api.get("/v1/functions/ver-alias/aliases").json()["aliases"]] == ["prod"]


def test_weighted_alias_splits_calls_statistically(api, deploy):
    deploy("ver-split", tagged("one"))
    publish(api, "ver-split")
    deploy("ver-split", tagged("two"))
    publish(api, "ver-split")
    put = api.put("/v1/functions/ver-split/aliases/canary", json={"version": 1, "routing": {"2": 0.1}})
    assert put.status_code == 201, put.text
    assert (put.json()["version"], put.json()["routing"]) == (1, {"2": 0.1})

    calls = 400
    seen = {"1": 0, "2": 0}
    for _ in range(calls):
        result = ran(api, "ver-split", "canary")
        assert result["tag"] == {"1": "one", "2": "two"}[result["executed"]]
        seen[result["executed"]] += 1
    assert seen["1"] + seen["2"] == calls
    # Version 2 gets Binomial(400, 0.1) calls: mean 40, standard deviation 6. Accepting 16..64
    # (4 % to 16 %, the mean ± 4 standard deviations) makes a false failure a 7e-5 event (the exact
    # binomial tails), while a split that is ignored (0), inverted (360) or even (200) always fails.
    assert 16 <= seen["2"] <= 64, seen


def test_deleting_a_version_in_use_is_a_conflict(api, deploy):
    for tag in ("one", "two", "three"):
        deploy("ver-del", tagged(tag))
        publish(api, "ver-del")
    assert api.put("/v1/functions/ver-del/aliases/prod", json={"version": 1}).status_code == 201
    canary = api.put("/v1/functions/ver-del/aliases/canary", json={"version": 2, "routing": {"3": 0.5}})
    assert canary.status_code == 201

    conflict = error(api.delete("/v1/functions/ver-del/versions/1"), 409, "Conflict")
    assert conflict["message"] == "version 1 is in use by alias prod; point it elsewhere first"
    # the additional version of a weighted alias is in use as much as its main one
    conflict = error(api.delete("/v1/functions/ver-del/versions/3"), 409, "Conflict")
    assert "canary" in conflict["message"]
    assert ran(api, "ver-del", "1")["tag"] == "one"  # still there

    assert api.put("/v1/functions/ver-del/aliases/prod", json={"version": 2}).status_code == 200
    assert api.delete("/v1/functions/ver-del/versions/1").status_code == 204
    error(api.get("/v1/functions/ver-del/versions/1"), 404, "NotFound")
    error(invoke(api, "ver-del", "1"), 404, "NotFound")
    error(api.delete("/v1/functions/ver-del/versions/1"), 404, "NotFound")
    conflict = error(api.delete("/v1/functions/ver-del/versions/2"), 409, "Conflict")
    assert conflict["message"] == "version 2 is in use by aliases canary, prod; point them elsewhere first"
    assert [v["version"] for v in api.get("/v1/functions/ver-del/versions").json()["versions"]] == [2, 3]

    # numbers are never reused, not even the last one after it was deleted
    assert api.delete("/v1/functions/ver-del/aliases/canary").status_code == 204
    assert api.delete("/v1/functions/ver-del/versions/3").status_code == 204
    deploy("ver-del", tagged("four"))
    assert publish(api, "ver-del").json()["version"] == 4
    assert ran(api, "ver-del", "4")["tag"] == "four"


def test_bad_aliases_are_refused(api, deploy):
    for tag in ("one", "two", "three"):
        deploy("ver-bad", tagged(tag))
        publish(api, "ver-bad")
    cases: list[tuple[Any, str]] = [
        ({"version": 1, "routing": {"2": 1.0}}, "routing"),  # all of the calls: not a second version
        ({"version": 1, "routing": {"2": 0}}, "routing"),  # none of the calls
        ({"version": 1, "routing": {"2": 1.5}}, "routing"),  # shares summing over 1
        ({"version": 1, "routing": {"2": -0.1}}, "routing"),
        ({"version": 1, "routing": {"2": "0.1"}}, "routing"),
        ({"version": 1, "routing": {"1": 0.1}}, "routing"),  # to the same version
        ({"version": 1, "routing": {"9": 0.1}}, "routing"),  # to a missing version
        ({"version": 1, "routing": {"x": 0.1}}, "routing"),
        ({"version": 1, "routing": {"2": 0.1, "3": 0.1}}, "routing"),  # two additional versions
        ({"version": 1, "routing": {"2": 0.6, "3": 0.6}}, "routing"),
        ({"version": 1, "routing": [2, 0.1]}, "routing"),
        ({"version": 9}, "version"),  # a missing version
        ({"version": 0}, "version"),
        ({"version": "1"}, "version"),
        ({"version": "prod"}, "version"),  # aliases name versions, never aliases: no loops
        ({"version": None}, "version"),
        ({}, "version"),
        ({"version": 1, "weight": 0.1}, "weight"),
        ({"version": 1, "description": "x" * 257}, "description"),
    ]
    for body, field in cases:
        response = api.put("/v1/functions/ver-bad/aliases/live", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"].get("field") == field, (body, response.text)
    error(api.put("/v1/functions/ver-bad/aliases/live", content=b"{"), 400, "InvalidJSON")

    for name in ("Prod", "1abc", "-x", "_x", "%24LATEST", "a%20b", "x" * 65, "caf%C3%A9"):
        response = api.put(f"/v1/functions/ver-bad/aliases/{name}", json={"version": 1})
        error(response, 400, "BadRequest", "alias")
    # none of it made an alias
    assert api.get("/v1/functions/ver-bad/aliases").json() == {"aliases": []}
    error(api.put("/v1/functions/nobody/aliases/live", json={"version": 1}), 404, "NotFound")
    # a good one, at the limits of the name rules
    assert api.put(f"/v1/functions/ver-bad/aliases/a{'-' * 63}", json={"version": 3}).status_code == 201


def test_deleting_a_function_removes_its_versions_and_aliases(api, deploy):
    deploy("ver-gone", tagged("old"))
    publish(api, "ver-gone")
    api.put("/v1/functions/ver-gone/aliases/prod", json={"version": 1})
    assert ran(api, "ver-gone", "prod")["tag"] == "old"  # warm instance of version 1

    assert api.delete("/v1/functions/ver-gone").status_code == 204
    error(api.get("/v1/functions/ver-gone/versions"), 404, "NotFound")
    error(api.get("/v1/functions/ver-gone/aliases/prod"), 404, "NotFound")
    error(invoke(api, "ver-gone", "1"), 404, "NotFound")
    error(invoke(api, "ver-gone", "prod"), 404, "NotFound")

    deploy("ver-gone", tagged("new"))
    assert api.get("/v1/functions/ver-gone/versions").json() == {"versions": []}
    assert api.get("/v1/functions/ver-gone/aliases").json() == {"aliases": []}
    error(invoke(api, "ver-gone", "1"), 404, "NotFound")
    error(invoke(api, "ver-gone", "prod"), 404, "NotFound")
    again = publish(api, "ver-gone")
    assert (again.status_code, again.json()["version"]) == (201, 1)
    # the new version 1 runs the new code on a new instance, never the old version 1's
    fresh = ran(api, "ver-gone", "1")
    assert (fresh["tag"], fresh["cold"]) == ("new", True)


def test_version_instances_are_separate_from_latest(api, deploy):
    deploy("ver-sep", tagged("one"), env={"GREETING": "hello"})
    publish(api, "ver-sep")
    latest = ran(api, "ver-sep")
    one = ran(api, "ver-sep", "1")
    assert one["instance"] != latest["instance"]
    assert (one["tag"], one["greeting"], one["cold"]) == ("one", "hello", True)

    # code and configuration of $LATEST change; version 1 stays what it was, on its warm instance
    updated = deploy("ver-sep", tagged("two"), env={"GREETING": "bonjour"})
    assert updated["revision"] == 2
    after = ran(api, "ver-sep", "1")
    assert (after["tag"], after["greeting"], after["instance"], after["cold"]) == (
        "one",
        "hello",
        one["instance"],
        False,
    )
    new = ran(api, "ver-sep")
    assert (new["tag"], new["greeting"], new["executed"]) == ("two", "bonjour", "$LATEST")
    assert new["instance"] not in (latest["instance"], one["instance"])
    counts = api.get("/v1/functions/ver-sep").json()["instances"]
    assert counts == {"idle": 2, "busy": 0}  # version 1's and the new $LATEST's
