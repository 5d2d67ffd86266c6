"""What network "outbound" adds to starting an instance, next to "none" measured in the same run.

    python bench/network_start.py [--runs 30]

Straight on the launcher (root, real sandboxes, no HTTP): ``runs`` instances of
one mode started one after another and kept, then all destroyed; then the
other mode; two rounds, the first a warm-up. Each is timed from ``launch`` to
the runtime's READY (``launch`` of an outbound instance includes starting
slirp4netns, waiting for its interface, the routes and the DNS filter). Prints
p50/p90/max of launch alone and of launch -> READY, in milliseconds.

Instances are kept rather than destroyed one by one because the kernel's
teardown of a network namespace (more so of one that had a tap device) and
the RCU grace period of a cgroup v1 attach land on whichever launch comes next,
and would blur the two modes' difference into noise.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop

from wuzhao.runtimes import protocol
from wuzhao.sandbox.api import SandboxSpec
from wuzhao.sandbox.zygote_launcher import ZygoteLauncher
from wuzhao.worker.channel import RuntimeChannel

HELLO = "def handler(event, context):\n    return 1\n"
INIT = {"handler": "main.handler", "function_name": "b", "function_version": "1", "memory_limit_in_mb": 128}


async def start_one(
    launcher: ZygoteLauncher, code: Path, mode: str, i: int, alive: list[tuple[Any, RuntimeChannel]]
) -> tuple[float, float]:
    """(launch ms, launch -> READY ms) of one new instance, added to ``alive``."""
    spec = SandboxSpec(
        instance_id=f"bench-{mode}-{i}-{uuid.uuid4().hex[:6]}",
        code_dir=str(code),
        uid=64000 + i,
        memory_mb=128,
        cpu_shares=74,
        network=mode,
    )
    t0 = time.perf_counter()
    process = await launcher.launch(spec)
    t1 = time.perf_counter()
    channel = await RuntimeChannel.connect(process.channel, max_body=1 << 20)
    answer = channel.expect()
    channel.send(protocol.INIT, INIT)
    frame = await asyncio.wait_for(answer, 10)
    t2 = time.perf_counter()
    assert frame.kind == protocol.READY, frame
    alive.append((process, channel))
    return (t1 - t0) * 1000, (t2 - t0) * 1000


def line(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"{name:<28} p50 {statistics.median(values):6.2f}  p90 {p90:6.2f}  max {ordered[-1]:6.2f}"


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="wuzhao-bench-") as tmp:
        code = Path(tmp, "code")
        code.mkdir()
        (code / "main.py").write_text(HELLO)
        launcher = ZygoteLauncher(state_dir=Path(tmp, "state"), server_id=f"bench-{uuid.uuid4().hex[:6]}")
        await launcher.start()
        try:
            for round_ in ("warm-up", "measured"):
                for mode in ("none", "outbound"):
                    alive: list[tuple[Any, RuntimeChannel]] = []
                    results = [await start_one(launcher, code, mode, i, alive) for i in range(runs)]
                    for process, channel in alive:
                        channel.close()
                        await process.destroy()
                    await asyncio.sleep(1)  # let the kernel finish tearing the namespaces down
                    if round_ == "measured":
                        print(line(f"{mode}: launch", [launch for launch, _ in results]))
                        print(line(f"{mode}: launch -> READY", [ready for _, ready in results]))
        finally:
            await launcher.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    uvloop.run(main(parser.parse_args().runs))  # the server's loop
