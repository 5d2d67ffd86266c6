import io
from typing import Any

import pytest
from rich.console import Console
from tests.unit.cli.conftest import FUNCTION

from wuzhao.cli import output
from wuzhao.manifest import Change, Outcome


def shown(renderable: Any) -> str:
    screen = io.StringIO()
    Console(file=screen, force_terminal=True, width=120, color_system=None).print(renderable)
    return screen.getvalue()


@pytest.mark.parametrize(
    ("routing", "expected"),
    [(None, "3"), ({}, "3"), ({"4": 0.1}, "3 (90%), 4 (10%)"), ({"4": 0.333}, "3 (67%), 4 (33%)")],
)
def test_routes(routing: dict[str, float] | None, expected: str) -> None:
    assert output.routes({"version": 3, "routing": routing}) == expected


def test_function_panel_shows_secret_names_layers_and_limits() -> None:
    function = {
        **FUNCTION,
        "secrets": {"DB": "db-pass"},
        "layers": ["deps:3", "tools:1"],
        "max_concurrency": 0,
        "idle_timeout_s": None,
    }

    text = shown(output.function_panel(function))

    assert "DB <- db-pass" in text
    assert "deps:3, tools:1" in text
    assert "concurrency   0" in text
    assert "idle timeout  server default" in text


ASYNC = {
    "max_retries": 2,
    "retry_delay_s": 0.5,
    "max_event_age_s": 3600,
    "on_success": None,
    "on_failure": "alert",
    "ordering_hold": True,
}


def test_function_panel_shows_how_async_calls_are_retried_and_sent_on() -> None:
    text = shown(output.function_panel({**FUNCTION, **ASYNC}))

    assert "retries       2, first after 0.5 s, then doubling" in text
    assert "event age     at most 3600 s" in text
    assert "on success    -" in text
    assert "on failure    alert" in text
    assert "ordering      a dead call holds its key" in text


def test_function_panel_without_retries_or_hold() -> None:
    text = shown(output.function_panel({**FUNCTION, **ASYNC, "max_retries": 0, "ordering_hold": False}))

    assert "retries       0 " in text
    assert "first after" not in text  # no retry: no delay to tell
    assert "a dead call lets its key go on" in text


def test_function_panel_of_a_server_without_async_calls() -> None:
    assert "retries" not in shown(output.function_panel(FUNCTION))
    assert "loops" not in shown(output.function_panel(FUNCTION))


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"max_chain_calls": 16, "recursive_loop": "terminate"},
            "loops         stopped after 16 calls in one chain",
        ),
        (
            {"max_chain_calls": 3, "recursive_loop": "terminate"},
            "loops         stopped after 3 calls in one chain",
        ),
        (
            {"max_chain_calls": 16, "recursive_loop": "allow"},
            "loops         allowed: a chain of calls may call",
        ),
    ],
)
def test_function_panel_shows_what_stops_a_loop(settings: dict[str, Any], expected: str) -> None:
    assert expected in shown(output.function_panel({**FUNCTION, **ASYNC, **settings}))


def test_tables_never_read_user_values_as_markup() -> None:
    text = shown(output.table(["NAME"], [["[bold]x[/bold]"]]))

    assert "[bold]x[/bold]" in text


@pytest.mark.parametrize(
    ("outcome", "dry_run", "expected"),
    [
        (
            Outcome("a", Change.CREATED, (), FUNCTION),
            False,
            "created a: revision 3, 2.0 KiB, sha256 3fa2c1d0e9b7",
        ),
        (
            Outcome("a", Change.UPDATED, ("env", "code"), FUNCTION),
            False,
            "updated a (env, code): revision 3, 2.0 KiB, sha256 3fa2c1d0e9b7",
        ),
        (Outcome("a", Change.UNCHANGED, (), FUNCTION), False, "unchanged a: revision 3"),
        (Outcome("a", Change.CREATED, (), None), True, "would create a"),
        (Outcome("a", Change.UPDATED, ("memory_mb",), FUNCTION), True, "would update a (memory_mb)"),
        (Outcome("a", Change.UNCHANGED, (), FUNCTION), True, "unchanged a: revision 3"),
    ],
)
def test_manifest_outcome(outcome: Outcome, dry_run: bool, expected: str) -> None:
    assert output.manifest_outcome(outcome, dry_run=dry_run) == expected
