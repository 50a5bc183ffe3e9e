"""Persistence across frames, measured on a synthetic camera stream.

    python -m benchmarks.persistence [--fabrics plain twill] [--length-m 40] [--lint 0.3] [--write BENCHMARKS.md]

AITEX's scans are not consecutive frames, so the line benchmark cannot measure the service's
persistence rule (`fabricad.service.persistence`). Here, per synthetic fabric: the default model
is trained on good frames cut from inside strips of the same cloth (`training_frames`) and
exported; a roll `--size` px wide and `--length-m` long at 1 mm/px carries `--defects` planted
defects (`render_roll`: holes, stains, yarn faults); an area camera sees it in frames of
`--size` rows, the fabric advancing `(1 - --overlap)` of a frame between frames; each frame, on
its own, carries lint with probability `--lint`: a loose fibre lying on the cloth for that frame
only — what persistence is for. Every frame is inspected by the bundle at its calibrated
threshold and its regions are placed on the roll as the service places them; with
`persistence_frames` = k the camera's `Persistence` keeps a region only once k frames in a row
showed it.

Reported per k: alarms per 100 m on no planted defect (the kept regions merged on the roll as the
roll tracker merges them, so one false alarm seen in two frames counts once), how many of those
lie on lint, and the planted defects found (a kept region overlaps the defect's box).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import emit, machine
from fabricad.config import FabricadConfig
from fabricad.data.synthetic import (
    FABRICS,
    LINEAR_KINDS,
    PlacedDefect,
    render_roll,
)
from fabricad.export.onnx_export import export_checkpoint
from fabricad.inference.engine import InferenceEngine
from fabricad.rolls.geometry import CameraPlacement, RollBox, merge_all, region_on_roll
from fabricad.service.persistence import Persistence
from fabricad.training import train

KINDS = ("hole", "stain", "broken_yarn", "missing_yarn", "slub")
MERGE_GAP_MM = 10.0  # as the service's roll tracker
TOLERANCE_MM = 2.0  # a region this close to a planted defect's box found it (the line benchmark's)


def planted_defects(width: int, length: int, count: int, rng: np.random.Generator) -> list[PlacedDefect]:
    """`count` defects spread evenly along the roll (each in its own stretch, so no two touch)."""
    stretch = length // count
    defects = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        w, h = (12, int(rng.integers(30, 80))) if kind in LINEAR_KINDS else (int(rng.integers(8, 24)),) * 2
        x = int(rng.integers(0, width - w))
        y = i * stretch + int(rng.integers(h, stretch - 2 * h))
        defects.append(PlacedDefect(kind, x, y, w, h))
    return defects


def add_lint(frame: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A loose fibre on the frame: a curved dark or light thread 15-40 px long; returns its box."""
    h, w = frame.shape[:2]
    start = rng.uniform((8, 8), (w - 8, h - 8))
    heading, length = rng.uniform(0, 2 * np.pi), rng.uniform(15, 40)
    bend = rng.uniform(-0.08, 0.08)
    points = [start]
    for _ in range(int(length / 2)):
        heading += bend
        points.append(np.clip(points[-1] + 2 * np.array([np.cos(heading), np.sin(heading)]), 0, (w - 1, h - 1)))
    curve = np.round(points).astype(np.int32)
    colour = (40, 35, 30) if rng.random() < 0.5 else (235, 235, 225)
    cv2.polylines(frame, [curve], False, colour, thickness=int(rng.integers(1, 3)), lineType=cv2.LINE_AA)
    x0, y0 = curve.min(0)
    x1, y1 = curve.max(0)
    return int(x0), int(y0), int(x1 - x0 + 1), int(y1 - y0 + 1)


def training_frames(folder: Path, fabric: str, size: int, count: int, seed: int, margin: int = 48) -> None:
    """Good frames as a camera sees them: each the middle `size` rows of a strip of its own with
    `margin` rows above and below. Cut from inside the cloth, not rendered to the frame's size: a
    rendered image's yarn wobble (blurred noise) ends at its border, and a model trained on those
    takes a frame border cut from inside the cloth — every border of the stream — for a defect.
    A strip each, not consecutive frames of one strip: a strip has one set of yarn gains and
    light (a lot of its own), which a few strips would teach the model as the only normal."""
    folder.mkdir(parents=True)
    for i in range(count):
        strip, _ = render_roll(fabric, size, size + 2 * margin, [], seed=seed + 100 + i)
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(strip[margin:margin + size], cv2.COLOR_RGB2BGR))


def box_on_roll(box: tuple[int, int, int, int], top_px: int) -> RollBox:
    """A pixel box of the roll strip (1 mm/px) or of the frame whose top row is `top_px`."""
    x, y, w, h = box
    return RollBox((float(x), float(x + w)), ((top_px + y) / 1000, (top_px + y + h) / 1000))


