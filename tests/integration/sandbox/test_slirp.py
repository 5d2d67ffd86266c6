"""The worker's slirp4netns process on its own: ready, stopped and reaped, failures in its own words."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys

import pytest

from wuzhao.errors import SandboxUnavailable
from wuzhao.sandbox.slirp import Slirp

pytestmark = pytest.mark.sandbox

SLIRP4NETNS = shutil.which("slirp4netns") or "slirp4netns"


def test_ready_then_stop_kills_and_reaps_it() -> None:
    # A process in a fresh network namespace to attach to, as an instance would be.
    holder = subprocess.Popen(
        ["unshare", "--net", sys.executable, "-c", "print('in', flush=True); import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"in\n"  # it has left the host's namespace

        async def scenario() -> Slirp:
            slirp = Slirp.start(SLIRP4NETNS, f"/proc/{holder.pid}/ns/net")
            await asyncio.wait_for(slirp.ready(), 10)
            routes = subprocess.run(
                ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "ip", "-4", "route"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert "default via 10.0.2.2 dev tap0" in routes
            await slirp.stop()
            await slirp.stop()  # idempotent
            return slirp

        slirp = asyncio.run(scenario())
        assert slirp.process.returncode is not None
        assert not os.path.exists(f"/proc/{slirp.pid}")
    finally:
        holder.kill()
        holder.communicate()


def test_a_missing_namespace_is_refused_before_starting() -> None:
    with pytest.raises(SandboxUnavailable, match=r"could not set up the network: cannot open netns"):
        Slirp.start(SLIRP4NETNS, "/nonexistent/netns")


def test_the_servers_own_namespace_is_never_configured() -> None:
    with pytest.raises(SandboxUnavailable, match=r"server's own network namespace"):
        Slirp.start(SLIRP4NETNS, f"/proc/{os.getpid()}/ns/net")


def test_a_failed_start_says_why_in_slirps_words(tmp_path) -> None:
    fake = tmp_path / "slirp4netns"
    fake.write_text("#!/bin/sh\necho 'no tap device for you' >&2\nexit 1\n")
    fake.chmod(0o755)
    holder = subprocess.Popen(
        ["unshare", "--net", sys.executable, "-c", "print('in', flush=True); import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        holder.stdout.readline()

        async def scenario() -> None:
            slirp = Slirp.start(str(fake), f"/proc/{holder.pid}/ns/net")
            try:
                with pytest.raises(SandboxUnavailable, match=r"no tap device for you"):
                    await asyncio.wait_for(slirp.ready(), 10)
            finally:
                await slirp.stop()

        asyncio.run(scenario())
    finally:
        holder.kill()
        holder.communicate()
