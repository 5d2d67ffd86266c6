import itertools

import pytest

from wuzhao.domain.instances import (
    TRANSITIONS,
    Candidate,
    IdleInstance,
    InstanceState,
    Placement,
    can_transition,
    evictions,
    expired,
    must_yield,
    place_call,
)

S = InstanceState
ALLOWED = {
    (S.STARTING, S.BUSY),
    (S.STARTING, S.IDLE),
    (S.STARTING, S.STOPPED),
    (S.IDLE, S.BUSY),
    (S.IDLE, S.STOPPED),
    (S.BUSY, S.IDLE),
    (S.BUSY, S.STOPPED),
}


@pytest.mark.parametrize(("current", "new"), list(itertools.product(S, S)))
def test_every_transition(current: InstanceState, new: InstanceState) -> None:
    assert can_transition(current, new) is ((current, new) in ALLOWED)


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(S)


def test_stopped_is_final() -> None:
    assert not any(can_transition(S.STOPPED, new) for new in S)


def test_states_are_strings() -> None:
    assert [s.value for s in S] == ["starting", "idle", "busy", "stopped"]
    assert S("busy") is S.BUSY


@pytest.mark.parametrize(
    ("idle", "active", "max_concurrency", "expected"),
    [
        (1, 0, 10, Placement.REUSE),
        (3, 9, 10, Placement.REUSE),
        (1, 10, 10, Placement.REUSE),  # a warm instance wins even at the limit
        (0, 0, 10, Placement.START),
        (0, 9, 10, Placement.START),
        (0, 0, 1, Placement.START),
        (0, 10, 10, Placement.WAIT),
        (0, 11, 10, Placement.WAIT),
        (0, 1, 1, Placement.WAIT),
        (0, 0, 0, Placement.WAIT),
    ],
)
def test_place_call(idle: int, active: int, max_concurrency: int, expected: Placement) -> None:
    assert place_call(idle=idle, active=active, max_concurrency=max_concurrency) is expected


@pytest.mark.parametrize(
    ("idle_since", "now", "timeout", "is_expired"),
    [
        (100.0, 100.0, 10.0, False),
        (100.0, 109.9, 10.0, False),
        (100.0, 110.0, 10.0, True),  # exactly the timeout counts as expired
        (100.0, 500.0, 10.0, True),
        (100.0, 100.0, 0.0, True),
        (200.0, 100.0, 10.0, False),  # idle_since in the future (clock skew): keep
    ],
)
def test_expired_table(idle_since: float, now: float, timeout: float, is_expired: bool) -> None:
    ids = expired([IdleInstance("i", idle_since)], now=now, idle_timeout_s=timeout)
    assert ids == (["i"] if is_expired else [])


def test_expired_keeps_order_and_picks_only_the_old() -> None:
    instances = [IdleInstance("a", 0.0), IdleInstance("b", 95.0), IdleInstance("c", 50.0)]
    assert expired(instances, now=100.0, idle_timeout_s=30.0) == ["a", "c"]
    assert expired([], now=100.0, idle_timeout_s=30.0) == []


C = Candidate


@pytest.mark.parametrize(
    ("idle", "instances_over", "memory_over", "expected"),
    [
        ([], 0, 0, []),  # nothing over: nothing to stop
        ([C("a", 1.0, 128)], 0, 0, []),
        ([], 1, 0, None),  # over, and nothing idle to stop
        ([C("a", 2.0, 128), C("b", 1.0, 128)], 1, 0, ["b"]),  # least recently used first
        ([C("a", 2.0, 128), C("b", 1.0, 128)], 2, 0, ["b", "a"]),
        ([C("a", 2.0, 128), C("b", 1.0, 128)], 3, 0, None),
        ([C("a", 1.0, 128), C("b", 2.0, 512)], 0, 300, ["a", "b"]),  # memory: until enough is freed
        ([C("a", 1.0, 512), C("b", 2.0, 128)], 0, 300, ["a"]),
        ([C("a", 1.0, 128)], 0, 129, None),
        ([C("a", 1.0, 128), C("b", 2.0, 128)], 1, 200, ["a", "b"]),  # both budgets at once
    ],
)
def test_evictions_stop_the_least_recently_used_until_it_fits(idle, instances_over, memory_over, expected):
    assert evictions(idle, instances_over=instances_over, memory_over_mb=memory_over) == expected


@pytest.mark.parametrize(
    ("surplus", "expected"),
    [
        (None, ["a", "b", "c"]),  # no minimum: every expired instance goes
        (3, ["a", "b", "c"]),
        (2, ["a", "c"]),  # the two idle longest go (a at 10, c at 20), b (30) stays
        (1, ["a"]),
        (0, []),  # at min_instances already: nothing goes
        (-1, []),
    ],
)
def test_expired_never_goes_below_the_minimum(surplus, expected) -> None:
    idle = [IdleInstance("a", 10.0), IdleInstance("b", 30.0), IdleInstance("c", 20.0)]
    assert expired(idle, now=100.0, idle_timeout_s=5.0, surplus=surplus) == expected


@pytest.mark.parametrize(
    ("usage", "waiting", "namespace", "need", "yields"),
    [
        ({"a": 384}, [], "a", 128, False),  # nobody else waits: take the whole node
        ({"a": 384}, ["a"], "a", 128, False),  # only its own calls wait
        ({"a": 384}, ["b"], "a", 128, True),  # b waits: a is over half of 512
        ({"a": 128}, ["b"], "a", 128, False),  # a stays within its half
        ({"a": 384}, ["b"], "b", 128, False),  # b is far under its share
        ({"a": 256, "b": 128}, ["c"], "b", 32, False),  # three contenders: shares of 170
        ({"a": 256, "b": 128}, ["c"], "b", 128, True),
        ({"a": 256, "b": 128}, ["c"], "a", 128, True),
        ({}, ["b"], "a", 512, True),  # even a first instance yields if it would exceed a share
    ],
)
def test_a_namespace_yields_beyond_its_share_only_when_others_wait(usage, waiting, namespace, need, yields):
    assert must_yield(usage, waiting, namespace=namespace, need_mb=need, budget_mb=512) is yields
