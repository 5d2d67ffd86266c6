"""The whole benchmark suite: every figure next to its baseline from the same run.

    python bench/suite.py [--quick]

Prints a Markdown table (the one in docs/performance.md). Figures:
warm invoke latency and cold start (see invoke_latency.py), throughput with 16
connections (wrk when installed, else a Python client for both sides), a burst
of 100 concurrent calls to a function with no instance, the memory of an idle
instance (USS) next to a fresh `python -I`, a 5 MB event next to an
in-process copy and parse of the same bytes, the cold start of a handler
importing numpy from a preloaded runtime layer next to the same layer without
preloading (see preload_start.py), and durable async enqueues per second from
64 concurrent producers next to plain SQLite committing each insert with the
same durability (see enqueue_rate.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import Http, deploy, free_port, summary, wait_healthy, wuzhao_server
from enqueue_rate import enqueue_pair
from invoke_latency import EVENT, cold_baseline, cold_wuzhao, warm_baseline, warm_wuzhao
from preload_start import cold_pair, numpy_layer

BASELINE_APP = Path(__file__).parent / "baseline_app.py"


def throughput(port: int, path: str, key: str | None, seconds: int = 5) -> float:
    """Requests per second with 16 keep-alive connections."""
    wrk = shutil.which("wrk")
    if wrk:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(
                'wrk.method = "POST"\nwrk.body = \'{"name": "bench"}\'\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                + (f'wrk.headers["Authorization"] = "Bearer {key}"\n' if key else "")
            )
        out = subprocess.run(
            [wrk, "-t1", "-c16", f"-d{seconds}s", "-s", script.name, f"http://127.0.0.1:{port}{path}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        os.unlink(script.name)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if errors:
            raise RuntimeError(f"{errors.group(1)} failed responses during the throughput run")
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return asyncio.run(_python_load(port, path, key, seconds))


async def _python_load(port: int, path: str, key: str | None, seconds: int) -> float:
    headers = f"Content-Type: application/json\r\nContent-Length: {len(EVENT)}\r\n"
    if key:
        headers += f"Authorization: Bearer {key}\r\n"
    request = f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + EVENT
    done = 0
    stop = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            done += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(16)))
    return done / (time.perf_counter() - started)


def throughput_pair(seconds: int) -> tuple[float, float]:
    with wuzhao_server() as (port, key):
        deploy(Http(port, key), "hello")
        Http(port, key).timed("POST", "/v1/functions/hello/invoke", EVENT)
        ours = throughput(port, "/v1/functions/hello/invoke", key, seconds)
    port = free_port()
    process = subprocess.Popen([sys.executable, str(BASELINE_APP), str(port)])
    try:
        wait_healthy(port, process)
        base = throughput(port, "/", None, seconds)
    finally:
        process.terminate()
        process.wait(30)
    return ours, base


def burst(calls: int = 100) -> float:
    """Seconds until all of ``calls`` concurrent calls to a function with no instance are answered."""
    with wuzhao_server() as (port, key):
        deploy(Http(port, key), "bursty")

        async def one() -> int:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"POST /v1/functions/bursty/invoke HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Length: {len(EVENT)}\r\nConnection: close\r\n\r\n".encode()
                + EVENT
            )
            status = int((await reader.readline()).split()[1])
            await reader.read()
            writer.close()
            return status

        async def all_calls() -> list[int]:
            return await asyncio.gather(*(one() for _ in range(calls)))

        started = time.perf_counter()
        statuses = asyncio.run(all_calls())
        elapsed = time.perf_counter() - started
        if statuses.count(200) != calls:
            raise RuntimeError(f"burst: {calls - statuses.count(200)} calls failed: {sorted(set(statuses))}")
        return elapsed


def uss_kib(pid: int) -> int:
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def idle_memory() -> tuple[float, float]:
    """USS of an idle instance after one call, next to a fresh `python -I` (MiB)."""
    with wuzhao_server(WUZHAO_UID_BASE="330000", WUZHAO_UID_COUNT="100") as (port, key):
        http = Http(port, key)
        deploy(http, "idle")
        http.timed("POST", "/v1/functions/idle/invoke", EVENT)
        time.sleep(0.3)
        pids = [
            int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _uid(int(p.name)) == 330000
        ]
        ours = sum(uss_kib(pid) for pid in pids) / 1024
    python = subprocess.Popen(
        [sys.executable, "-I", "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    time.sleep(0.3)
    base = uss_kib(python.pid) / 1024
    python.communicate(b"")
    return ours, base


def _uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def large_event(size: int = 5 * 1024 * 1024, runs: int = 20) -> tuple[float, float]:
    """p50 ms of a warm call carrying a ~5 MB event, next to copying and parsing it in-process."""
    event = json.dumps({"blob": "x" * size}).encode()
    source = "def handler(event, context):\n    return len(event['blob'])\n"
    with wuzhao_server() as (port, key):
        http = Http(port, key)
        deploy(http, "big", source)
        http.timed("POST", "/v1/functions/big/invoke", event)
        ours = summary([http.timed("POST", "/v1/functions/big/invoke", event) for _ in range(runs)])["p50"]
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        len(json.loads(bytes(event))["blob"])
        samples.append((time.perf_counter() - started) * 1000)
    return ours, summary(samples)["p50"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    args = parser.parse_args()
    n_warm, n_cold, seconds = (300, 10, 2) if args.quick else (3000, 50, 5)

    warm, warm_base = summary(warm_wuzhao(n_warm)), summary(warm_baseline(n_warm))
    cold, cold_base = summary(cold_wuzhao(n_cold)), summary(cold_baseline(n_cold))
    rps, rps_base = throughput_pair(seconds)
    burst_s = burst()
    uss, uss_base = idle_memory()
    big, big_base = large_event()
    with tempfile.TemporaryDirectory(prefix="wuzhao-bench-") as tmp:
        numpy_cold, numpy_base = (summary(s) for s in cold_pair(numpy_layer(Path(tmp, "sci")), n_cold))
    enqueues, enqueues_base, _ = enqueue_pair(64, seconds)
    tool = "wrk" if shutil.which("wrk") else "Python client"
    rows = [
        ("warm invoke, 1 keep-alive connection, p50 / p99",
         f"{warm['p50']:.3f} / {warm['p99']:.3f} ms",
         f"{warm_base['p50']:.3f} / {warm_base['p99']:.3f} ms (raw uvicorn)",
         f"{warm['p50'] / warm_base['p50']:.2f}x / {warm['p99'] / warm_base['p99']:.2f}x"),
        (f"throughput, 16 connections ({tool})", f"{rps:,.0f} req/s", f"{rps_base:,.0f} req/s (raw uvicorn)",
         f"{rps / rps_base:.0%} of baseline"),
        ("cold start, new sandbox, end to end over HTTP, p50 / p99",
         f"{cold['p50']:.2f} / {cold['p99']:.2f} ms",
         f"{cold_base['p50']:.2f} / {cold_base['p99']:.2f} ms (python -I)",
         f"{cold['p50'] / cold_base['p50']:.2f}x / {cold['p99'] / cold_base['p99']:.2f}x"),
        ("burst: 100 concurrent calls, no instance", f"{burst_s * 1000:.0f} ms for all", "-", "-"),
        ("idle instance memory (USS, after one call)", f"{uss:.2f} MiB", f"{uss_base:.2f} MiB (python -I)",
         f"{uss / uss_base:.2f}x"),
        ("5 MB event, warm call, p50", f"{big:.2f} ms", f"{big_base:.2f} ms (in-process copy + parse)",
         f"{big / big_base:.2f}x"),
        ("cold start, handler importing numpy from a preloaded runtime layer, p50 / p99",
         f"{numpy_cold['p50']:.2f} / {numpy_cold['p99']:.2f} ms",
         f"{numpy_base['p50']:.2f} / {numpy_base['p99']:.2f} ms (same layer, not preloaded)",
         f"{numpy_cold['p50'] / numpy_base['p50']:.2f}x / {numpy_cold['p99'] / numpy_base['p99']:.2f}x"),
        ("durable async enqueues, 64 concurrent producers", f"{enqueues:,.0f} calls/s",
         f"{enqueues_base:,.0f} calls/s (SQLite insert + commit per call, WAL, synchronous=FULL)",
         f"{enqueues / enqueues_base:.2f}x"),
    ]  # fmt: skip
    print("| figure | wuzhao | baseline (same run) | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
