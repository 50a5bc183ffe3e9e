"""Standardising the anomaly map by column position across the 4096-wide scan: evaluation only.

    python benchmarks/aitex_columns.py --runs runs/ab/base [--fabrics 03 02 00] [--write BENCHMARKS.md]

Why try it: AITEX images come from a line-scan camera, so a column of the 4096-wide image is a
fixed place across the loom — selvedge, lighting falling off toward the ends. Where normal fabric
always scores high in some columns (fabric 03's full-image AUROC suffers from exactly that), the
held-out normal images' map statistics per column could take it out without hiding the fabric,
as a margin (the fabric ROI) does. Each variant is fitted on the held-out normal tiles of the run
(`holdout_split`: two of the 14 training images) and smoothed along the width by a moving average
of `k` columns:

- subtract: the map minus the column's mean (plus the overall mean, to keep the scale);
- z: (map − column mean) / column spread (the spread floored at a quarter of the overall one);
- excess: the map minus only how far the column's mean sits above the overall mean.

Reads the maps cached by `aitex_fusion.py` (`<run>/fusion-cache/rd.npz`), computing them if absent.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from fabricad.data import load_dataset
from fabricad.training import read_checkpoint
from fabricad.training.trainer import holdout_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aitex import (  # noqa: E402
    KEYS,
    evaluate_runs,
    evaluation_parser,
    map_metrics,
    test_truth,
    variant_report,
)
from aitex_fusion import cached_rd_maps  # noqa: E402
from service_load import emit  # noqa: E402

VARIANTS = [("as shipped", None, 0), ("subtract, k=33", "subtract", 33), ("subtract, k=129", "subtract", 129),
            ("z, k=33", "z", 33), ("z, k=129", "z", 129), ("excess, k=33", "excess", 33)]


def column_profile(maps: np.ndarray, crops: list[tuple[int, int, int, int]], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the map's values in every column of the full image."""
    total, squares, count = np.zeros(width), np.zeros(width), np.zeros(width)
    for amap, (x, _, w, _) in zip(maps, crops):
        total[x : x + w] += amap.sum(0)
        squares[x : x + w] += (amap.astype(np.float64) ** 2).sum(0)
        count[x : x + w] += amap.shape[0]
    mean = total / np.maximum(count, 1)
    return mean, np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean**2, 0))


def smooth(values: np.ndarray, k: int) -> np.ndarray:
    return np.convolve(np.pad(values, k // 2, mode="edge"), np.ones(k) / k, "valid")


def adjusted(test: np.ndarray, crops, how: str | None, k: int, mean: np.ndarray, std: np.ndarray,
             overall: tuple[float, float]) -> np.ndarray:
    if how is None:
        return test
    mu, sd = smooth(mean, k), smooth(std, k)
    out = np.empty_like(test)
    for i, (x, _, w, _) in enumerate(crops):
        m, s = mu[x : x + w][None], sd[x : x + w][None]
        if how == "subtract":
            out[i] = test[i] - m + overall[0]
        elif how == "z":
            out[i] = (test[i] - m) / np.maximum(s, 0.25 * overall[1])
        else:
            out[i] = test[i] - np.maximum(m - overall[0], 0)
    return out


def evaluate_fabric(run: Path, data: Path, fabric: str) -> dict[str, dict]:
    config = read_checkpoint(run).config
    split = load_dataset(data, fabric)
    size = config.data.image_size
    _, holdout = holdout_split(split.train, config)
    test, normal = cached_rd_maps(run, split)
    test, normal = test.astype(np.float32), normal.astype(np.float32)
    width = max(x + w for x, _, w, _ in (s.crop for s in split.train + split.test))
    mean, std = column_profile(normal, [s.crop for s in holdout], width)
    truth = test_truth(split, size)
    results = {}
    for name, how, k in VARIANTS:
        amap = adjusted(test, [s.crop for s in split.test], how, k, mean, std, (float(normal.mean()), float(normal.std())))
        results[name] = map_metrics(amap, amap.reshape(len(amap), -1).max(1), truth)
        print(fabric, name, {key: round(results[name][key], 4) for key in KEYS}, flush=True)
    return results


def main() -> None:
    args = evaluation_parser(__doc__).parse_args()
    fabrics, by_fabric = evaluate_runs(args, evaluate_fabric)
    emit(variant_report("the map standardised by column", "aitex_columns.py", "", args, fabrics, by_fabric,
                        [name for name, *_ in VARIANTS]), args.write)


if __name__ == "__main__":
    main()
