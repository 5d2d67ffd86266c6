"""Cold start of a handler importing numpy from a preloaded runtime layer, next to the same without.

    python bench/preload_start.py [--cold 30] [--fork 200]

Cold: end to end over HTTP, as in invoke_latency.py: each sample deploys a
new function whose handler imports numpy and times its first call. Two
servers run side by side, taking turns by blocks of samples, both with the same
runtime layer (this environment's numpy, copied as the tests copy it:
``wuzhao.runtimes.python.site_layer``): one with
``WUZHAO_RUNTIME_PRELOAD=numpy``, the baseline without.

Fork (``--fork N``, 0 to skip): why a function that does not import numpy is
still forked from the plain zygote. Straight on one launcher (root, no HTTP,
like layers_start.py), launch -> READY of a hello-world instance forked from
the plain zygote and from the numpy-preloaded one, the two in random order
after a throwaway instance (the first launch after the previous round's
teardown is always slower).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).parent))

from common import Http, deploy, summary, wuzhao_server

from wuzhao.runtimes import protocol
from wuzhao.runtimes.python import site_layer
from wuzhao.sandbox import images
from wuzhao.sandbox.api import LayerMount, SandboxSpec
from wuzhao.sandbox.zygote_launcher import ZygoteLauncher
from wuzhao.worker.channel import RuntimeChannel

NUMPY = "import numpy\n\n\ndef handler(event, context):\n    return int(numpy.arange(10).sum())\n"
HELLO = "def handler(event, context):\n    return 1\n"
EVENT = json.dumps({}).encode()


def numpy_layer(root: Path) -> Path:
    """A runtime layer holding this environment's numpy (and numpy.libs) under python/."""
    return site_layer.copy_installed(["numpy"], root)


def cold_pair(layer: Path, runs: int, block: int = 5) -> tuple[list[float], list[float]]:
    """ms of the first call of a new numpy function: preloaded, and not (same layer, same run).

    The servers take turns by blocks of ``block`` samples, each block back to back like
    invoke_latency.py's cold starts: a baseline instance still going (deleted, but its
    teardown runs in the background, numpy's threads too) must not weigh on a preloaded
    sample, and a machine left idle between samples starts the next one slower.
    """
    common = {"WUZHAO_RUNTIME_LAYERS": f"sci={layer}", "WUZHAO_UID_COUNT": "1000"}
    with (
        wuzhao_server(**common, WUZHAO_RUNTIME_PRELOAD="numpy", WUZHAO_UID_BASE="340000") as (p_port, p_key),
        wuzhao_server(**common, WUZHAO_UID_BASE="350000") as (b_port, b_key),
    ):
        servers = {"preloaded": Http(p_port, p_key), "baseline": Http(b_port, b_key)}
        samples: dict[str, list[float]] = {name: [] for name in servers}
        for http in servers.values():  # warm the page cache with numpy's files
            for i in range(3):
                cold_start(http, f"warm-{i}")
        for first in range(0, runs, block):
            for name, http in servers.items():
                samples[name] += [cold_start(http, f"np-{i}") for i in range(first, min(runs, first + block))]
    return samples["preloaded"], samples["baseline"]


def cold_start(http: Http, function: str) -> float:
    deploy(http, function, NUMPY)
    elapsed = http.timed("POST", f"/v1/functions/{function}/invoke", EVENT)
    http.call("DELETE", f"/v1/functions/{function}")
    return elapsed


async def fork_pair(layer: Path, runs: int) -> tuple[list[float], list[float]]:
    """ms launch -> READY of a hello instance forked from the plain zygote, and from the preloaded one."""
    mount = LayerMount("sci", str(layer))
    with tempfile.TemporaryDirectory(prefix="wuzhao-bench-") as tmp:
        code = Path(tmp, "hello")
        code.mkdir()
        (code / "main.py").write_text(HELLO)
        base = SandboxSpec(
            instance_id="x",
            code_dir=str(code),
            code_image=str(images.build(code, Path(tmp, "hello.erofs"))),
            uid=1,
            memory_mb=128,
            cpu_shares=74,
            layers=(mount,),
        )
        launcher = ZygoteLauncher(
            state_dir=Path(tmp, "state"),
            server_id=f"bench-{uuid.uuid4().hex[:6]}",
            runtime_layers=[mount],
            preload=["numpy"],
        )
        await launcher.start()
        assert launcher.uses_images, "this host cannot mount images: the numbers would be the binds'"
        samples: dict[bool, list[float]] = {False: [], True: []}
        try:
            for i in range(runs + 10):
                order = [False, True]
                random.shuffle(order)
                alive = [await ready(launcher, base, 3 * i, False)]  # the throwaway
                for n, preloaded in enumerate(order):
                    alive.append(await ready(launcher, base, 3 * i + 1 + n, preloaded))
                    if i >= 10:
                        samples[preloaded].append(alive[-1][0])
                for _, process, channel in alive:
                    channel.close()
                    await process.destroy()
                await asyncio.sleep(0.05)
        finally:
            await launcher.close()
    return samples[False], samples[True]


async def ready(launcher: ZygoteLauncher, base: SandboxSpec, i: int, preloaded: bool) -> tuple[float, ...]:
    fields = {**vars(base), "instance_id": f"bench-{uuid.uuid4().hex[:12]}", "uid": 64000 + i}
    spec = SandboxSpec(**{**fields, "preloaded": preloaded})
    started = time.perf_counter()
    process = await launcher.launch(spec)
    channel = await RuntimeChannel.connect(process.channel, max_body=1 << 20)
    answer = channel.expect()
    init = {"handler": "main.handler", "function_name": "b", "function_version": "1"}
    channel.send(protocol.INIT, {**init, "memory_limit_in_mb": 128, "layers": ["sci"]})
    frame = await asyncio.wait_for(answer, 10)
    assert frame.kind == protocol.READY, frame
    return (time.perf_counter() - started) * 1000, process, channel


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cold", type=int, default=30, help="cold starts to time on each server")
    parser.add_argument("--fork", type=int, default=200, help="hello instances to time from each zygote")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wuzhao-bench-") as tmp:
        layer = numpy_layer(Path(tmp, "sci"))
        ours, base = (summary(s) for s in cold_pair(layer, args.cold))
        print("| figure | preloaded p50 / p99 | without preloading p50 / p99 | ratio |")
        print("|---|---|---|---|")
        print(
            f"| cold start over HTTP, handler importing numpy | {ours['p50']:.2f} / {ours['p99']:.2f} ms "
            f"| {base['p50']:.2f} / {base['p99']:.2f} ms | {ours['p50'] / base['p50']:.2f}x |"
        )
        if args.fork:
            plain, preloaded = uvloop.run(fork_pair(layer, args.fork))
            for name, values in (("plain zygote", plain), ("numpy-preloaded zygote", preloaded)):
                s = summary(values)
                print(f"hello launch -> READY, {name:<24} p50 {s['p50']:6.2f}  p99 {s['p99']:6.2f} ms")
            extra = summary(preloaded)["p50"] - summary(plain)["p50"]
            print(f"forking the preloaded zygote costs a hello cold start {extra:+.2f} ms (p50)")


if __name__ == "__main__":
    main()
