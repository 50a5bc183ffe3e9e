"""Reverse distillation and PatchCore fused into one map, side by side with each alone.

    python benchmarks/aitex_fusion.py --runs runs/ab/base [--fabrics 03 00] [--write BENCHMARKS.md]

Evaluation only: each fabric's trained default model (`<runs>/<fabric>/rd`) and a PatchCore
memory bank fitted on the same training tiles with the same teacher give a map for every test
tile and every held-out normal tile. The two maps live on different scales (a cosine distance,
a feature-space distance), so each is first standardised by its own held-out normal pixels
(mean and standard deviation): a value then says "so many normal spreads above normal fabric"
for both, and the variants combine those. The "by scores" variants standardise by the held-out
normal tiles' *scores* (each map's maximum) instead: a method whose normal maps have high,
scattered peaks is weighted down, whatever its typical pixel. Why try it: on AITEX, PatchCore's pixel AUROC beats
RD's on three fabrics and loses on the other three, so their errors are not the same errors.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from fabricad.data import load_dataset
from fabricad.evaluation import predict
from fabricad.training import load_model, read_checkpoint
from fabricad.training.trainer import holdout_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aitex import (  # noqa: E402
    KEYS,
    evaluate_runs,
    evaluation_parser,
    fit_patchcore,
    map_metrics,
    test_truth,
    variant_report,
)
from service_load import emit  # noqa: E402


def standardised(maps: np.ndarray, normal: np.ndarray, by: str) -> np.ndarray:
    normal = normal.astype(np.float32)
    if by == "scores":
        normal = normal.reshape(len(normal), -1).max(1)
    return (maps.astype(np.float32) - normal.mean()) / (normal.std() + 1e-12)


def cached(path: Path, make) -> tuple[np.ndarray, ...]:
    """The test and held-out maps of one method, kept beside the run: the variants are cheap,
    the maps are not."""
    if path.is_file():
        with np.load(path) as f:
            return tuple(f[k] for k in sorted(f.files))
    arrays = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, *arrays)
    return arrays


def cached_rd_maps(run: Path, split) -> tuple[np.ndarray, np.ndarray]:
    """The run's maps of the split's test tiles and of its held-out normal tiles, cached beside
    the run (`fusion-cache/rd.npz`); the model is loaded only when the cache is missing."""
    def make():
        model, ckpt = load_model(run)
        model.teacher.use_runtime(ckpt.config.train.teacher_runtime, torch.device("cpu"))
        _, holdout = holdout_split(split.train, ckpt.config)
        size = ckpt.config.data.image_size
        return predict(model, split.test, size).maps, predict(model, holdout, size).maps

    return cached(run / "fusion-cache" / "rd.npz", make)


def fuse(rd: np.ndarray, pc: np.ndarray, how: str, weight: float = 0.5) -> np.ndarray:
    if how == "rd":
        return rd
    if how == "patchcore":
        return pc
    if how == "mean":
        return (1 - weight) * rd + weight * pc
    if how == "max":
        return np.maximum(rd, pc)
    raise ValueError(how)


VARIANTS = [("rd (shipped)", "rd", 0.5, "pixels"), ("patchcore", "patchcore", 0.5, "pixels"),
            ("mean of standardised maps", "mean", 0.5, "pixels"), ("0.7 rd + 0.3 patchcore", "mean", 0.3, "pixels"),
            ("max of standardised maps", "max", 0.5, "pixels"), ("mean, by scores", "mean", 0.5, "scores"),
            ("max, by scores", "max", 0.5, "scores")]


def evaluate_fabric(run: Path, data: Path, fabric: str, sigma: float) -> dict[str, dict]:
    config = read_checkpoint(run).config
    split = load_dataset(data, fabric)
    size = config.data.image_size
    train_samples, holdout = holdout_split(split.train, config)

    def patchcore_maps():
        started = time.perf_counter()
        core = fit_patchcore(config, train_samples, size, sigma)
        print(f"{fabric}: patchcore fit {time.perf_counter() - started:.0f} s, bank {len(core.memory)}", flush=True)
        test = predict(core, split.test, size)
        print(f"{fabric}: patchcore {1000 * test.seconds_per_image:.1f} ms per tile", flush=True)
        return test.maps, predict(core, holdout, size).maps

    rd_test, rd_normal = cached_rd_maps(run, split)
    pc_test, pc_normal = cached(run / "fusion-cache" / f"patchcore-sigma{sigma:g}.npz", patchcore_maps)
    truth = test_truth(split, size)
    results = {}
    for name, how, weight, by in VARIANTS:
        amap = fuse(standardised(rd_test, rd_normal, by), standardised(pc_test, pc_normal, by), how, weight)
        results[name] = map_metrics(amap, amap.reshape(len(amap), -1).max(1), truth)
        print(fabric, name, {k: round(results[name][k], 4) for k in KEYS}, flush=True)
    return results


def main() -> None:
    parser = evaluation_parser(__doc__)
    parser.add_argument("--sigma", type=float, default=2.0, help="PatchCore's blur (the RD default's σ)")
    args = parser.parse_args()
    fabrics, by_fabric = evaluate_runs(args, evaluate_fabric, args.sigma)
    emit(variant_report("RD and PatchCore fused", "aitex_fusion.py", f" --sigma {args.sigma:g}", args, fabrics, by_fabric,
                        [name for name, *_ in VARIANTS]), args.write)


if __name__ == "__main__":
    main()
