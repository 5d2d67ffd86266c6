"""Fixtures shared by the sandbox tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=[0, 2], ids=["forked", "shell"])
def shells(request: pytest.FixtureRequest) -> int:
    """How many shells the launcher keeps: 0, the zygote forks each instance when asked;
    2, instances come from its prepared shells (the rig waits for one before each launch)."""
    return int(request.param)
