"""Resources derived from memory: the user configures memory only (MISSION point 8)."""

from __future__ import annotations

# Like Lambda: 1769 MB of memory buys the weight of one full core.
MB_PER_CORE = 1769
SHARES_PER_CORE = 1024  # cgroup v1 cpu.shares of one core's weight


def cpu_shares(memory_mb: int) -> int:
    """CPU weight proportional to memory; cgroup v1 refuses shares below 2."""
    return max(2, round(SHARES_PER_CORE * memory_mb / MB_PER_CORE))