def run_fabric(args, fabric: str) -> list[str]:
    root = args.out / fabric
    rng = np.random.default_rng(args.seed)
    category = root / f"data-{args.size}px-{args.train}-seed{args.seed}" / fabric
    if not (category / "train" / "good").is_dir():
        training_frames(category / "train" / "good", fabric, args.size, args.train, args.seed)
    config = FabricadConfig().with_overrides([f"data.path={category}", f"train.max_steps={args.steps}", *args.set])
    # one model per training setting: a rerun with other stream settings (--strength, --lint) reuses it
    run = root / f"run-{hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:12]}"
    if not (run / "model.ckpt").is_file():
        train(config, run, progress=True)
    engine = InferenceEngine.load(export_checkpoint(run / "model.ckpt", run / "bundle", progress=False))

    length = int(args.length_m * 1000)
    defects = planted_defects(args.size, length, args.defects, rng)
    strip, truth = render_roll(fabric, args.size, length, defects, seed=args.seed + 1, strength=args.strength)
    truth_boxes = [box_on_roll(b, 0) for b in truth]
    step = max(1, int(round(args.size * (1 - args.overlap))))
    placement = CameraPlacement(camera_id="cam", mm_per_px=1.0)
    sightings: list[tuple[list[RollBox], list[RollBox]]] = []  # per frame: its regions, its lint
    began = time.perf_counter()
    for top in range(0, length - args.size + 1, step):
        frame = strip[top:top + args.size].copy()
        lint = [box_on_roll(add_lint(frame, rng), top)] if rng.random() < args.lint else []
        result = engine.inspect(frame)
        sightings.append(([region_on_roll(r.as_dict(), top / 1000, placement) for r in result.regions], lint))
    seconds = time.perf_counter() - began
    rows = []
    for k in args.persistence:
        persistence, kept = Persistence(), []
        for places, _ in sightings:
            kept += [p for p, keep in zip(places, persistence.confirm("cam", places, k)) if keep]
        alarms = merge_all(kept, MERGE_GAP_MM)
        false = [a for a in alarms if not any(a.near(t, TOLERANCE_MM) for t in truth_boxes)]
        lints = [box for _, frame_lint in sightings for box in frame_lint]
        on_lint = sum(any(a.near(b, TOLERANCE_MM) for b in lints) for a in false)
        found = sum(any(t.near(a, TOLERANCE_MM) for a in kept) for t in truth_boxes)
        per_100_m = 100 / args.length_m
        rows.append(f"| {fabric} | {k} | {len(sightings)} ({sum(bool(lint) for _, lint in sightings)} with lint) | "
                    f"{len(false) * per_100_m:.0f} | {on_lint * per_100_m:.0f} | {found} / {len(truth_boxes)} "
                    f"({found / len(truth_boxes):.2f}) | {1000 * seconds / len(sightings):.0f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fabrics", nargs="+", default=["plain", "twill"], choices=sorted(FABRICS))
    parser.add_argument("--size", type=int, default=128, help="frame and training image side, px (1 mm/px)")
    parser.add_argument("--train", type=int, default=60)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--length-m", type=float, default=40.0)
    parser.add_argument("--defects", type=int, default=40)
    parser.add_argument("--overlap", type=float, default=0.5, help="share of a frame the next frame sees again")
    parser.add_argument("--lint", type=float, default=0.3, help="chance of lint on a frame")
    parser.add_argument("--strength", type=float, default=1.0, help="the planted defects' contrast (1: the generator's)")
    parser.add_argument("--persistence", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], help="training settings, e.g. model.teacher.name=resnet18")
    parser.add_argument("--out", type=Path, default=Path("runs/persistence"))
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    if not 0 <= args.overlap < 1:
        parser.error("--overlap must be in [0, 1)")
    if args.defects < 1 or args.length_m * 1000 / args.defects < 250:
        parser.error("--defects: each defect needs 250 mm of roll to itself (fewer defects or a longer --length-m)")
    rows = [row for fabric in args.fabrics for row in run_fabric(args, fabric)]
    lines = [f"## Persistence across frames on a camera stream ({machine()})", "",
             f"`python -m benchmarks.persistence --fabrics {' '.join(args.fabrics)} --length-m {args.length_m:g} "
             f"--lint {args.lint:g} --strength {args.strength:g}`: synthetic rolls {args.size} mm wide at 1 mm/px with {args.defects} planted defects, "
             f"frames of {args.size} rows overlapping by {args.overlap:.0%}, lint (a loose fibre, one frame only) on a "
             f"share {args.lint:g} of frames; defects at strength {args.strength:g}; the default model ({args.steps} steps "
             f"on {args.train} good frames cut from inside other strips) at its "
             "calibrated threshold. Alarms are the kept regions merged on the roll.", "",
             "| fabric | persistence_frames | frames | false alarms / 100 m | of which on lint | planted defects found | "
             "ms / frame |", "|---|---|---|---|---|---|---|", *rows]
    emit("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
