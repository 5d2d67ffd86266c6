import json
from collections.abc import Callable

import pytest
from tests.unit.cli.conftest import Run, failed, ok

SECRET = {"name": "db-pass", "updated_at": "2024-05-01T12:00:00Z"}
VALUE = "s3cr3t-value"


def test_secret_set_from_an_argument_never_echoes_it(run: Callable[..., Run]) -> None:
    done = run(["secret", "set", "db-pass", VALUE], ok(SECRET))

    assert done.result.exit_code == 0
    assert (done.request.method, done.request.url.path) == ("PUT", "/v1/secrets/db-pass")
    assert json.loads(done.request.content) == {"value": VALUE}
    assert VALUE not in done.result.output
    assert done.result.stderr == "set secret db-pass\n"


@pytest.mark.parametrize(
    ("stdin", "sent"), [(VALUE + "\n", VALUE), (VALUE + "\r\n", VALUE), ("a\n\n", "a\n")]
)
def test_secret_set_from_stdin_drops_one_trailing_newline(
    run: Callable[..., Run], stdin: str, sent: str
) -> None:
    done = run(["secret", "set", "db-pass", "--from-stdin"], ok(SECRET), stdin=stdin)

    assert json.loads(done.request.content) == {"value": sent}
    assert done.result.stdout == ""


def test_secret_set_needs_exactly_one_source(run: Callable[..., Run]) -> None:
    both = run(["secret", "set", "db-pass", VALUE, "--from-stdin"], stdin="x")
    neither = run(["secret", "set", "db-pass"], stdin="")  # not a terminal: nothing to ask

    for done in (both, neither):
        assert done.result.exit_code == 2
        assert done.server.requests == []
        assert VALUE not in done.result.output


def test_a_refused_secret_does_not_echo_it(run: Callable[..., Run]) -> None:
    done = run(
        ["secret", "set", "bad name", VALUE], failed(400, "BadRequest", "secret name 'bad name' is invalid")
    )

    assert done.result.exit_code == 1
    assert VALUE not in done.result.output


def test_secret_ls_and_rm(run: Callable[..., Run]) -> None:
    listed = run(["secret", "ls"], ok({"secrets": [SECRET]}))
    removed = run(["secret", "rm", "db-pass"], ok(status=204))

    assert [line.split("\t") for line in listed.result.stdout.splitlines()] == [
        ["SECRET", "UPDATED"],
        ["db-pass", "2024-05-01 12:00:00"],
    ]
    assert (removed.request.method, removed.request.url.path) == ("DELETE", "/v1/secrets/db-pass")
    assert removed.result.stderr == "deleted secret db-pass\n"
