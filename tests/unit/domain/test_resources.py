import pytest

from wuzhao.domain.resources import MB_PER_CORE, SHARES_PER_CORE, cpu_quota_us, cpu_shares


@pytest.mark.parametrize(
    ("memory_mb", "shares"),
    [
        (128, 74),
        (256, 148),
        (1024, 593),
        (1769, 1024),  # one full core
        (3538, 2048),
        (10240, 5928),
        (3, 2),  # round(1.7) == 2
        (2, 2),  # round(1.2) == 1, floored to 2
        (1, 2),
        (0, 2),
    ],
)
def test_cpu_shares(memory_mb: int, shares: int) -> None:
    assert cpu_shares(memory_mb) == shares


def test_one_core_worth_of_memory_buys_one_core_of_shares() -> None:
    assert cpu_shares(MB_PER_CORE) == SHARES_PER_CORE


def test_shares_grow_with_memory() -> None:
    values = [cpu_shares(mb) for mb in range(128, 10241, 64)]
    assert values == sorted(values)
    assert min(values) >= 2


@pytest.mark.parametrize(
    ("memory_mb", "quota_us"),
    [(1769, 100_000), (3538, 200_000), (128, 7_236), (10240, 578_858), (1, 1_000)],
)
def test_cpu_quota_follows_memory(memory_mb: int, quota_us: int) -> None:
    assert cpu_quota_us(memory_mb) == quota_us
