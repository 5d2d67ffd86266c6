"""What layers add to starting an instance: none, two layers, two layers whose modules are imported.

    python bench/layers_start.py [--runs 30]

Straight on the launcher (root, real sandboxes, no HTTP), like
``bench/network_start.py``: ``runs`` instances of each kind started one after
another, the kinds taking turns (so whatever else the machine does weighs on
each alike), and kept, then all destroyed; two rounds, the first a warm-up (it
also attaches every image to its loop device once, as a server does at the
first instance). The code and both layers are EROFS images, as on
a server; INIT lists the layers, so the runtime puts ``/opt/<name>/python``
and ``/opt/<name>`` on ``sys.path``. Each instance is timed from ``launch`` to
the runtime's READY. Prints p50/p90/max in milliseconds.
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
from wuzhao.sandbox import images
from wuzhao.sandbox.api import LayerMount, SandboxSpec
from wuzhao.sandbox.zygote_launcher import ZygoteLauncher
from wuzhao.worker.channel import RuntimeChannel

PLAIN = "def handler(event, context):\n    return 1\n"
IMPORTS = "import mod_a, mod_b\n\n\ndef handler(event, context):\n    return mod_a.V + mod_b.V\n"
INIT = {"handler": "main.handler", "function_name": "b", "function_version": "1", "memory_limit_in_mb": 128}


def tree(root: Path, files: dict[str, str]) -> tuple[Path, Path]:
    """A directory holding ``files`` and its image."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root, images.build(root, root.with_suffix(".erofs"))


async def start_one(
    launcher: ZygoteLauncher, spec: SandboxSpec, i: int, alive: list[tuple[Any, RuntimeChannel]]
) -> float:
    """launch -> READY in ms of one new instance, added to ``alive``."""
    spec = SandboxSpec(**{**vars(spec), "instance_id": f"bench-{uuid.uuid4().hex[:12]}", "uid": 64000 + i})
    t0 = time.perf_counter()
    process = await launcher.launch(spec)
    channel = await RuntimeChannel.connect(process.channel, max_body=1 << 20)
    answer = channel.expect()
    channel.send(protocol.INIT, {**INIT, "layers": [layer.name for layer in spec.layers]})
    frame = await asyncio.wait_for(answer, 10)
    elapsed = (time.perf_counter() - t0) * 1000
    assert frame.kind == protocol.READY, frame
    alive.append((process, channel))
    return elapsed


def line(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"{name:<42} p50 {statistics.median(values):6.2f}  p90 {p90:6.2f}  max {ordered[-1]:6.2f}"


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="wuzhao-bench-") as tmp:
        plain_dir, plain_image = tree(Path(tmp, "plain"), {"main.py": PLAIN})
        imports_dir, imports_image = tree(Path(tmp, "imports"), {"main.py": IMPORTS})
        layers = tuple(
            LayerMount(name, str(directory), str(image))
            for name in ("a", "b")
            for directory, image in [tree(Path(tmp, f"layer-{name}"), {f"python/mod_{name}.py": "V = 1\n"})]
        )
        base = SandboxSpec(
            instance_id="x",
            code_dir=str(plain_dir),
            code_image=str(plain_image),
            uid=1,
            memory_mb=128,
            cpu_shares=74,
        )
        kinds = {
            "no layers": base,
            "2 layers": SandboxSpec(**{**vars(base), "layers": layers}),
            "2 layers, both imported": SandboxSpec(
                **{
                    **vars(base),
                    "layers": layers,
                    "code_dir": str(imports_dir),
                    "code_image": str(imports_image),
                }
            ),
        }
        launcher = ZygoteLauncher(state_dir=Path(tmp, "state"), server_id=f"bench-{uuid.uuid4().hex[:6]}")
        await launcher.start()
        assert launcher.uses_images, "this host cannot mount images: the numbers would be the binds'"
        try:
            for round_ in ("warm-up", "measured"):
                alive: list[tuple[Any, RuntimeChannel]] = []
                results: dict[str, list[float]] = {kind: [] for kind in kinds}
                for i in range(runs):
                    for n, (kind, spec) in enumerate(kinds.items()):
                        results[kind].append(await start_one(launcher, spec, i * len(kinds) + n, alive))
                for process, channel in alive:
                    channel.close()
                    await process.destroy()
                await asyncio.sleep(1)  # let the kernel finish tearing the namespaces down
                if round_ == "measured":
                    for kind, values in results.items():
                        print(line(f"{kind}: launch -> READY", values))
        finally:
            await launcher.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    uvloop.run(main(parser.parse_args().runs))  # the server's loop
