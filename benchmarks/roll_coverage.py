"""What tracking a roll's coverage costs per camera frame, on a real SQLite file.

    python benchmarks/roll_coverage.py [--frames 5000] [--write BENCHMARKS.md]

Every frame with fabric in view of a camera on a running roll extends that camera's covered
stretches (`RollTracker.frame_seen`); the coverage is written when a gap opens or closes and
every few seconds. Side by side in one run: frames that abut (the normal line), and a camera too
slow for the line, whose every frame opens a gap, with the coverage written at most once a
second and, as first written, at every change (each frame then rewrote the growing coverage). Also the roll's grade with its uninspected stretches at the end, as
`GET /v1/rolls/{id}` computes it, for each case.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fabricad.service.defect_log import DefectLog  # noqa: E402
from fabricad.service.rolls import RollSpec, RollTracker  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import emit  # noqa: E402

CASES = {  # name: (frame pitch along the roll, seconds between writes of a changed coverage)
    "frames abut (0.128 m frames every 0.128 m)": (0.128, RollTracker.SAVE_CHANGE_S),
    "a gap every frame (0.128 m frames every 0.2 m)": (0.2, RollTracker.SAVE_CHANGE_S),
    "a gap every frame, written at every change (the first version)": (0.2, 0.0),
}


def run_case(folder: Path, pitch_m: float, save_change_s: float, frames: int) -> dict[str, float]:
    tracker = RollTracker(DefectLog(f"sqlite:///{folder / 'rolls.db'}", folder / "images"))
    tracker.SAVE_CHANGE_S = save_change_s
    row = tracker.start(RollSpec(id="R", article="bench", width_mm=1800, speed_m_per_min=60, cameras=[{"camera_id": "cam"}]))
    began = time.perf_counter()
    for i in range(frames):
        tracker.frame_seen(row, "cam", (i * pitch_m, i * pitch_m + 0.128), (0.0, 1800.0))
    per_frame = (time.perf_counter() - began) / frames
    began = time.perf_counter()
    _, _, grade, (missed, _) = tracker.grade("R")
    return {"per_frame_us": per_frame * 1e6, "grade_ms": (time.perf_counter() - began) * 1e3, "stretches": len(missed),
            "uninspected_m": grade.uninspected_m}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    rows = []
    for name, (pitch, save_change_s) in CASES.items():
        with tempfile.TemporaryDirectory() as folder:
            result = run_case(Path(folder), pitch, save_change_s, args.frames)
        rows.append(f"| {name} | {result['per_frame_us']:.0f} | {result['stretches']} | {result['uninspected_m']:.1f} "
                    f"| {result['grade_ms']:.1f} |")
        print(name, result, flush=True)
    emit("\n".join([
        f"\n## Roll coverage: cost per camera frame ({date.today().isoformat()}, {platform.machine()}, "
        f"{os.cpu_count()} CPU threads)\n",
        f"Command: `python benchmarks/roll_coverage.py --frames {args.frames}` (one camera, {args.frames} frames, SQLite file).\n",
        "| case | µs per frame | uninspected stretches | uninspected m | grade with stretches, ms |",
        "|---|---|---|---|---|", *rows,
    ]), args.write)


if __name__ == "__main__":
    main()
