"""What uvicorn's [standard] extra (uvloop + httptools) saves per request, side by side in one run.

    python benchmarks/http_stack.py --bundle runs/bundles/fabric02 --image tile.png [--seconds 4] [--rounds 6]

Two service processes on loopback, the same bundle and settings, one with uvicorn's default stack
(uvloop and httptools, installed with fabricad) and one with `--loop asyncio --http h11` (what
uvicorn falls back to without the extra). A lean one-connection client alternates between them
in rounds: `GET /healthz` (the HTTP stack and FastAPI alone, no inference) and `POST
/v1/inspect`. Prints the mean latency per request of each; the difference is the stack's cost.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import emit, lean_poster, prepare_workdir, start_service, wait_http  # noqa: E402

STACKS = {"uvloop + httptools (default)": (), "asyncio + h11": ("--loop", "asyncio", "--http", "h11")}


def lean_getter(port: int, path: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get() -> None:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"port {port} {path} answered {response.status}")

    return get


def mean_ms(call, seconds: float) -> float:
    call()  # warm-up (and the connection)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        call()
        count += 1
    return 1000 * (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    png = args.image.read_bytes()
    work, models = prepare_workdir(args.bundle, png)
    servers, ports = {}, {}
    try:
        for i, (name, flags) in enumerate(STACKS.items()):
            servers[name], ports[name] = start_service(models, work, flags=flags, name=f"stack{i}")
        for name in STACKS:
            wait_http(f"http://127.0.0.1:{ports[name]}/readyz", 120, servers[name])
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name in STACKS:
                times.setdefault((name, "health"), []).append(mean_ms(lean_getter(ports[name], "/healthz"), args.seconds / 2))
                times.setdefault((name, "inspect"), []).append(mean_ms(lean_poster(ports[name], png), args.seconds))
            print({k: round(v[-1], 3) for k, v in times.items()}, flush=True)
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(20)

    rows = [f"| {name} | {np.median(times[(name, 'health')]):.2f} | {np.median(times[(name, 'inspect')]):.1f} |"
            for name in STACKS]
    default, plain = STACKS
    health = np.median(times[(plain, "health")]) - np.median(times[(default, "health")])
    emit("\n".join([
        f"Command: `python benchmarks/http_stack.py --bundle {args.bundle} --image {args.image} --seconds {args.seconds:g} "
        f"--rounds {args.rounds}` ({date.today()}, {platform.machine()}, {os.cpu_count()} CPU threads; medians of "
        f"{args.rounds} alternating rounds, one lean http.client connection):",
        "",
        "| uvicorn stack | GET /healthz, ms per request | POST /v1/inspect, ms per request |",
        "|---|---|---|",
        *rows,
        "",
        f"Without uvloop and httptools each request costs {health:.2f} ms more before any inference "
        f"({np.median(times[(plain, 'health')]) / np.median(times[(default, 'health')]):.2f}× the default's /healthz time).",
    ]), args.write)


if __name__ == "__main__":
    main()
