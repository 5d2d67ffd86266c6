"""Warm-invoke latency and cold-start latency, each next to a baseline from the same run.

    python bench/invoke_latency.py [--warm 2000] [--cold 40]

Warm: one keep-alive connection, a trivial handler, p50/p99 over HTTP;
baseline: a raw uvicorn ASGI app calling the handler in-process (bench/baseline_app.py).
Cold: the first call to a freshly deployed function (a new sandboxed instance),
end to end over HTTP; baseline: a fresh `python -I` process importing the handler.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import HELLO, Http, deploy, free_port, summary, wait_healthy, wuzhao_server

EVENT = json.dumps({"name": "bench"}).encode()


def warm_wuzhao(n: int) -> list[float]:
    with wuzhao_server() as (port, key):
        http = Http(port, key)
        deploy(http, "hello")
        for _ in range(200):  # warm up: instance started, caches hot
            http.timed("POST", "/v1/functions/hello/invoke", EVENT)
        return [http.timed("POST", "/v1/functions/hello/invoke", EVENT) for _ in range(n)]


def warm_baseline(n: int) -> list[float]:
    port = free_port()
    app = Path(__file__).parent / "baseline_app.py"
    process = subprocess.Popen([sys.executable, str(app), str(port)])
    try:
        wait_healthy(port, process)
        http = Http(port)
        for _ in range(200):
            http.timed("POST", "/", EVENT)
        return [http.timed("POST", "/", EVENT) for _ in range(n)]
    finally:
        process.terminate()
        process.wait(30)


def cold_wuzhao(n: int) -> list[float]:
    samples = []
    with wuzhao_server() as (port, key):
        http = Http(port, key)
        for i in range(n):
            name = f"cold-{i}"
            deploy(http, name)
            samples.append(http.timed("POST", f"/v1/functions/{name}/invoke", EVENT))
            http.call("DELETE", f"/v1/functions/{name}")
    return samples


def cold_baseline(n: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "main.py").write_text(HELLO)
        # -I leaves the working directory off sys.path: put the code's folder there
        command = [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {tmp!r}); import main"]
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            subprocess.run(command, check=True)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def row(label: str, ours: dict[str, float], base: dict[str, float]) -> str:
    return (
        f"| {label} | {ours['p50']:.3f} / {ours['p99']:.3f} ms | {base['p50']:.3f} / {base['p99']:.3f} ms "
        f"| {ours['p50'] / base['p50']:.2f}x / {ours['p99'] / base['p99']:.2f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warm", type=int, default=2000, help="warm calls to time")
    parser.add_argument("--cold", type=int, default=40, help="cold starts to time")
    args = parser.parse_args()

    warm, warm_base = summary(warm_wuzhao(args.warm)), summary(warm_baseline(args.warm))
    cold, cold_base = summary(cold_wuzhao(args.cold)), summary(cold_baseline(args.cold))
    print("| figure | wuzhao p50 / p99 | baseline p50 / p99 | ratio |")
    print("|---|---|---|---|")
    print(row("warm invoke over HTTP (1 keep-alive connection) vs raw uvicorn in-process", warm, warm_base))
    print(
        row("cold start, new sandboxed instance, end to end vs `python -I -c 'import main'`", cold, cold_base)
    )


if __name__ == "__main__":
    main()
