import json
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.unit.cli.conftest import FUNCTION, Run, failed, ok

from wuzhao.cli import output
from wuzhao.manifest import Change, Outcome

HTTP = {
    "name": "users",
    "function": "api",
    "qualifier": None,
    "type": "http",
    "methods": ["GET", "POST"],
    "path": "/users/{id}",
    "auth": "none",
    "url_path": "/http/default/users/{id}",
    "created_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-01T12:00:00Z",
}
CRON = {
    "name": "nightly",
    "function": "report",
    "qualifier": "live",
    "type": "cron",
    "schedule": "0 3 * * *",
    "timezone": "Europe/Paris",
    "missed_ticks": None,
    "next_tick": "2024-05-02T01:00:00Z",
    "last_tick": None,
    "created_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-01T12:00:00Z",
}
OBJECT = {
    "name": "thumbs",
    "function": "resize",
    "qualifier": None,
    "type": "object",
    "bucket": "photos",
    "events": ["created", "deleted"],
    "prefix": "in/",
    "suffix": ".png",
    "created_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-01T12:00:00Z",
}
TOPIC = {
    "name": "refunds",
    "function": "refund",
    "qualifier": None,
    "type": "topic",
    "topic": "orders",
    "filter": {"kind": ["chargeback", "refund"], "region": ["eu"]},
    "created_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-01T12:00:00Z",
}


HTTP_ARGS = ["--path", "/users/{id}", "--auth", "none"]
CRON_ARGS = ["-s", "0 3 * * *", "--tz", "Europe/Paris", "--missed-ticks", "catch_up_one"]


def test_put_an_http_trigger(run: Callable[..., Run]) -> None:
    done = run(
        ["trigger", "put", "users", "-f", "api", "--type", "http", "-m", "GET", "-m", "POST", *HTTP_ARGS],
        ok(HTTP, 201),
    )

    assert done.result.exit_code == 0, done.result.output
    assert done.result.stdout == (
        "created trigger users: GET,POST /users/{id} -> api at /http/default/users/{id} (open)\n"
    )
    assert (done.request.method, done.request.url.path) == ("PUT", "/v1/triggers/users")
    assert json.loads(done.request.content) == {
        "type": "http",
        "function": "api",
        "methods": ["GET", "POST"],
        "path": "/users/{id}",
        "auth": "none",
    }


def test_put_a_cron_trigger(run: Callable[..., Run]) -> None:
    done = run(
        ["trigger", "put", "nightly", "-f", "report", "-q", "live", "--type", "cron", *CRON_ARGS],
        ok(CRON, 200),
    )

    assert done.result.exit_code == 0, done.result.output
    assert done.result.stdout == (
        "updated trigger nightly: 0 3 * * * (Europe/Paris) -> report:live next 2024-05-02 01:00:00\n"
    )
    assert json.loads(done.request.content) == {
        "type": "cron",
        "function": "report",
        "qualifier": "live",
        "schedule": "0 3 * * *",
        "timezone": "Europe/Paris",
        "missed_ticks": "catch_up_one",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--type", "http"], "--type http needs --path"),
        (["--type", "cron"], "--type cron needs --schedule"),
        (["--type", "http", "--path", "/x", "--schedule", "rate(1 hour)"], "--schedule is not an option of"),
        (
            ["--type", "cron", "-s", "rate(1 hour)", "-m", "GET", "--auth", "none"],
            "--method, --auth is not an",
        ),
        (["--type", "ftp"], "Invalid value for '--type'"),
        (["--type", "object"], "--type object needs --bucket"),
        (["--type", "topic"], "--type topic needs --topic"),
        (
            ["--type", "object", "-b", "photos", "--filter", "a=b"],
            "--filter is not an option of --type object",
        ),
        (
            ["--type", "topic", "-t", "orders", "--suffix", ".png"],
            "--suffix is not an option of --type topic",
        ),
        (["--type", "http", "--path", "/x", "--bucket", "b"], "--bucket is not an option of --type http"),
        (["--type", "topic", "-t", "orders", "--filter", "kind"], "'kind' is not NAME=VALUE"),
        (["--type", "object", "-b", "photos", "--event", "put"], "Invalid value for '--event'"),
    ],
)
def test_put_refuses_options_of_another_type(run: Callable[..., Run], args: list[str], message: str) -> None:
    done = run(["trigger", "put", "t", "-f", "api", *args])

    assert done.result.exit_code == 2
    assert message in done.result.stderr
    assert done.server.requests == []


