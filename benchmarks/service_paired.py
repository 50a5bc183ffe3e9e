"""The service's overhead at one client, measured request block by request block so that the
machine's drift cancels.

    python -m benchmarks.service_paired --bundle runs/bundles/fabric02 --image tile.png [--cycles 300] [--block 4]

`service_load.py` compares bare and served in rounds of seconds; on a VM whose speed swings by
±15 % between such rounds, one run said 11 % overhead and the next 6 %. Here the three paths take
turns every few requests instead: the bare engine in this process (decode + inspect), `POST
/v1/inspect` on the real service under uvicorn, and the same request on `asgi_floor.py` (the
framework-free app: what loopback HTTP and a worker thread cost by themselves), all with one lean
http.client connection and the same ONNX Runtime settings. Each cycle runs one block of `--block`
requests per path, in a fresh random order (so no path always follows another). Drift slower than
a cycle (a few tenths of a second) hits all three alike.

The overhead is the ratio of mean latencies (at one client, the inverse of the throughput ratio)
minus one, with a 95 % bootstrap interval over cycles; "warm" leaves out each block's first
request, which pays for caches the other paths' work has just evicted.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.common import emit
from benchmarks.service_load import (
    lean_poster,
    prepare_workdir,
    start_floor,
    start_service,
    wait_http,
)
from fabricad.data.images import decode_image
from fabricad.inference.engine import InferenceEngine
from fabricad.inference.ort_session import SPINNING
from fabricad.service.settings import ServiceSettings

PATHS = ("bare engine", "service", "floor")


def measure(calls: dict, cycles: int, block: int, seed: int) -> dict[str, np.ndarray]:
    """Latencies in seconds, shaped (cycles, block) per path."""
    rng = random.Random(seed)
    times = {name: np.zeros((cycles, block)) for name in calls}
    names = list(calls)
    for cycle in range(cycles):
        rng.shuffle(names)
        for name in names:
            call = calls[name]
            for i in range(block):
                started = time.perf_counter()
                call()
                times[name][cycle, i] = time.perf_counter() - started
        if (cycle + 1) % 50 == 0:
            print(f"cycle {cycle + 1}/{cycles}", {n: round(1000 * t[: cycle + 1].mean(), 2) for n, t in times.items()}, flush=True)
    return times


def overhead(path: np.ndarray, bare: np.ndarray, warm: bool, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean-latency ratio − 1 in percent, and its 95 % bootstrap interval over cycles."""
    start = 1 if warm and path.shape[1] > 1 else 0
    a, b = path[:, start:].mean(1), bare[:, start:].mean(1)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(a), size=(resamples, len(a)))
    boot = a[picks].mean(1) / b[picks].mean(1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return 100 * (a.mean() / b.mean() - 1), 100 * (low - 1), 100 * (high - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--block", type=int, default=4, help="requests per path per cycle")
    parser.add_argument("--spinning", choices=SPINNING, default=ServiceSettings.model_fields["ort_spinning"].default,
                        help="ONNX Runtime's thread waiting, the same for all three paths (default: the service's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    png = args.image.read_bytes()
    work, models = prepare_workdir(args.bundle, png)
    engine = InferenceEngine.load(models / "bench", spinning=args.spinning)
    server, port = start_service(models, work, args.spinning)
    floor, floor_port = start_floor(models, args.spinning)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 120, server)
        wait_http(f"http://127.0.0.1:{floor_port}/readyz", 120, floor)
        calls = {"bare engine": lambda: engine.inspect(decode_image(png)),
                 "service": lean_poster(port, png), "floor": lean_poster(floor_port, png)}
        measure(calls, 5, args.block, args.seed + 1)  # warm-up: connections, first runs
        began = time.perf_counter()
        times = measure(calls, args.cycles, args.block, args.seed)
        elapsed = time.perf_counter() - began
    finally:
        for process in (server, floor):
            process.terminate()
            process.wait(20)

    bare = times["bare engine"]
    lines = [
        f"\n## Service overhead at one client, paired blocks ({date.today().isoformat()}, {platform.machine()}, "
        f"{os.cpu_count()} CPU threads)\n",
        f"Command: `python -m benchmarks.service_paired --bundle {args.bundle} --image {args.image} --cycles {args.cycles} "
        f"--block {args.block} --spinning {args.spinning} --seed {args.seed}` ({elapsed:.0f} s; "
        f"{args.cycles * args.block} requests per path).\n",
        "| path | mean ms | p50 ms | p99 ms | overhead vs bare, all requests (95 % CI) | warm: first of each block left out (95 % CI) |",
        "|---|---|---|---|---|---|",
    ]
    for name in PATHS:
        t = 1000 * times[name]
        cells = []
        for warm in (False, True):
            if name == "bare engine":
                cells.append("—")
            else:
                mid, low, high = overhead(times[name], bare, warm)
                cells.append(f"{mid:+.1f} % ({low:+.1f} to {high:+.1f})")
        lines.append(f"| {name} | {t.mean():.1f} | {np.percentile(t, 50):.1f} | {np.percentile(t, 99):.1f} | {cells[0]} | {cells[1]} |")
    emit("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
