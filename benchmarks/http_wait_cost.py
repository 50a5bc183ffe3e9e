"""What loopback HTTP and a worker thread cost on this machine, as a function of how long the work takes.

    python benchmarks/http_wait_cost.py --image runs/tile02.png [--ms 0 40] [--rounds 5]

`asgi_floor.py` — no framework, the body read, decoded and "inspected" in one worker thread — is
run with its engine replaced by work of a fixed length: none, a 40 ms busy loop on one core, or a
40 ms sleep. A one-connection http.client caller alternates with the same work done in-process
(decode, then the wait). The difference is the irreducible cost of answering over HTTP from a
worker thread on this machine, before any service or inference engine. On a virtual machine it
grows with the wait: threads that have been idle for tens of milliseconds take longer to wake.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from service_load import free_port, lean_poster, wait_http  # noqa: E402

from fabricad.data.images import decode_image  # noqa: E402


def wait(kind: str, ms: float) -> None:
    if kind == "busy":
        until = time.perf_counter() + ms / 1000
        while time.perf_counter() < until:
            pass
    elif ms:
        time.sleep(ms / 1000)


class _Verdict:
    score = 0.0

    def as_dict(self) -> dict:
        return {"verdict": "OK"}


class WaitingEngine:
    """Stands in for an inference engine: takes `ms` of busy or idle time, answers OK."""

    def __init__(self, kind: str, ms: float):
        self.kind, self.ms = kind, ms

    def inspect(self, image) -> _Verdict:
        wait(self.kind, self.ms)
        return _Verdict()


def serve(kind: str, ms: float, port: int) -> None:
    import uvicorn
    from asgi_floor import make_app

    uvicorn.run(make_app(WaitingEngine(kind, ms)), host="127.0.0.1", port=port, log_level="warning", lifespan="off")


def measure(png: bytes, kind: str, ms: float, rounds: int, requests: int) -> tuple[float, float]:
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(ms), str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 60, server)

        def local() -> None:
            decode_image(png)
            wait(kind, ms)

        times: dict[str, list[float]] = {"local": [], "http": []}
        for _ in range(rounds):
            # A fresh connection per round (`lean_poster`): the server closes one idle for 5 s.
            for name, call in (("local", local), ("http", lean_poster(port, png))):
                started = time.perf_counter()
                for _ in range(requests):
                    call()
                times[name].append((time.perf_counter() - started) / requests * 1000)
        return statistics.median(times["local"]), statistics.median(times["http"])
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--ms", type=float, nargs="+", default=[0, 40])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=40, help="requests per round and path (10x with no wait)")
    args = parser.parse_args()
    png = args.image.read_bytes()
    print(f"Command: `python benchmarks/http_wait_cost.py --image {args.image} --ms {' '.join(f'{m:g}' for m in args.ms)} "
          f"--rounds {args.rounds} --requests {args.requests}`\n")
    print("| work per request | in-process, ms | over HTTP from a worker thread, ms | HTTP adds, ms |")
    print("|---|---|---|---|")
    cases = [("busy", ms) for ms in args.ms] + [("sleep", ms) for ms in args.ms if ms]
    for kind, ms in cases:
        requests = args.requests if ms else 10 * args.requests  # short requests: more of them per round
        local, http = measure(png, kind, ms, args.rounds, requests)
        label = "decode only" if not ms else f"decode + {ms:g} ms {'busy loop' if kind == 'busy' else 'sleep'}"
        print(f"| {label} | {local:.2f} | {http:.2f} | {http - local:.2f} |", flush=True)


if __name__ == "__main__":
    main()
