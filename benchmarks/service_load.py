"""Service overhead and camera throughput, side by side in one run.

    python -m benchmarks.service_load --bundle runs/bundles/fabric02 --image tile.png [--seconds 10]

1. The bare engine (decode + inspect in-process) vs `POST /v1/inspect` on a real uvicorn server
   on loopback, with 1, 4 and 16 concurrent clients: throughput, p50 and p99 latency; then one
   client in alternating short rounds (bare, httpx client, lean http.client client, and the lean
   client against `asgi_floor.py`, a framework-free ASGI app on the same engine: what loopback
   HTTP and a worker thread cost on this machine before the service adds anything). Engine,
   floor and service use the same ONNX Runtime thread setting (--spinning, default the service's).
2. Four simulated cameras (the same image folder) at 30 fps each: sustained inferred fps per
   camera, dropped frames, end-to-end latency (capture to result).
Prints a Markdown table; --write appends it to a file.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import httpx
import numpy as np

from benchmarks.common import emit, percentile, run_clients
from fabricad.data.images import decode_image
from fabricad.inference.engine import InferenceEngine
from fabricad.inference.ort_session import SPINNING
from fabricad.service.settings import ServiceSettings

KEY = "bench-admin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def lean_poster(port: int, png: bytes):
    """A one-connection http.client caller (as a camera PC's C++ or Go client would be); a fresh
    one per round, since the server closes a connection idle for 5 s."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post() -> None:
        conn.request("POST", "/v1/inspect", body=png, headers={"content-type": "image/png"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"port {port} /v1/inspect answered {response.status}")

    return post


def prepare_workdir(bundle: Path, png: bytes, frames: int = 8) -> tuple[Path, Path]:
    """A scratch folder with the bundle as `models/bench` and a media folder `frames` of the image."""
    work = Path(tempfile.mkdtemp())
    models = work / "models"
    shutil.copytree(bundle, models / "bench")
    media = work / "media" / "frames"
    media.mkdir(parents=True)
    for i in range(frames):
        (media / f"{i}.png").write_bytes(png)
    return work, models


def start_service(models: Path, work: Path, spinning: str | None = None, flags: tuple[str, ...] = (),
                  name: str = "service", env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    """The service under uvicorn on a free loopback port, its store under `work/name`; the
    admin key is `KEY`. `spinning` None leaves ONNX Runtime's setting at the service's default;
    `env` adds settings (e.g. a remote engine)."""
    port = free_port()
    settings = {**os.environ, "FABRICAD_MODELS_DIR": str(models), "FABRICAD_DATABASE_URL": f"sqlite:///{work / name}.db",
           "FABRICAD_IMAGE_STORE": str(work / name / "img"), "FABRICAD_MEDIA_DIR": str(work / "media"),
           "FABRICAD_API_KEYS": f'{{"{KEY}": "admin"}}', **(env or {})}
    if spinning:
        settings["FABRICAD_ORT_SPINNING"] = spinning
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "fabricad.service.app:create_app", "--factory", "--port", str(port),
                                "--log-level", "warning", *flags], env=settings)
    return process, port


def start_floor(models: Path, spinning: str) -> tuple[subprocess.Popen, int]:
    """`asgi_floor.py` (the framework-free app) on the bundle `models/bench`, on a free port."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.asgi_floor", "--bundle", str(models / "bench"),
                                "--port", str(port), "--spinning", spinning], cwd=Path(__file__).resolve().parents[1])
    return process, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=8, help="alternating bare/served rounds at one client")
    parser.add_argument("--spinning", choices=SPINNING, default=ServiceSettings.model_fields["ort_spinning"].default,
                        help="ONNX Runtime's thread waiting, the same for the bare engine and the service "
                             "(default: the service's)")
    parser.add_argument("--http-stack", choices=("auto", "plain"), default="auto",
                        help="the service's uvicorn event loop and HTTP parser: auto = uvloop and httptools "
                             "(what fabricad installs), plain = asyncio and h11 (uvicorn without its "
                             "[standard] extra); the floor always runs auto")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    png = args.image.read_bytes()
    work, models = prepare_workdir(args.bundle, png)

    engine = InferenceEngine.load(models / "bench", spinning=args.spinning)
    rows = []
    for clients in (1, 4, 16):
        rate, lat = run_clients(lambda: engine.inspect(decode_image(png)), clients, args.seconds)
        rows.append(("bare engine", clients, rate, percentile(lat, 50), percentile(lat, 99)))
        print(rows[-1], flush=True)

    stack = ("--loop", "asyncio", "--http", "h11") if args.http_stack == "plain" else ()
    server, port = start_service(models, work, args.spinning, stack)
    floor, floor_port = start_floor(models, args.spinning)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/readyz", 120, server)
        wait_http(f"http://127.0.0.1:{floor_port}/readyz", 120, floor)
        local = threading.local()

        def post():
            if not hasattr(local, "client"):
                local.client = httpx.Client(timeout=60)
            response = local.client.post(f"{url}/v1/inspect", content=png, headers={"content-type": "image/png"})
            response.raise_for_status()

        for clients in (1, 4, 16):
            rate, lat = run_clients(post, clients, args.seconds)
            rows.append(("POST /v1/inspect", clients, rate, percentile(lat, 50), percentile(lat, 99)))
            print(rows[-1], flush=True)

        # This VM's speed drifts by a third between minutes: compare bare and served at one client
        # in alternating short rounds, so each ratio is taken under the same conditions.
        # httpx spends about a millisecond of CPU per request, on the same two cores as the server;
        # a lean client (http.client, as a camera PC's C++ or Go client would be) shows what the
        # service itself costs. Both are measured.
        ratios, lean_ratios, floor_ratios = [], [], []
        for _ in range(args.rounds):
            bare_rate, _ = run_clients(lambda: engine.inspect(decode_image(png)), 1, args.seconds / 2)
            served_rate, _ = run_clients(post, 1, args.seconds / 2)
            lean_rate, _ = run_clients(lean_poster(port, png), 1, args.seconds / 2)
            floor_rate, _ = run_clients(lean_poster(floor_port, png), 1, args.seconds / 2)
            ratios.append(served_rate / bare_rate)
            lean_ratios.append(lean_rate / bare_rate)
            floor_ratios.append(floor_rate / bare_rate)
            print("round", round(bare_rate, 1), round(served_rate, 1), round(lean_rate, 1), round(floor_rate, 1), flush=True)

        admin = {"X-API-Key": KEY}
        for i in range(4):
            httpx.post(f"{url}/v1/cameras", json={"id": f"cam{i}", "source": "media:frames", "fps": 30, "queue_size": 4},
                       headers=admin).raise_for_status()
        time.sleep(3)  # warm up
        before = {c["id"]: c for c in httpx.get(f"{url}/v1/cameras").json()}
        latencies: list[float] = []
        began = time.perf_counter()
        while time.perf_counter() - began < args.seconds * 2:
            for c in httpx.get(f"{url}/v1/cameras").json():
                if c["last_result"]:
                    latencies.append(c["last_result"]["latency_end_to_end_ms"] / 1000)
            time.sleep(0.25)
        elapsed = time.perf_counter() - began
        after = {c["id"]: c for c in httpx.get(f"{url}/v1/cameras").json()}
        camera_rows = []
        for cid in sorted(after):
            processed = after[cid]["frames_processed"] - before[cid]["frames_processed"]
            captured = after[cid]["frames_captured"] - before[cid]["frames_captured"]
            dropped = after[cid]["frames_dropped"] - before[cid]["frames_dropped"]
            camera_rows.append((cid, captured / elapsed, processed / elapsed, dropped))
    finally:
        for process in (server, floor):
            process.terminate()
            process.wait(20)

    bare = {c: r for name, c, r, *_ in rows if name == "bare engine"}
    lines = [
        f"\n## Service load ({date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} CPU threads)\n",
        f"Command: `python -m benchmarks.service_load --bundle {args.bundle} --image {args.image} "
        f"--spinning {args.spinning} --http-stack {args.http_stack}` ({args.seconds:g} s per point; the image is a {decode_image(png).shape[1]}x{decode_image(png).shape[0]} PNG).\n",
        "| path | clients | images/s | p50 ms | p99 ms | throughput vs bare engine |",
        "|---|---|---|---|---|---|",
    ]
    for name, clients, rate, p50, p99 in rows:
        lines.append(f"| {name} | {clients} | {rate:.1f} | {p50:.1f} | {p99:.1f} | {rate / bare[clients]:.2f} |")
    lines += ["", f"One client, {args.rounds} alternating rounds of {args.seconds / 2:g} s (bare, served with httpx, "
              "served with http.client, the framework-free floor with http.client):", ""]
    for name, values in (("service, httpx client", ratios), ("service, http.client client", lean_ratios),
                         ("floor (asgi_floor.py), http.client client", floor_ratios)):
        lines.append(f"- {name}: served/bare throughput median {np.median(values):.3f} (min {min(values):.3f}, "
                     f"max {max(values):.3f}); latency overhead {100 * (1 / np.median(values) - 1):.1f} %")
    lines += ["", "| camera (30 fps requested) | captured fps | inferred fps | dropped frames |", "|---|---|---|---|"]
    for cid, cap, proc, dropped in camera_rows:
        lines.append(f"| {cid} | {cap:.1f} | {proc:.1f} | {dropped} |")
    lines.append(f"\nEnd-to-end camera latency (capture → result), sampled: p50 {percentile(latencies, 50):.0f} ms, "
                 f"p99 {percentile(latencies, 99):.0f} ms.")
    emit("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
