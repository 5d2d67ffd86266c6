import pytest

from wuzhao.domain import chains
from wuzhao.domain.chains import Chain
from wuzhao.domain.functions import FunctionConfig
from wuzhao.errors import RecursiveLoop


def walk(path: list[str], limit: int | None) -> Chain:
    chain = chains.start(path[0], "c1")
    for function in path[1:]:
        chain = chains.extend(chain, function, limit=limit)
    return chain


@pytest.mark.parametrize(
    ("path", "limit", "stopped"),
    [
        (["a"] * 16, 16, False),  # 16 calls of one function: the limit, allowed
        (["a"] * 17, 16, True),  # the 17th is not made
        (["a", "b"] * 16, 16, False),  # a ping-pong of 32 calls: 16 each
        (["a", "b"] * 16 + ["a"], 16, True),
        (["a", "b", "c"], 16, False),  # a pipeline
        ([f"f{i}" for i in range(1000)], 16, False),  # a long pipeline of distinct functions
        (["a"] * 100, None, False),  # opted out
        (["a", "a"], 1, True),
    ],
)
def test_a_chain_stops_at_the_limit_of_a_function(path: list[str], limit: int | None, stopped: bool) -> None:
    if stopped:
        with pytest.raises(RecursiveLoop, match="limit"):
            walk(path, limit)
    else:
        assert walk(path, limit).hop == len(path) - 1


def test_branches_count_separately() -> None:
    root = chains.start("fanout", "c1")
    branches = [chains.extend(root, "worker", limit=1) for _ in range(1000)]
    assert all(b.counts == {"fanout": 1, "worker": 1} for b in branches)
    assert {b.id for b in branches} == {"c1"}


def test_a_chain_survives_the_queue() -> None:
    chain = walk(["a", "b", "a"], 16)
    again = chains.from_origin({**chain.to_origin(), "trigger": "t"}, "call-2", "a")
    assert again == chain


@pytest.mark.parametrize(
    "origin",
    [{}, {"chain": 3}, {"hop": "x", "chain": None}],
)
def test_an_origin_without_a_chain_starts_one(origin: dict[str, object]) -> None:
    assert chains.from_origin(origin, "call-1", "f") == Chain("call-1", 0, {"f": 1})


def test_counts_are_bounded() -> None:
    chain = walk([f"f{i}" for i in range(chains.MAX_TRACKED + 50)], 16)
    assert len(chain.counts) == chains.MAX_TRACKED


@pytest.mark.parametrize(
    ("config", "limit"),
    [
        (FunctionConfig(), 16),
        (FunctionConfig(max_chain_calls=3), 3),
        (FunctionConfig(recursive_loop="allow"), None),  # opted out
        (FunctionConfig(max_chain_calls=3, recursive_loop="allow"), None),
    ],
)
def test_a_functions_limit(config: FunctionConfig, limit: int | None) -> None:
    assert chains.limit_of(config) == limit
    assert chains.DEFAULT_LIMIT == FunctionConfig().max_chain_calls == 16
