"""What the benchmarks share: where a result goes, what machine it came from, and how load and
latency are measured."""

from __future__ import annotations

import os
import platform
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np


def machine(threads: int | None = None) -> str:
    """The date and machine line every result carries (BENCHMARKS.md asks for both)."""
    processor = platform.processor() or platform.machine()
    return f"{date.today().isoformat()}, {processor}, {threads or os.cpu_count()} CPU threads"


def emit(text: str, write: Path | None) -> None:
    """Print the Markdown result; append it to `write` (e.g. BENCHMARKS.md) when given."""
    print(text)
    if write:
        with write.open("a") as f:
            f.write(text + "\n")


def run_clients(call, clients: int, seconds: float) -> tuple[float, list[float]]:
    """`clients` threads calling `call` back to back for `seconds`: (calls per second, each
    call's latency in seconds)."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker():
        local = []
        while time.perf_counter() < stop:
            started = time.perf_counter()
            call()
            local.append(time.perf_counter() - started)
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) / (time.perf_counter() - began), latencies


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile of latencies in seconds, in milliseconds."""
    return 1000 * float(np.percentile(values, q)) if values else float("nan")
