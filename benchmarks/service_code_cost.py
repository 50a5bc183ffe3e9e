"""What the service's own code costs per `/v1/inspect`, without the engine, the network or the noise.

    python benchmarks/service_code_cost.py --bundle runs/bundles/fabric02 --image runs/tile02.png [--requests 2000]

The one-client overhead of `service_load.py` is a small difference between two large, noisy
numbers (an inference of 15-50 ms that drifts by ±10 % from round to round on a shared VM). This
measures the difference directly: the real service app (routing, parameters, API-key check,
upload limits, the PIL header check, metrics, the answer's JSON) and `asgi_floor.py`'s
framework-free app are called in-process through ASGI, with the engine replaced by one that
returns a precomputed result of the real bundle and the image decode left out of both (the same
`cv2.imdecode` in each). Alternating rounds; the medians per request and their difference, which
divided by an engine's inference time is the share the service adds on any machine.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import asgi_floor  # noqa: E402
from service_load import prepare_workdir  # noqa: E402

import fabricad.service.routers.inspect as inspect_router  # noqa: E402
from fabricad.data.images import decode_image  # noqa: E402
from fabricad.inference.engine import InferenceEngine  # noqa: E402
from fabricad.service.app import create_app  # noqa: E402
from fabricad.service.settings import ServiceSettings  # noqa: E402


class CannedEngine:
    """Answers every image with one real result of the bundle: the engine's time drops out."""

    def __init__(self, result):
        self.result = result

    def inspect(self, image):
        return self.result


def request(app, body: bytes) -> asyncio.Future:
    """One POST /v1/inspect with a raw image body, through the app's ASGI interface."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/inspect", "raw_path": b"/v1/inspect", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"image/png"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]  # as uvicorn delivers them
    status = []

    async def receive():
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    async def run():
        await app(scope, receive, send)
        if status != [200]:
            raise RuntimeError(f"/v1/inspect answered {status}")

    return run()


async def measure(bundle: Path, body: bytes, requests: int, rounds: int, profile: bool = False) -> dict[str, list[float]]:
    work, models = prepare_workdir(bundle, body, frames=0)
    try:
        settings = ServiceSettings(models_dir=models, database_url=f"sqlite:///{work}/log.db",
                                   image_store=work / "images", media_dir=work / "media")
        image = decode_image(body)
        engine = CannedEngine(InferenceEngine.load(models / "bench").inspect(image))
        # The same decoded image for both apps, instead of decoding the same bytes again.
        inspect_router.decode_upload = lambda *args, **kwargs: image
        asgi_floor.decode_image = lambda *args, **kwargs: image
        service = create_app(settings)
        floor = asgi_floor.make_app(engine)
        times: dict[str, list[float]] = {"service": [], "floor": []}
        async with service.router.lifespan_context(service):
            entry, _ = service.state.fabricad.registry.engine(None)
            service.state.fabricad.registry.engine = lambda name=None: (entry, engine)
            for _ in range(rounds + 1):  # the first round warms up and is not counted
                for name, app in (("service", service), ("floor", floor)):
                    started = time.perf_counter()
                    for _ in range(requests):
                        await request(app, body)
                    times[name].append((time.perf_counter() - started) / requests * 1e6)
            if profile:  # where the service's time goes; the worker thread's share shows as the await
                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(requests):
                    await request(service, body)
                profiler.disable()
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        return {name: values[1:] for name, values in times.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=2000, help="requests per app and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="then print a cProfile of the service's requests")
    args = parser.parse_args()
    times = asyncio.run(measure(args.bundle, args.image.read_bytes(), args.requests, args.rounds, args.profile))
    service, floor = statistics.median(times["service"]), statistics.median(times["floor"])
    print(f"Command: `python benchmarks/service_code_cost.py --bundle {args.bundle} --image {args.image} "
          f"--requests {args.requests} --rounds {args.rounds}`\n")
    print("| app (in-process ASGI, canned engine, no decode) | µs per request, median of rounds | rounds |")
    print("|---|---|---|")
    for name, value in (("service: POST /v1/inspect", service), ("floor: asgi_floor.py", floor)):
        rounds = ", ".join(f"{v:.0f}" for v in times[name.split(":")[0]])
        print(f"| {name} | {value:.0f} | {rounds} |")
    print(f"\nThe service's code adds {service - floor:.0f} µs per request over a framework-free ASGI app.")


if __name__ == "__main__":
    main()
