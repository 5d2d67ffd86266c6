import pytest

from wuzhao.domain.uids import UidPool, UidsExhausted


def test_round_robin_from_the_base() -> None:
    pool = UidPool(1000, 3)
    assert [pool.acquire() for _ in range(3)] == [1000, 1001, 1002]
    assert pool.in_use == 3


def test_exhaustion_raises_and_release_makes_room() -> None:
    pool = UidPool(1000, 2)
    a, b = pool.acquire(), pool.acquire()
    with pytest.raises(UidsExhausted):
        pool.acquire()
    pool.release(a)
    assert pool.in_use == 1
    assert pool.acquire() == a
    assert {a, b} == {1000, 1001}


def test_a_freed_uid_is_the_last_to_be_reused() -> None:
    pool = UidPool(500, 4)
    first = pool.acquire()
    pool.release(first)
    # The other three free uids come first, then the one just freed.
    assert [pool.acquire() for _ in range(4)] == [501, 502, 503, 500]


def test_round_robin_skips_uids_still_in_use() -> None:
    pool = UidPool(10, 3)
    uids = [pool.acquire() for _ in range(3)]
    pool.release(uids[1])
    assert pool.acquire() == 11
    pool.release(10)
    assert pool.acquire() == 10


def test_never_two_live_instances_on_one_uid() -> None:
    pool = UidPool(100, 5)
    live: set[int] = set()
    for step in range(200):
        if step % 3 == 2 and live:
            uid = min(live)
            pool.release(uid)
            live.discard(uid)
        if len(live) < 5:
            uid = pool.acquire()
            assert uid not in live
            assert 100 <= uid < 105
            live.add(uid)
        assert pool.in_use == len(live)


def test_releasing_an_unknown_uid_is_harmless() -> None:
    pool = UidPool(100, 2)
    pool.release(12345)
    assert pool.in_use == 0


@pytest.mark.parametrize(("base", "count"), [(0, 10), (-1, 10), (100, 0), (100, -5)])
def test_bad_ranges_are_refused(base: int, count: int) -> None:
    with pytest.raises(ValueError):
        UidPool(base, count)
