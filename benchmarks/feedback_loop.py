"""The operators' feedback loop: false alarms of another dye lot before and after a retrain.

    python -m benchmarks.feedback_loop [--fabrics plain twill] [--labelled 5 20] [--out runs/feedback-loop] [--write BENCHMARKS.md]

Per synthetic fabric: the default model is trained on one lot (`--steps`), exported with its
checkpoint; frames of another dye lot (`fabricad.data.synthetic.another_lot`: cloth a mill
accepts) are what it raises for nothing. `--labelled` of them are labelled false alarms and the
model is retrained on them exactly as the service does (`fabricad finetune`, `--retrain-steps`);
the candidate is then measured beside the model in use, each at its own calibrated threshold, on
the labelled frames, on `--unseen` frames of the same lot it never saw (does it generalise to the
lot, or only remember the frames?), and on the dataset's test split (AUROC, defects caught, normal
images alarmed) — the figures the service gates the candidate on.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import emit, machine
from fabricad.config import FabricadConfig
from fabricad.data.images import read_image
from fabricad.data.synthetic import (
    FABRICS,
    another_lot,
    generate_category,
    render_fabric,
)
from fabricad.export.candidate import BUNDLE, retrain_candidate
from fabricad.export.onnx_export import export_checkpoint
from fabricad.inference.engine import InferenceEngine
from fabricad.inference.retraining import FALSE_ALARMS
from fabricad.training import train


def alarmed(engine: InferenceEngine, paths: list[Path]) -> float:
    return float(np.mean([engine.inspect(read_image(p)).is_defect for p in paths]))


def lot_frames(folder: Path, fabric: str, size: int, count: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1000)
    paths = []
    for i in range(count):
        paths.append(folder / f"{i:03d}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(another_lot(render_fabric(FABRICS[fabric], size, size, rng), rng),
                                                 cv2.COLOR_RGB2BGR))
    return paths


def run_fabric(args, fabric: str) -> list[str]:
    root = args.out / fabric
    category = generate_category(root / "data", fabric, size=(args.size, args.size), n_train=args.train, n_test_good=20,
                                 n_test_defect=24, seed=args.seed, progress=False)
    config = FabricadConfig().with_overrides([f"data.path={category}", f"train.max_steps={args.steps}", *args.set])
    began = time.perf_counter()
    train(config, root / "run", progress=True)
    trained_s = time.perf_counter() - began
    bundle = export_checkpoint(root / "run" / "model.ckpt", root / "models" / fabric, progress=False, with_checkpoint=True)
    frames = lot_frames(root / "lot", fabric, args.size, max(args.labelled) + args.unseen, args.seed)
    unseen = frames[max(args.labelled):]
    old = InferenceEngine.load(bundle)
    old_unseen = alarmed(old, unseen)
    rows = []
    for k in args.labelled:
        began = time.perf_counter()
        status = retrain_candidate(bundle, frames[:k], root / f"labelled-{k}", steps=args.retrain_steps, progress=True)
        seconds = time.perf_counter() - began
        figures = {r.measure: r for r in status.comparison}
        new_unseen = alarmed(InferenceEngine.load(root / f"labelled-{k}" / BUNDLE), unseen)

        def pair(measure: str, unit: str = "%") -> str:
            r = figures.get(measure)
            if r is None or r.old is None:
                return "n/a"
            return f"{100 * r.old:.0f} → {100 * r.new:.0f}" if unit == "%" else f"{r.old:.3f} → {r.new:.3f}"

        rows.append(f"| {fabric} | {k} | {pair(FALSE_ALARMS)} | {100 * old_unseen:.0f} → {100 * new_unseen:.0f} | "
                    f"{pair('test images: AUROC', 'auroc')} | {pair('test defects caught')} | "
                    f"{pair('test normal images alarmed')} | {status.verdict} | {seconds:.0f} |")
    print(f"{fabric}: trained in {trained_s:.0f} s")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fabrics", nargs="+", default=["plain", "twill"], choices=sorted(FABRICS))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--train", type=int, default=60, help="defect-free training images of the first lot")
    parser.add_argument("--steps", type=int, default=400, help="training steps of the model in use")
    parser.add_argument("--labelled", type=int, nargs="+", default=[5, 20], help="frames of the new lot labelled false alarms")
    parser.add_argument("--unseen", type=int, default=40, help="frames of the new lot the retrain never sees")
    parser.add_argument("--retrain-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], help="training settings, e.g. model.teacher.name=resnet18")
    parser.add_argument("--out", type=Path, default=Path("runs/feedback-loop"))
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    rows = [row for fabric in args.fabrics for row in run_fabric(args, fabric)]
    lines = [f"## The feedback loop: retraining on labelled false alarms ({machine()})", "",
             f"`python -m benchmarks.feedback_loop --fabrics {' '.join(args.fabrics)} --labelled "
             f"{' '.join(map(str, args.labelled))}`: the default model trained on one lot ({args.train} images of "
             f"{args.size} px, {args.steps} steps), retrained ({args.retrain_steps} steps, as the service does) on k frames "
             f"of another dye lot labelled false alarms; each model at its own calibrated threshold. Unseen: {args.unseen} "
             "more frames of that lot. Test: the fabric's test split (20 good, 24 defective images).", "",
             "| fabric | k labelled | labelled alarmed % | unseen lot alarmed % | test AUROC | test defects caught % | "
             "test normals alarmed % | verdict | retrain s |", "|---|---|---|---|---|---|---|---|---|", *rows]
    emit("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