def test_put_an_object_trigger(run: Callable[..., Run]) -> None:
    args = ["--type", "object", "-b", "photos", "--event", "created", "--event", "deleted"]
    done = run(
        ["trigger", "put", "thumbs", "-f", "resize", *args, "--prefix", "in/", "--suffix", ".png"],
        ok(OBJECT, 201),
    )

    assert done.result.exit_code == 0, done.result.output
    assert done.result.stdout == "created trigger thumbs: created,deleted -> resize in wz://photos/in/*.png\n"
    assert json.loads(done.request.content) == {
        "type": "object",
        "function": "resize",
        "bucket": "photos",
        "events": ["created", "deleted"],
        "prefix": "in/",
        "suffix": ".png",
    }


def test_put_a_topic_trigger(run: Callable[..., Run]) -> None:
    filters = ["--filter", "kind=refund", "--filter", "kind=chargeback", "--filter", "region=eu"]
    done = run(
        ["trigger", "put", "refunds", "-f", "refund", "--type", "topic", "-t", "orders", *filters], ok(TOPIC)
    )

    assert done.result.exit_code == 0, done.result.output
    assert done.result.stdout == (
        "updated trigger refunds: kind=chargeback|refund region=eu -> refund from topic orders\n"
    )
    assert json.loads(done.request.content) == {
        "type": "topic",
        "function": "refund",
        "topic": "orders",
        "filter": {"kind": ["refund", "chargeback"], "region": ["eu"]},
    }


def test_publish_a_message(run: Callable[..., Run]) -> None:
    answer = {"message_id": "m-1", "deliveries": 2}
    done = run(
        ["topic", "publish", "orders", "order 7", "--attr", "kind=refund", "--attr", "region=eu"],
        ok(answer, 202),
    )

    assert done.result.exit_code == 0, done.result.output
    assert done.result.stdout == "m-1\n"
    assert "published to orders: 2 subscribers will get it" in done.result.stderr
    assert (done.request.method, done.request.url.path) == ("POST", "/v1/topics/orders/messages")
    assert json.loads(done.request.content) == {
        "message": "order 7",
        "attributes": {"kind": "refund", "region": "eu"},
    }


def test_publish_json_from_stdin(run: Callable[..., Run]) -> None:
    done = run(
        ["topic", "publish", "orders", "-", "--json"],
        ok({"message_id": "m-2", "deliveries": 1}, 202),
        stdin='{"order": 7}',
    )

    assert done.result.exit_code == 0, done.result.output
    assert json.loads(done.request.content) == {"message": {"order": 7}, "attributes": {}}
    assert "1 subscriber will get it" in done.result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["orders", "x", "--attr", "kind"], "'kind' is not NAME=VALUE"),
        (["orders", "{", "--json"], "is not JSON"),
    ],
)
def test_publish_refuses_bad_input(run: Callable[..., Run], args: list[str], message: str) -> None:
    done = run(["topic", "publish", *args])

    assert done.result.exit_code == 2
    assert message in done.result.stderr
    assert done.server.requests == []


