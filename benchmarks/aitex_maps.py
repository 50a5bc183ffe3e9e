"""How the anomaly map is assembled from the per-scale distances, side by side on trained models.

    python benchmarks/aitex_maps.py --runs runs/bench-lite1-default [--fabrics 02 03] [--write BENCHMARKS.md]

Evaluation only, no retraining: each fabric's trained model (`<runs>/<fabric>/rd`) gives its
per-scale `1 - cos` maps once for every test tile and for the run's held-out normal training tiles;
the variants then differ only in how those maps become one map and one score:

- scale weights: plain sum of every scale (the map before `model.map_max_stride`), each scale divided by its mean on the held-out
  normal tiles (so no scale dominates by its range alone), the coarsest scale weighted down or left out;
- the blur sigma;
- (`--variants phases`) test-time grid phases: the map averaged over passes in which the tile sits
  a few pixels further into a larger padding, so the stride-8/16 feature grids fall at other
  places of the tile (every pass sees the whole tile with at least the model's own padding
  around it; the maps are cropped back before averaging);
- (`--variants phases`) the image score pooled as the mean of the map's top k pixels instead of its maximum.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fabricad.data import load_dataset
from fabricad.models.anomaly_map import AnomalyMapGenerator, GaussianBlur
from fabricad.training import load_model
from fabricad.training.dataset import ImageDataset
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
from service_load import emit  # noqa: E402


@dataclass(frozen=True)
class Variant:
    name: str
    weights: str = "sum"  # sum: raw maps | mean: each divided by its mean on normal tiles
    use: tuple[float, ...] = (1.0, 1.0, 1.0)  # per-scale factor, finest first
    sigma: float = 2.0
    phases: tuple[tuple[int, int], ...] = ((0, 0),)  # (dy, dx) shifts of the padding; maps averaged
    top_k: int = 1  # image score: mean of the map's k highest pixels (1: its maximum)


TITLES = {"scales": "assembling the anomaly map", "phases": "test-time grid phases and score pooling"}
SHIPPED = (1.0, 1.0, 0.0)  # strides 8 and 16 (model.map_max_stride=16), σ 2, maximum
VARIANT_SETS = {"scales": [
    Variant("every scale, σ 2 (before map_max_stride)"),
    Variant("sum, σ 1", sigma=1.0),
    Variant("scales / normal mean", weights="mean"),
    Variant("stride 32 at half weight", use=(1.0, 1.0, 0.5)),
    Variant("strides 8+16 only (shipped: map_max_stride=16)", use=(1.0, 1.0, 0.0)),
    Variant("strides 8+16, σ 1", use=(1.0, 1.0, 0.0), sigma=1.0),
    Variant("strides 8+16, σ 3", use=(1.0, 1.0, 0.0), sigma=3.0),
    Variant("stride 8 only", use=(1.0, 0.0, 0.0)),
], "phases": [
    Variant("shipped (strides 8+16, σ 2, max)", use=SHIPPED),
    Variant("2 phases: (0,0), (8,8)", use=SHIPPED, phases=((0, 0), (8, 8))),
    Variant("4 phases: 0/8 px in y and x", use=SHIPPED, phases=((0, 0), (0, 8), (8, 0), (8, 8))),
    Variant("score: mean of top 16 px", use=SHIPPED, top_k=16),
    Variant("score: mean of top 64 px", use=SHIPPED, top_k=64),
    Variant("4 phases 0/8 px, top 16 px", use=SHIPPED, phases=((0, 0), (0, 8), (8, 0), (8, 8)), top_k=16),
]}


@torch.inference_mode()
def canvas_maps(model, x: torch.Tensor, before: tuple[int, int], after: tuple[int, int]) -> torch.Tensor:
    """(B, S, H', W'): every scale's distance map, upsampled to the padded input, when the tiles `x`
    get `before` (top, left) and `after` (bottom, right) pixels of reflect padding."""
    padded = F.pad(x, (before[1], after[1], before[0], after[0]), mode="reflect")
    teacher = model.targets(padded)
    return torch.cat(AnomalyMapGenerator.scale_maps(teacher, model.student(teacher), padded.shape[-2:]), dim=1)


@torch.inference_mode()
def scale_maps(model, samples, size, shift: tuple[int, int] = (0, 0), batch_size: int = 16) -> np.ndarray:
    """(N, S, H+2p, W+2p) float16: each scale's distance map upsampled to the padded input, uncropped
    (the model blurs before cropping, and so must the variants). A `shift` (dy, dx) moves the
    feature grids against the tile: the tile gets d more pixels of padding before it and e − d
    more after (e: the bottleneck's stride), never less than the model's own p, and the maps are
    cropped back to the usual frame."""
    dataset = ImageDataset(samples, size)
    p = model.config.pad
    dy, dx = shift
    # A multiple of the bottleneck's stride (twice the coarsest scale's): an input the student's
    # embedding grid does not divide evenly gives it a map of another shape, and worse maps.
    extra = 0 if shift == (0, 0) else 2 * max(model.scale_strides())
    if model.config.standardize or not (0 <= dy < max(extra, 1) and 0 <= dx < max(extra, 1)):
        raise SystemExit("grid phases need model.standardize=false and 0 <= shift < the bottleneck's stride")
    full = (size[0] + 2 * p, size[1] + 2 * p)
    out = None
    for start in tqdm(range(0, len(samples), batch_size), desc=f"scale maps {shift}", unit="batch", leave=False):
        index = range(start, min(start + batch_size, len(samples)))
        x = torch.stack([dataset[i] for i in index])
        maps = canvas_maps(model, x, (p + dy, p + dx), (p + extra - dy, p + extra - dx))
        maps = maps[:, :, dy : dy + full[0], dx : dx + full[1]]  # the tile back at offset p
        if out is None:
            out = np.zeros((len(samples), maps.shape[1], *full), np.float16)
        out[index.start : index.stop] = maps.numpy()
    return out


def combine(maps: np.ndarray, weights: np.ndarray, sigma: float, pad: int, batch: int = 64) -> np.ndarray:
    """Weighted sum over scales, blurred at the padded size, cropped: (N, H, W) float32."""
    blur = GaussianBlur(sigma) if sigma > 0 else (lambda x: x)
    w = torch.from_numpy(weights.astype(np.float32)).view(1, -1, 1, 1)
    parts = []
    for start in range(0, len(maps), batch):
        x = (torch.from_numpy(maps[start : start + batch].astype(np.float32)) * w).sum(1, keepdim=True)
        x = blur(x)[:, 0]
        parts.append((x[:, pad:-pad, pad:-pad] if pad else x).numpy())
    return np.concatenate(parts)


def top_k_mean(amap: np.ndarray, k: int) -> np.ndarray:
    flat = amap.reshape(len(amap), -1)
    return flat.max(1) if k == 1 else np.partition(flat, -k, axis=1)[:, -k:].mean(1)


def evaluate_fabric(run: Path, data: Path, fabric: str, variants: list[Variant]) -> dict[str, dict]:
    model, ckpt = load_model(run)
    model.eval()
    model.teacher.use_runtime(ckpt.config.train.teacher_runtime, torch.device("cpu"))
    split = load_dataset(data, fabric)
    size = ckpt.config.data.image_size
    _, holdout = holdout_split(split.train, ckpt.config)
    rng = np.random.default_rng(0)
    holdout = [holdout[i] for i in sorted(rng.choice(len(holdout), min(128, len(holdout)), replace=False))]
    normal_maps = scale_maps(model, holdout, size)
    phase_maps = {(0, 0): scale_maps(model, split.test, size)}
    truth = test_truth(split, size)
    pad = ckpt.config.model.pad
    inner = normal_maps[:, :, pad:-pad, pad:-pad].astype(np.float32) if pad else normal_maps.astype(np.float32)
    per_scale = inner.transpose(1, 0, 2, 3).reshape(inner.shape[1], -1)
    scale_of = {"sum": np.ones(len(per_scale)), "mean": 1 / per_scale.mean(1)}
    results = {}
    for v in variants:
        weights = scale_of[v.weights] * np.array(v.use[: len(per_scale)])
        amap = 0
        for shift in v.phases:
            if shift not in phase_maps:
                phase_maps[shift] = scale_maps(model, split.test, size, shift)
            amap = amap + combine(phase_maps[shift], weights, v.sigma, pad) / len(v.phases)
        results[v.name] = map_metrics(amap, top_k_mean(amap, v.top_k), truth)
        print(fabric, v.name, {k: round(results[v.name][k], 4) for k in KEYS}, flush=True)
    return results


def main() -> None:
    parser = evaluation_parser(__doc__, Path("runs/bench-lite1-default"))
    parser.add_argument("--variants", choices=sorted(VARIANT_SETS), default="scales",
                        help="scales: how the scales are weighted and blurred; phases: grid phases and score pooling")
    args = parser.parse_args()
    variants = VARIANT_SETS[args.variants]
    fabrics, by_fabric = evaluate_runs(args, evaluate_fabric, variants)
    emit(variant_report(TITLES[args.variants], "aitex_maps.py", f" --variants {args.variants}", args, fabrics, by_fabric,
                        [v.name for v in variants]), args.write)


if __name__ == "__main__":
    main()
