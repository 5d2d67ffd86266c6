"""`wuzhao invoke --async` and `wuzhao dlq` against a fake server."""

import json
from collections.abc import Callable

from rich.console import Console
from tests.unit.cli.conftest import Run, failed, ok

from wuzhao.cli import output

DEAD = {
    "id": "6f1c0a52-1111-4222-8333-944445555666",
    "namespace": "default",
    "function": "hello",
    "qualifier": "live",
    "status": "dead",
    "async": True,
    "enqueued_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-01T12:01:00Z",
    "ordering_key": "order-7",
    "attempts": [
        {
            "number": 1,
            "started_at": "2024-05-01T12:00:01Z",
            "duration_ms": 3.5,
            "outcome": "FunctionError",
            "error": {"code": "FunctionError", "message": "boom\nmore", "error_type": "ValueError"},
        },
        {
            "number": 2,
            "started_at": "2024-05-01T12:00:31Z",
            "duration_ms": 30000.0,
            "outcome": "Timeout",
            "error": {"code": "Timeout", "message": "ran past 30 s"},
        },
    ],
    "result": None,
    "error": {"code": "Timeout", "message": "ran past 30 s"},
}
QUEUED = {"invocation_id": "inv-9", "status": "queued"}


# invoke --async


def test_invoke_async_prints_the_id_and_sends_the_keys(run: Callable[..., Run]) -> None:
    done = run(
        [
            "invoke", "hello", "--async", "-d", '{"n": 1.10}', "-q", "live",
            "--idempotency-key", "idem-1", "--ordering-key", "order-7",
        ],
        ok(QUEUED, 202),
    )  # fmt: skip

    assert done.result.exit_code == 0, done.result.output
    assert done.result.stdout == "inv-9\n"
    request = done.request
    assert (request.method, request.url.path) == ("POST", "/v1/functions/hello/invoke")
    assert request.content == b'{"n": 1.10}'  # as typed
    assert request.headers["x-wuzhao-invocation-type"] == "async"
    assert request.headers["idempotency-key"] == "idem-1"
    assert request.headers["x-wuzhao-ordering-key"] == "order-7"
    assert request.url.params["qualifier"] == "live"


def test_invoke_async_without_keys_sends_none(run: Callable[..., Run]) -> None:
    done = run(["invoke", "hello", "--async"], ok(QUEUED, 202))

    assert done.result.stdout == "inv-9\n"
    assert done.request.content == b"{}"
    assert "idempotency-key" not in done.request.headers
    assert "x-wuzhao-ordering-key" not in done.request.headers


def test_invoke_keys_without_async_are_a_usage_error(run: Callable[..., Run]) -> None:
    for option in ("--idempotency-key", "--ordering-key"):
        done = run(["invoke", "hello", option, "k"])
        assert done.result.exit_code == 2
        assert "go with --async" in done.result.stderr
        assert done.server.requests == []


def test_invoke_async_refused_is_an_error(run: Callable[..., Run]) -> None:
    done = run(["invoke", "nope", "--async"], failed(404, "NotFound", "function 'nope' not found"))

    assert done.result.exit_code == 1
    assert done.result.stdout == ""
    assert "NotFound" in done.result.stderr


# dlq ls


def test_dlq_ls_piped_is_tab_separated(run: Callable[..., Run]) -> None:
    done = run(["dlq", "ls", "hello"], ok({"dead_letters": [DEAD], "next": None}))

    assert done.result.exit_code == 0, done.result.output
    assert (done.request.url.path, dict(done.request.url.params)) == ("/v1/functions/hello/dead-letters", {})
    assert [line.split("\t") for line in done.result.stdout.splitlines()] == [
        ["ID", "ENQUEUED", "ATTEMPTS", "ORDERING KEY", "LAST ERROR"],
        [DEAD["id"], "2024-05-01 12:00:00", "2", "order-7", "Timeout: ran past 30 s"],
    ]
    assert "more" not in done.result.stderr


def test_dlq_ls_pages_and_says_how_to_go_on(run: Callable[..., Run]) -> None:
    done = run(
        ["dlq", "ls", "hello", "--limit", "1", "--after", "x"], ok({"dead_letters": [DEAD], "next": "y"})
    )

    assert dict(done.request.url.params) == {"limit": "1", "after": "x"}
    assert "more: wuzhao dlq ls hello --after y" in done.result.stderr