def test_ls_get_rm(run: Callable[..., Run]) -> None:
    listed = run(["trigger", "ls"], ok({"triggers": [CRON, HTTP]}))
    assert [line.split("\t") for line in listed.result.stdout.splitlines()] == [
        list(output.TRIGGER_COLUMNS),
        ["nightly", "cron", "report:live", "0 3 * * * (Europe/Paris)", "2024-05-02 01:00:00"],
        ["users", "http", "api", "GET,POST /users/{id}", "/http/default/users/{id} (open)"],
    ]
    events = run(["trigger", "ls"], ok({"triggers": [TOPIC, OBJECT]}))
    assert [line.split("\t") for line in events.result.stdout.splitlines()][1:] == [
        ["refunds", "topic", "refund", "kind=chargeback|refund region=eu", "topic orders"],
        ["thumbs", "object", "resize", "created,deleted", "wz://photos/in/*.png"],
    ]
    one = run(["trigger", "ls", "-f", "api"], ok({"triggers": [HTTP]}))
    assert one.request.url.params["function"] == "api"
    empty = run(["trigger", "ls"], ok({"triggers": []}))
    assert (empty.result.stdout, "no triggers" in empty.result.stderr) == ("", True)

    got = run(["trigger", "get", "users"], ok(HTTP))
    assert json.loads(got.result.stdout) == HTTP
    assert got.request.url.path == "/v1/triggers/users"

    removed = run(["trigger", "rm", "users"], ok(None, 204))
    assert (removed.request.method, removed.request.url.path) == ("DELETE", "/v1/triggers/users")
    assert removed.result.stderr == "deleted trigger users\n"


def test_an_api_error_is_one_line_and_exit_1(run: Callable[..., Run]) -> None:
    done = run(
        ["trigger", "put", "t", "-f", "api", "--type", "http", "--path", "/users/{uid}"],
        failed(409, "Conflict", "trigger 'users' already answers GET /users/{id}", field="path"),
    )

    assert done.result.exit_code == 1
    assert "trigger 'users' already answers GET /users/{id}" in done.result.stderr


MANIFEST = """\
functions:
  api:
    code: api
triggers:
  users:
    function: api
    type: http
    path: /users/{id}
    methods: [GET, POST]
    auth: none
  nightly:
    function: api
    type: cron
    schedule: 0 3 * * *
    timezone: Europe/Paris
"""


def test_deploy_puts_the_manifests_triggers(
    run: Callable[..., Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "main.py").write_text("def handler(event, context):\n    return event\n")
    (tmp_path / "wuzhao.yaml").write_text(MANIFEST)
    monkeypatch.chdir(tmp_path)
    unchanged_users = {key: HTTP[key] for key in HTTP if key != "function"} | {"function": "api"}

    done = run(
        ["deploy"],
        ok({"functions": []}),
        ok(FUNCTION | {"name": "api"}, 201),
        ok({"triggers": [unchanged_users]}),
        ok(CRON | {"function": "api", "qualifier": None}, 201),
    )

    assert done.result.exit_code == 0, done.result.output
    assert done.result.stdout.splitlines()[1:] == [
        "unchanged trigger users",
        "created trigger nightly: 0 3 * * * (Europe/Paris) -> api next 2024-05-02 01:00:00",
    ]
    assert done.result.stderr.splitlines()[-1] == "2 created, 0 updated, 1 unchanged"
    assert json.loads(done.request.content) == {
        "type": "cron",
        "function": "api",
        "schedule": "0 3 * * *",
        "timezone": "Europe/Paris",
        "missed_ticks": None,
    }


def test_manifest_outcomes_of_triggers() -> None:
    def line(
        change: Change, trigger: dict[str, object] | None, fields: tuple[str, ...] = (), **kw: bool
    ) -> str:
        return output.manifest_outcome(Outcome("users", change, fields, None, "trigger", trigger), **kw)

    assert line(Change.UNCHANGED, HTTP) == "unchanged trigger users"
    assert line(Change.CREATED, None, dry_run=True) == "would create trigger users"
    assert line(Change.UPDATED, HTTP, ("auth",), dry_run=True) == "would update trigger users (auth)"
    assert line(Change.UPDATED, HTTP, ("auth", "path")) == (
        "updated trigger users (auth, path): GET,POST /users/{id} -> api at /http/default/users/{id} (open)"
    )
