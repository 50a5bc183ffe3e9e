"""The feedback loop on the line benchmark (AITEX-256): operators label the false alarms of some
defective scans, the model is retrained on them, and the line benchmark judges both models on
scans neither the labels nor the retrain saw.

    python -m benchmarks.aitex --no-baseline --out runs/bench-aitex      # the trained defaults
    python -m benchmarks.line_feedback --runs runs/bench-aitex [--fabrics 01 02 03] [--write BENCHMARKS.md]

Per fabric: the defective test scans are split by position (half A: 1st, 3rd, …; half B: the
rest). On half A, every region above the model's good-scan ceiling that lies away from the true
defects is cut out as a square tile the height of the scan (no true defect in it) — the frames an
operator would label false alarms. `retrain_candidate` fine-tunes on them exactly as the
service's retrain job does. Both models are then run through the line benchmark on the normal
scans and half B only, each at its own calibrated threshold and teach-ins.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import emit, machine
from fabricad.data.aitex import CATEGORIES
from fabricad.data.images import read_image
from fabricad.evaluation.evaluate import predict_test_split
from fabricad.evaluation.line import (
    Frame,
    LineSettings,
    frames_of,
    good_scan_ceiling,
    judge_frame,
    run_line_benchmark,
)
from fabricad.export.candidate import retrain_candidate
from fabricad.export.onnx_export import export_checkpoint
from fabricad.inference.metrics import threshold_for_fpr
from fabricad.inference.operating_point import OperatingPoint

ROWS = ("ceiling: no false alarm anywhere", "ceiling: no false alarm anywhere, selvedge band", "calibrated threshold",
        "teach-in threshold", "teach-in + size rule", "teach-in + size rule + selvedge band")


def frames_and_threshold(model: Path, settings: LineSettings) -> tuple[list[Frame], float]:
    run = predict_test_split(model, progress=False)
    frames = frames_of(run.predictions, round(settings.match_tolerance_mm / settings.mm_per_px),
                       edges=run.checkpoint.config.model.fabric_edges)
    return frames, threshold_for_fpr(np.asarray(run.calibration), 0.01)


def false_alarm_tiles(frames: list[Frame], scans: list[int], out: Path, tolerance_px: int, most: int) -> list[Path]:
    """Square tiles (the scan's height) around the regions above the good-scan ceiling that no true
    defect is near, at most one per place; none holds a true defect."""
    out.mkdir(parents=True, exist_ok=True)
    ceiling = good_scan_ceiling(frames)
    tiles: list[Path] = []
    for i in scans:
        frame = frames[i]
        height, width = frame.anomaly_map.shape
        outcome = judge_frame(frame, ceiling, OperatingPoint(), tolerance_px)
        taken: list[int] = []
        for region in outcome.regions:
            x0 = int(np.clip(region.x + region.width // 2 - height // 2, 0, width - height))
            clear = all(d.box[0] >= x0 + height + tolerance_px or d.box[0] + d.box[2] + tolerance_px <= x0
                        for d in frame.defects)
            if not clear or any(abs(x0 - t) < height // 2 for t in taken):
                continue
            taken.append(x0)
            image = read_image(frame.source)
            if image.shape[:2] != (height, width):  # a whole image's frame is at the network's size
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            path = out / f"{frame.source.stem}_x{x0}.png"
            crop = image[:height, x0:x0 + height]
            cv2.imwrite(str(path), crop[..., ::-1] if crop.ndim == 3 else crop)
            tiles.append(path)
    return tiles[:most]


def run_fabric(args, fabric: str, settings: LineSettings) -> tuple[dict, str]:
    model = args.runs / fabric / "rd"
    root = args.out / fabric
    tolerance = round(settings.match_tolerance_mm / settings.mm_per_px)
    old_frames, old_threshold = frames_and_threshold(model, settings)
    defective = [i for i, f in enumerate(old_frames) if not f.normal]
    half_a, half_b = defective[0::2], defective[1::2]
    tiles = false_alarm_tiles(old_frames, half_a, root / "false-alarms", tolerance, args.most)
    if not tiles:
        return {}, f"{fabric}: no false alarm on half A to label"
    bundle = export_checkpoint(model / "model.ckpt", root / "bundle", progress=False, with_checkpoint=True)
    began = time.perf_counter()
    status = retrain_candidate(bundle, tiles, root / "retrain", steps=args.steps, max_minutes=None, progress=True)
    seconds = time.perf_counter() - began
    new_frames, new_threshold = frames_and_threshold(root / "retrain" / "run", settings)
    names = {f.name for i, f in enumerate(old_frames) if f.normal or i in half_b}
    results = []
    for frames, threshold in ((old_frames, old_threshold), (new_frames, new_threshold)):
        kept = [f for f in frames if f.name in names]
        results.append(run_line_benchmark(kept, threshold, settings)["strategies"])

    figures = {name: [[results[k][name]["false_alarms_per_100_m"], results[k][name]["defect_recall"] or 0.0]
                      for k in (0, 1)] for name in ROWS if name in results[0]}
    note = (f"{fabric}: {len(tiles)} tiles labelled from {len(half_a)} scans, retrained in {seconds:.0f} s, the "
            f"service's verdict {status.verdict}, judged on {len(half_b)} defective scans")
    return figures, note


def table(results: dict, fabrics: list[str]) -> list[str]:
    """Operating points as rows, fabrics (and their mean) as columns; each cell the model in use →
    the retrained one, as false alarms per 100 m / defect recall."""
    def cell(old: list[float], new: list[float]) -> str:
        fa = (lambda v: f"{v:.0f}" if v >= 1 or v == 0 else f"{v:.1f}")
        return f"{fa(old[0])} / {old[1]:.2f} → {fa(new[0])} / {new[1]:.2f}"

    lines = ["| operating point | " + " | ".join(fabrics) + " | mean |", "|---|" + "---|" * (len(fabrics) + 1)]
    names = [n for n in ROWS if any(n in results.get(f, {}) for f in fabrics)]
    for name in names:
        pairs = [results[f][name] for f in fabrics if name in results.get(f, {})]
        mean = [[float(np.mean([p[k][i] for p in pairs])) for i in (0, 1)] for k in (0, 1)]
        cells = [cell(*results[f][name]) if name in results.get(f, {}) else "n/a" for f in fabrics]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | **{cell(*mean)}** |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-aitex"), help="benchmarks.aitex's --out")
    parser.add_argument("--fabrics", nargs="+", default=list(CATEGORIES))
    parser.add_argument("--out", type=Path, default=Path("runs/line-feedback"))
    parser.add_argument("--steps", type=int, default=200, help="fine-tune steps (the service's default)")
    parser.add_argument("--most", type=int, default=40, help="at most this many labelled tiles per fabric")
    parser.add_argument("--mm-per-px", type=float, default=0.25)
    parser.add_argument("--rolls", type=int, default=20)
    parser.add_argument("--teach-in-frames", type=int, default=2)
    parser.add_argument("--roll-length-m", type=float, default=25.0)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--tabulate", action="store_true", help="only the table, from OUT/results.json")
    args = parser.parse_args()
    settings = LineSettings(mm_per_px=args.mm_per_px, rolls=args.rolls, roll_length_m=args.roll_length_m,
                            teach_in_frames=args.teach_in_frames)
    results_file = args.out / "results.json"
    results, notes = (json.loads(results_file.read_text()) if args.tabulate else {}), []
    for fabric in ([] if args.tabulate else args.fabrics):
        figures, note = run_fabric(args, fabric, settings)
        results[fabric] = {**figures, "note": note}
        print(note, flush=True)
    if not args.tabulate:
        results_file.parent.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(results, indent=1))
    fabrics = [f for f in args.fabrics if f in results]
    notes = [results[f]["note"] for f in fabrics]
    lines = [f"## The feedback loop on the line benchmark ({machine()})", "",
             f"`python -m benchmarks.line_feedback --runs {args.runs} --fabrics {' '.join(args.fabrics)}`: false alarms "
             "labelled on half of each fabric's defective scans (tiles around regions above the good-scan ceiling, "
             f"away from the true defects), the model retrained on them as the service does ({args.steps} steps), both "
             f"models judged by the line benchmark ({args.rolls} rolls of {args.roll_length_m:g} m at "
             f"{args.mm_per_px:g} mm/px) on the normal scans and the other half. Cells: false alarms / 100 m / defect "
             "recall, the model in use → the retrained one.", "", *table(results, fabrics), "",
             "; ".join(notes) + "."]
    emit("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
