"""The anomaly map referred to its own scan's level: evaluation only.

    python benchmarks/aitex_scan_level.py --runs runs/ab/full6 [--fabrics 02 03] [--write BENCHMARKS.md]

Why try it: "where the errors are" found that whole test scans score above the training scans —
fabric 02's steeper or mirrored twill, fabric 00's doubled row spacing, fabric 03's test-normal
scans reaching 0.9–1.2 in mid-scan tiles where held-out training tiles stay under 0.56 — while
a defect is a few dozen pixels of a 4096×256 scan. A defect is local; a scan-wide rise is the
scan's shading or geometry. So each variant moves a scan's map by its own typical level (the
median pixel of all its tiles' maps, or its tiles' median score) relative to the same statistic
of the held-out normal training scans:

- minus scan median: map − (scan's median pixel − held-out scans' median pixel);
- minus excess: the same, but only a scan above the held-out level is moved down (a scan below
  is left as it is);
- minus tile median: map − (median of the scan's tile scores − that of the held-out scans);
- robust z: (map − scan median) scaled by the held-out interquartile range over the scan's own.

The held-out tiles go through the same variant, so the last columns are what a mill would see:
recall at the threshold calibrated for 1 % false alarms on the held-out tiles, and the test's
normal tiles' false-alarm rate at that threshold. Maps are scored as `fabricad eval` scores them,
texture alignment included, and cached beside each run (`<run>/fusion-cache/rd-aligned.npz`).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from fabricad.data import load_dataset
from fabricad.evaluation import predict, texture_of
from fabricad.training import load_model
from fabricad.training.trainer import holdout_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aitex import (  # noqa: E402
    evaluate_runs,
    evaluation_parser,
    recall_lines,
    score_variants,
    test_truth,
    variant_report,
)
from aitex_fusion import cached  # noqa: E402
from service_load import emit  # noqa: E402

VARIANTS = ["as shipped", "minus scan median", "minus excess", "minus tile median", "robust z"]


def aligned_maps(run: Path, split) -> tuple[np.ndarray, np.ndarray]:
    def make():
        model, ckpt = load_model(run)
        model.teacher.use_runtime(ckpt.config.train.teacher_runtime, torch.device("cpu"))
        _, holdout = holdout_split(split.train, ckpt.config)
        size, reference = ckpt.config.data.image_size, texture_of(ckpt)
        return (predict(model, split.test, size, reference=reference).maps,
                predict(model, holdout, size, reference=reference).maps)

    return cached(run / "fusion-cache" / "rd-aligned.npz", make)


def scans(samples) -> dict[str, list[int]]:
    found = defaultdict(list)
    for i, sample in enumerate(samples):
        found[sample.group or str(sample.path)].append(i)
    return found


def scan_levels(maps: np.ndarray, samples) -> dict[str, dict[str, float]]:
    """Per scan: median pixel, interquartile range, median tile score."""
    levels = {}
    for scan, index in scans(samples).items():
        values = maps[index].astype(np.float32).ravel()
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        levels[scan] = {"median": median, "iqr": q3 - q1,
                        "tiles": float(np.median(maps[index].reshape(len(index), -1).max(1)))}
    return levels


def adjusted(maps: np.ndarray, samples, variant: str, reference: dict[str, float]) -> np.ndarray:
    out = maps.astype(np.float32)
    if variant == "as shipped":
        return out
    for scan, level in scan_levels(maps, samples).items():
        index = scans(samples)[scan]
        if variant == "minus scan median":
            out[index] -= level["median"] - reference["median"]
        elif variant == "minus excess":
            out[index] -= max(level["median"] - reference["median"], 0.0)
        elif variant == "minus tile median":
            out[index] -= level["tiles"] - reference["tiles"]
        else:
            out[index] = (out[index] - level["median"]) * reference["iqr"] / max(level["iqr"], 1e-6) + reference["median"]
    return out


def evaluate_fabric(run: Path, data: Path, fabric: str) -> dict[str, dict]:
    split = load_dataset(data, fabric)
    config = load_model(run)[1].config
    _, holdout = holdout_split(split.train, config)
    test, normal = aligned_maps(run, split)
    truth = test_truth(split, config.data.image_size)
    held = scan_levels(normal, holdout)
    reference = {key: float(np.median([level[key] for level in held.values()])) for key in ("median", "iqr", "tiles")}
    candidates = {v: (adjusted(test, split.test, v, reference), adjusted(normal, holdout, v, reference)) for v in VARIANTS}
    return score_variants(fabric, candidates, truth)


def main() -> None:
    args = evaluation_parser(__doc__).parse_args()
    fabrics, by_fabric = evaluate_runs(args, evaluate_fabric)
    lines = recall_lines(by_fabric, VARIANTS)
    emit(variant_report("the map referred to its own scan's level", "aitex_scan_level.py", "", args, fabrics,
                        by_fabric, VARIANTS) + "\n" + "\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    main()
