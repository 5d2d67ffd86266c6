"""Resources derived from memory: the user configures memory only (MISSION point 8)."""

from __future__ import annotations

# Like Lambda: 1769 MB of memory buys the weight of one full core.
MB_PER_CORE = 1769
SHARES_PER_CORE = 1024  # cgroup v1 cpu.shares of one core's weight


PERIOD_US = 100_000  # the CFS period a hard quota is expressed in
MIN_QUOTA_US = 1_000  # the kernel refuses quotas under 1 ms


def cpu_shares(memory_mb: int) -> int:
    """CPU weight proportional to memory; cgroup v1 refuses shares below 2."""
    return max(2, round(SHARES_PER_CORE * memory_mb / MB_PER_CORE))


def cpu_quota_us(memory_mb: int) -> int:
    """A hard CPU cap in the same proportion: 1769 MB may use one full core, 128 MB ~7 %."""
    return max(MIN_QUOTA_US, round(PERIOD_US * memory_mb / MB_PER_CORE))
