"""Scale-out on one machine: the service's model in-process vs on Ray Serve with 1 and 2 replicas,
side by side in one run, under N simulated cameras and under concurrent REST clients.

    python -m benchmarks.scaleout --bundle runs/bundles/fabric02 --image tile.png [--cameras 4] [--seconds 10]

For each engine: a real service (uvicorn) on loopback; for Ray, `fabricad engine ray` beside it
and the service's `inference_workers` set to the replica count. Cameras are media cameras asking
for 30 fps each (more than the machine can do: the figure is what it sustains); per-frame
end-to-end latency (capture → result) comes from every camera's WebSocket events. Prints a
Markdown table; --write appends it to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import httpx
import numpy as np

from benchmarks.common import emit, percentile, run_clients
from benchmarks.service_load import (
    KEY,
    free_port,
    prepare_workdir,
    start_service,
    wait_http,
)


def measure(url: str, cameras: int, seconds: float, png: bytes, clients: int) -> dict:
    from websockets.sync.client import connect

    admin = {"X-API-Key": KEY}
    latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def listen(camera_id: str) -> None:
        with connect(f"ws://{url.removeprefix('http://')}/v1/cameras/{camera_id}/events") as ws:
            while not stop.is_set():
                try:
                    event = json.loads(ws.recv(timeout=1))
                except TimeoutError:
                    continue
                with lock:
                    latencies.append(event["latency_end_to_end_ms"] / 1000)

    for i in range(cameras):
        httpx.post(f"{url}/v1/cameras", json={"id": f"cam{i}", "source": "media:frames", "fps": 30, "queue_size": 4},
                   headers=admin).raise_for_status()
    time.sleep(3)  # warm up
    listeners = [threading.Thread(target=listen, args=(f"cam{i}",), daemon=True) for i in range(cameras)]
    for t in listeners:
        t.start()
    before = sum(c["frames_processed"] for c in httpx.get(f"{url}/v1/cameras").json())
    began = time.perf_counter()
    time.sleep(seconds)
    processed = sum(c["frames_processed"] for c in httpx.get(f"{url}/v1/cameras").json()) - before
    camera_fps = processed / (time.perf_counter() - began)
    stop.set()
    with lock:
        camera_lat = list(latencies)
    for i in range(cameras):
        httpx.delete(f"{url}/v1/cameras/cam{i}", headers=admin)

    local = threading.local()

    def post():
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=60)
        local.client.post(f"{url}/v1/inspect", content=png, headers={"content-type": "image/png"}).raise_for_status()

    rate, rest_lat = run_clients(post, clients, seconds)
    return {"camera_fps": camera_fps, "camera_p50": percentile(camera_lat, 50), "camera_p99": percentile(camera_lat, 99),
            "rest_rate": rate, "rest_p50": percentile(rest_lat, 50), "rest_p99": percentile(rest_lat, 99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--replicas", type=int, nargs="*", default=[1, 2],
                        help="Ray Serve replica counts to measure (none: the in-process row alone)")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    png = args.image.read_bytes()
    work, models = prepare_workdir(args.bundle, png)

    results = {}
    rows = [("in-process ONNX Runtime", 0)] + [(f"Ray Serve, {n} replica{'s' if n > 1 else ''}", n) for n in args.replicas]
    for label, replicas in rows:
        engine = None
        remote = {"RAY_USAGE_STATS_ENABLED": "0"}
        if replicas:
            engine_port = free_port()
            engine = subprocess.Popen([sys.executable, "-m", "fabricad.cli", "engine", "ray", "--models", str(models),
                                       "--port", str(engine_port), "--replicas", str(replicas), "--threads", "1"],
                                      env={**os.environ, **remote}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_http(f"http://127.0.0.1:{engine_port}/bench/-/meta", 240, engine)
            except RuntimeError:
                engine.kill()
                raise
            remote.update(FABRICAD_ENGINE="ray", FABRICAD_ENGINE_URL=f"http://127.0.0.1:{engine_port}",
                       FABRICAD_INFERENCE_WORKERS=str(replicas))
        server, port = start_service(models, work, name=f"replicas{replicas}", env=remote)
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", 240, server)
            results[label] = measure(f"http://127.0.0.1:{port}", args.cameras, args.seconds, png, args.clients)
            print(label, results[label], flush=True)
        finally:
            server.terminate()
            server.wait(30)
            if engine is not None:
                engine.send_signal(signal.SIGINT)
                try:
                    engine.wait(60)
                except subprocess.TimeoutExpired:
                    engine.kill()

    base = results["in-process ONNX Runtime"]
    one = results.get("Ray Serve, 1 replica")
    h, w = __import__("cv2").imdecode(np.frombuffer(png, np.uint8), 1).shape[:2]
    lines = [
        f"\n## Scale-out: in-process vs Ray Serve ({date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} CPU threads)\n",
        f"Command: `python -m benchmarks.scaleout --bundle {args.bundle} --image {args.image} --cameras {args.cameras} "
        f"--clients {args.clients} --seconds {args.seconds:g}` ({w}x{h} frames; cameras ask for 30 fps each).\n",
        f"| engine | {args.cameras} cameras: inferred fps (total) | camera p50 / p99 ms | {args.clients} REST clients: images/s | "
        "REST p50 / p99 ms | throughput vs in-process | vs 1 replica |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        vs_one = f"{r['rest_rate'] / one['rest_rate']:.2f}" if one else "n/a"
        lines.append(f"| {label} | {r['camera_fps']:.1f} | {r['camera_p50']:.0f} / {r['camera_p99']:.0f} | {r['rest_rate']:.1f} | "
                     f"{r['rest_p50']:.0f} / {r['rest_p99']:.0f} | {r['rest_rate'] / base['rest_rate']:.2f} | "
                     f"{vs_one} |")
    emit("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