def test_dlq_ls_all_follows_every_page(run: Callable[..., Run]) -> None:
    done = run(
        ["dlq", "ls", "hello", "--all", "--limit", "1"],
        ok({"dead_letters": [{**DEAD, "id": "a"}], "next": "a"}),
        ok({"dead_letters": [{**DEAD, "id": "b"}], "next": None}),
    )

    assert [line.split("\t")[0] for line in done.result.stdout.splitlines()[1:]] == ["a", "b"]
    assert [dict(r.url.params) for r in done.server.requests] == [
        {"limit": "1"},
        {"limit": "1", "after": "a"},
    ]


def test_dlq_ls_empty_says_so_on_stderr(run: Callable[..., Run]) -> None:
    done = run(["dlq", "ls", "hello"], ok({"dead_letters": [], "next": None}))

    assert done.result.exit_code == 0
    assert done.result.stdout == ""
    assert "hello has no dead letters" in done.result.stderr


def test_dlq_ls_on_a_terminal_is_a_table(run: Callable[..., Run]) -> None:
    terminal = Console(force_terminal=True, width=200, record=True)
    run(["dlq", "ls", "hello"], ok({"dead_letters": [DEAD], "next": None}), out=terminal)

    shown = terminal.export_text()
    assert "LAST ERROR" in shown and DEAD["id"] in shown and "Timeout: ran past 30 s" in shown


# dlq show, redrive, rm


def test_dlq_show_piped_is_the_json_record(run: Callable[..., Run]) -> None:
    done = run(["dlq", "show", "hello", DEAD["id"]], ok(DEAD))

    assert done.request.url.path == f"/v1/functions/hello/dead-letters/{DEAD['id']}"
    assert json.loads(done.result.stdout) == DEAD


def test_dlq_show_on_a_terminal_lists_the_attempts() -> None:
    terminal = Console(width=200, record=True)
    terminal.print(output.dead_letter_panel(DEAD))
    shown = terminal.export_text()

    assert "hello:live" in shown
    assert "1  2024-05-01 12:00:01  3.5 ms  FunctionError (ValueError): boom" in shown
    assert "2  2024-05-01 12:00:31  30000.0 ms  Timeout: ran past 30 s" in shown
    assert "order-7" in shown


def test_dlq_show_of_a_call_given_up_before_running() -> None:
    terminal = Console(width=200, record=True)
    terminal.print(output.dead_letter_panel({**DEAD, "attempts": [], "error": None}))

    assert "none (given up before running)" in terminal.export_text()


def test_dlq_redrive_prints_each_id(run: Callable[..., Run]) -> None:
    done = run(
        ["dlq", "redrive", "hello", "a", "b"],
        ok({"invocation_id": "a", "status": "queued"}, 202),
        ok({"invocation_id": "b", "status": "queued"}, 202),
    )

    assert done.result.exit_code == 0, done.result.output
    assert done.result.stdout == "a\nb\n"
    assert [(r.method, r.url.path) for r in done.server.requests] == [
        ("POST", "/v1/functions/hello/dead-letters/a/redrive"),
        ("POST", "/v1/functions/hello/dead-letters/b/redrive"),
    ]


def test_dlq_rm_deletes_each(run: Callable[..., Run]) -> None:
    done = run(["dlq", "rm", "hello", "a", "b"], ok(status=204), ok(status=204))

    assert done.result.exit_code == 0, done.result.output
    assert [(r.method, r.url.path) for r in done.server.requests] == [
        ("DELETE", "/v1/functions/hello/dead-letters/a"),
        ("DELETE", "/v1/functions/hello/dead-letters/b"),
    ]
    assert "deleted dead letter a" in done.result.stderr and "deleted dead letter b" in done.result.stderr


def test_dlq_rm_of_an_unknown_id_stops_with_an_error(run: Callable[..., Run]) -> None:
    done = run(["dlq", "rm", "hello", "nope", "b"], failed(404, "NotFound", "no dead letter 'nope'"))

    assert done.result.exit_code == 1
    assert "NotFound" in done.result.stderr
    assert len(done.server.requests) == 1  # stopped at the first failure


def test_dlq_commands_need_an_id(run: Callable[..., Run]) -> None:
    for verb in ("show", "redrive", "rm"):
        done = run(["dlq", verb, "hello"])
        assert done.result.exit_code == 2
        assert done.server.requests == []
