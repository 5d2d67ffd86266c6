import random

import pytest

from wuzhao.domain.functions import FunctionConfig
from wuzhao.domain.versions import (
    LATEST,
    Executable,
    Qualifier,
    QualifierKind,
    Routing,
    check_alias_name,
    parse_qualifier,
    routing_from_weights,
)
from wuzhao.errors import BadRequest

# qualifiers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, Qualifier(QualifierKind.LATEST)),
        ("", Qualifier(QualifierKind.LATEST)),
        (LATEST, Qualifier(QualifierKind.LATEST)),
        ("1", Qualifier(QualifierKind.VERSION, version=1)),
        ("42", Qualifier(QualifierKind.VERSION, version=42)),
        ("007", Qualifier(QualifierKind.VERSION, version=7)),
        ("prod", Qualifier(QualifierKind.ALIAS, alias="prod")),
        ("a", Qualifier(QualifierKind.ALIAS, alias="a")),
        ("canary-2", Qualifier(QualifierKind.ALIAS, alias="canary-2")),
        ("blue_green", Qualifier(QualifierKind.ALIAS, alias="blue_green")),
        ("latest", Qualifier(QualifierKind.ALIAS, alias="latest")),  # only "$LATEST" is the working copy
        ("a" * 64, Qualifier(QualifierKind.ALIAS, alias="a" * 64)),
    ],
)
def test_parse_qualifier(raw: str | None, expected: Qualifier) -> None:
    assert parse_qualifier(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "0",
        "00",
        "-1",
        "1.5",
        "1a",
        "Prod",
        "$latest",
        "_prod",
        "-prod",
        "a" * 65,
        "prod\n",
        "pr od",
        "prod/1",
        "²",  # a digit to str.isdigit, not to int()
        "\u0661",  # ARABIC-INDIC DIGIT ONE: not a version number
        "ünïcode",
    ],
)
def test_bad_qualifiers_are_refused_on_qualifier(raw: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_qualifier(raw)
    assert info.value.field == "qualifier"


# alias names


@pytest.mark.parametrize("name", ["a", "prod", "canary-2", "blue_green", "x1", "a" * 64])
def test_valid_alias_names_are_returned_unchanged(name: str) -> None:
    assert check_alias_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "1", "1prod", "Prod", "-prod", "_prod", "$LATEST", "a" * 65, "prod\n", "pr.od", "pr od", "ü"],
)
def test_invalid_alias_names_are_refused_on_alias(name: str) -> None:
    with pytest.raises(BadRequest) as info:
        check_alias_name(name)
    assert info.value.field == "alias"


# routing


@pytest.mark.parametrize(
    ("routing", "draw", "version"),
    [
        (Routing(3), 0.0, 3),
        (Routing(3), 0.5, 3),
        (Routing(3), 0.999999, 3),
        (Routing(3, 4, 0.1), 0.0, 4),
        (Routing(3, 4, 0.1), 0.0999, 4),
        (Routing(3, 4, 0.1), 0.1, 3),  # the share is [0, weight): the boundary goes to the main version
        (Routing(3, 4, 0.1), 0.5, 3),
        (Routing(3, 4, 0.1), 0.999999, 3),
        (Routing(3, 4, 0.9), 0.8999, 4),
        (Routing(3, None, 0.5), 0.0, 3),  # a weight without an additional version sends nothing away
    ],
)
def test_pick(routing: Routing, draw: float, version: int) -> None:
    assert routing.pick(draw) == version


def test_pick_gives_the_additional_version_its_share_of_a_uniform_stream() -> None:
    draws = random.Random(20240601)
    routing = Routing(3, 4, 0.1)
    picks = [routing.pick(draws.random()) for _ in range(10_000)]
    assert set(picks) == {3, 4}
    assert 0.085 <= picks.count(4) / len(picks) <= 0.115


@pytest.mark.parametrize(
    ("routing", "versions"),
    [(Routing(3), (3,)), (Routing(3, 4, 0.1), (3, 4)), (Routing(7, 1, 0.5), (7, 1))],
)
def test_routing_versions(routing: Routing, versions: tuple[int, ...]) -> None:
    assert routing.versions == versions


@pytest.mark.parametrize(
    ("version", "weights", "expected"),
    [
        (1, None, Routing(1)),
        (1, {}, Routing(1)),
        (2, {"1": 0.1}, Routing(2, 1, 0.1)),
        (1, {"3": 0.5}, Routing(1, 3, 0.5)),
        (1, {"2": 0.999}, Routing(1, 2, 0.999)),
        (1, {"2": 0.001}, Routing(1, 2, 0.001)),
    ],
)
def test_routing_from_weights(version: int, weights: dict[str, float] | None, expected: Routing) -> None:
    assert routing_from_weights(version, weights, {1, 2, 3}) == expected


@pytest.mark.parametrize(
    ("version", "weights", "field"),
    [
        (4, None, "version"),  # the main version does not exist
        (0, {"1": 0.1}, "version"),
        (1, {"2": 0.1, "3": 0.1}, "routing"),  # at most one additional version
        (1, {"4": 0.1}, "routing"),  # the additional version does not exist
        (1, {"two": 0.1}, "routing"),
        (1, {"-2": 0.1}, "routing"),
        (1, {"2.0": 0.1}, "routing"),
        (1, {"²": 0.1}, "routing"),  # a digit to str.isdigit, not to int()
        (1, {"1": 0.1}, "routing"),  # the additional version is the main one
        (1, {"2": 0.0}, "routing"),
        (1, {"2": 1.0}, "routing"),
        (1, {"2": -0.1}, "routing"),
        (1, {"2": 1.5}, "routing"),
        (1, {"2": float("nan")}, "routing"),
        (1, {"2": float("inf")}, "routing"),
    ],
)
def test_bad_alias_routing_is_refused(version: int, weights: dict[str, float] | None, field: str) -> None:
    with pytest.raises(BadRequest) as info:
        routing_from_weights(version, weights, {1, 2, 3})
    assert info.value.field == field


def test_routing_needs_a_published_version() -> None:
    with pytest.raises(BadRequest) as info:
        routing_from_weights(1, None, set())
    assert info.value.field == "version"


# executables


def test_executables_pool_by_namespace_function_and_version() -> None:
    config = FunctionConfig(memory_mb=256)
    latest = Executable("team", "hello", LATEST, 7, config, "ab" * 32)
    published = Executable("team", "hello", "3", 0, config, "ab" * 32)
    assert latest.pool_key == ("team", "hello", LATEST)
    assert published.pool_key == ("team", "hello", "3")
    # a new revision of $LATEST is the same pool: the pool is replaced, not added
    assert Executable("team", "hello", LATEST, 8, config, "cd" * 32).pool_key == latest.pool_key
