"""The line rate a line-scan camera may run at on this machine, with drops counted.

    python -m benchmarks.line_scan --bundle BUNDLE --image fabric.png [--widths 4096 8192]
        [--rates 500 1000 2000 4000] [--seconds 10]

1. For each width and offered line rate: a producer thread delivers buffers of 16 lines at that
   rate (rows of `--image` tiled across the width, as a camera's buffers arrive), the camera
   path's own `LineAssembler` stacks them into frames of 256 lines, a queue of 4 frames that
   drops its oldest (the camera manager's) feeds one inference thread running the bundle's
   `InferenceEngine` (wide frames tiled as AITEX scans are): lines/s and Mpx/s inferred, frames
   dropped. The highest rate with no drop is the sustained one.
2. The GigE Vision link itself: the GenICam source receiving from Aravis's fake camera
   (`arv-fake-gv-camera-0.8`, 2048 px, its sensor's width) as fast as it sends: lines/s and
   buffers lost — what Aravis and the assembly cost before any inference.
Prints a Markdown table; --write appends it to a file.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import emit, machine
from fabricad.inference.engine import InferenceEngine
from fabricad.service.linescan import LineAssembler, LineScanSettings

BUFFER_LINES, FRAME_LINES = 16, 256


def run_rate(engine: InferenceEngine, texture: np.ndarray, width: int, rate: float, seconds: float) -> dict:
    rows = np.tile(texture, (1, -(-width // texture.shape[1]), 1))[:, :width]
    assembler = LineAssembler(LineScanSettings(lines_per_frame=FRAME_LINES, metres_per_line=0.00025))
    queue: deque = deque(maxlen=4)
    lock, ready, done = threading.Lock(), threading.Event(), threading.Event()
    counts = {"frames": 0, "dropped": 0, "inferred": 0}

    def produce() -> None:
        start, block = time.perf_counter(), 0
        while (now := time.perf_counter()) - start < seconds:
            due = start + block * BUFFER_LINES / rate
            if due > now:
                time.sleep(due - now)
            first = (block * BUFFER_LINES) % (len(rows) - BUFFER_LINES)
            for frame in assembler.push(block + 1, rows[first:first + BUFFER_LINES], time.time()):
                with lock:
                    counts["frames"] += 1
                    if len(queue) == queue.maxlen:
                        counts["dropped"] += 1
                    queue.append(frame.image)
                ready.set()
            block += 1
        done.set()

    def infer() -> None:
        while not (done.is_set() and not queue):
            ready.wait(0.1)
            with lock:
                image = queue.popleft() if queue else None
                if not queue:
                    ready.clear()
            if image is not None:
                engine.predict([image])
                counts["inferred"] += 1

    began = time.perf_counter()
    threads = [threading.Thread(target=produce), threading.Thread(target=infer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    lines = counts["inferred"] * FRAME_LINES / elapsed
    return {**counts, "lines_per_s": lines, "mpx_per_s": lines * width / 1e6}


def gige_link(seconds: float) -> dict | None:
    """Lines/s the GenICam source takes from the fake camera at 2048 px; None without Aravis."""
    fake = shutil.which("arv-fake-gv-camera-0.8")
    if fake is None:
        return None
    from fabricad.service.genicam import GenICamSettings, GenICamSource

    process = subprocess.Popen([fake, "-i", "127.0.0.1", "-s", "BENCH"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        settings = GenICamSettings(width=2048, height=BUFFER_LINES, line_scan=LineScanSettings(
            lines_per_frame=FRAME_LINES, metres_per_line=0.00025))
        source = GenICamSource("bench", "127.0.0.1", settings, fps=1000)
        try:
            source.read()  # started
            start, frames = time.perf_counter(), 0
            while time.perf_counter() - start < seconds:
                source.read()
                frames += 1
            elapsed = time.perf_counter() - start
            return {"lines_per_s": frames * FRAME_LINES / elapsed, "lost": source.health["frames_lost"],
                    "incomplete": source.health["buffers_incomplete"]}
        finally:
            source.close()
    finally:
        process.kill()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True, help="a defect-free fabric image (its rows are the lines)")
    parser.add_argument("--widths", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--rates", type=float, nargs="+", default=[500, 1000, 2000, 4000], help="lines/s offered")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    texture = cv2.cvtColor(cv2.imread(str(args.image), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    engine = InferenceEngine.load(args.bundle)
    engine.predict([np.tile(texture, (1, 4, 1))])  # warm up
    lines = [f"### Line-scan line rate ({machine()})", "",
             f"`python -m benchmarks.line_scan --bundle {args.bundle} --image {args.image} --widths "
             f"{' '.join(map(str, args.widths))} --rates {' '.join(f'{r:g}' for r in args.rates)} --seconds {args.seconds:g}`: "
             f"buffers of {BUFFER_LINES} lines, frames of {FRAME_LINES}, one inference thread, a 4-frame queue.", "",
             "| width px | offered lines/s | inferred lines/s | Mpx/s | frames | dropped |", "|---|---|---|---|---|---|"]
    sustained = {}
    for width in args.widths:
        for rate in args.rates:
            r = run_rate(engine, texture, width, rate, args.seconds)
            print(width, rate, r, flush=True)
            lines.append(f"| {width} | {rate:g} | {r['lines_per_s']:.0f} | {r['mpx_per_s']:.2f} | {r['frames']} | {r['dropped']} |")
            if r["dropped"] == 0:
                sustained[width] = max(sustained.get(width, 0), rate)
    lines.append("")
    lines += [f"- sustained at {w} px: {sustained[w]:g} lines/s ({sustained[w] * w / 1e6:.2f} Mpx/s) with no frame dropped"
              if w in sustained else f"- {w} px: every offered rate dropped frames" for w in args.widths]
    link = gige_link(min(args.seconds, 5))
    lines.append(f"- the GigE Vision link alone (fake camera, 2048 px, as fast as it sends): {link['lines_per_s']:.0f} lines/s "
                 f"({link['lines_per_s'] * 2048 / 1e6:.1f} Mpx/s), {link['lost']} buffers lost, {link['incomplete']} incomplete"
                 if link else "- the GigE Vision link: not measured (no arv-fake-gv-camera-0.8)")
    emit("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
