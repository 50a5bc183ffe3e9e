"""How the anomaly map is assembled from the per-scale distances, side by side on trained models.

    python benchmarks/aitex_maps.py --runs runs/bench-lite1-default [--fabrics 02 03] [--write BENCHMARKS.md]

Evaluation only, no retraining: each fabric's trained model (`<runs>/<fabric>/rd`) gives its
per-scale `1 - cos` maps once for every test tile and for the run's held-out normal training tiles;
the variants then differ only in how those maps become one map and one score:

- scale weights: plain sum of every scale (the map before `model.map_max_stride`), each scale divided by its mean on the held-out
  normal tiles (so no scale dominates by its range alone), the coarsest scale weighted down or left out;
- the blur sigma (the image score is always the map's maximum).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fabricad.data import ImageDataset, load_dataset
from fabricad.evaluation import metrics as M
from fabricad.evaluation.evaluate import mask_at
from fabricad.models.anomaly_map import AnomalyMapGenerator, GaussianBlur
from fabricad.training import load_model
from fabricad.training.trainer import holdout_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aitex import KEYS, data_root  # noqa: E402
from service_load import emit  # noqa: E402


@dataclass(frozen=True)
class Variant:
    name: str
    weights: str = "sum"  # sum: raw maps | mean: each divided by its mean on normal tiles
    use: tuple[float, ...] = (1.0, 1.0, 1.0)  # per-scale factor, finest first
    sigma: float = 2.0


VARIANTS = [
    Variant("every scale, σ 2 (before map_max_stride)"),
    Variant("sum, σ 1", sigma=1.0),
    Variant("scales / normal mean", weights="mean"),
    Variant("stride 32 at half weight", use=(1.0, 1.0, 0.5)),
    Variant("strides 8+16 only (shipped: map_max_stride=16)", use=(1.0, 1.0, 0.0)),
    Variant("strides 8+16, σ 1", use=(1.0, 1.0, 0.0), sigma=1.0),
    Variant("strides 8+16, σ 3", use=(1.0, 1.0, 0.0), sigma=3.0),
    Variant("stride 8 only", use=(1.0, 0.0, 0.0)),
]


@torch.inference_mode()
def scale_maps(model, samples, size, batch_size: int = 16) -> np.ndarray:
    """(N, S, H+2p, W+2p) float16: each scale's distance map upsampled to the padded input, uncropped
    (the model blurs before cropping, and so must the variants)."""
    dataset = ImageDataset(samples, size)
    p = model.config.pad
    full = (size[0] + 2 * p, size[1] + 2 * p)
    out = None
    for start in tqdm(range(0, len(samples), batch_size), desc="scale maps", unit="batch", leave=False):
        index = range(start, min(start + batch_size, len(samples)))
        teacher, student = model.distill(torch.stack([dataset[i] for i in index]))
        maps = torch.cat(AnomalyMapGenerator.scale_maps(teacher, student, full), dim=1)
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


def evaluate_fabric(run: Path, data: Path, fabric: str) -> dict[str, dict]:
    model, ckpt = load_model(run)
    model.eval()
    split = load_dataset(data, fabric)
    size = ckpt.config.data.image_size
    _, holdout = holdout_split(split.train, ckpt.config)
    rng = np.random.default_rng(0)
    holdout = [holdout[i] for i in sorted(rng.choice(len(holdout), min(128, len(holdout)), replace=False))]
    normal_maps = scale_maps(model, holdout, size)
    test_maps = scale_maps(model, split.test, size)
    labels = np.array([s.label for s in split.test], dtype=int)
    masks = np.stack([mask_at(s, size) if s.label and s.mask_paths else np.zeros(size, bool) for s in split.test])
    groups = [s.group or str(s.path) for s in split.test]
    pad = ckpt.config.model.pad
    inner = normal_maps[:, :, pad:-pad, pad:-pad].astype(np.float32) if pad else normal_maps.astype(np.float32)
    per_scale = inner.transpose(1, 0, 2, 3).reshape(inner.shape[1], -1)
    scale_of = {"sum": np.ones(len(per_scale)), "mean": 1 / per_scale.mean(1)}
    results = {}
    for v in VARIANTS:
        weights = scale_of[v.weights] * np.array(v.use[: len(per_scale)])
        amap = combine(test_maps, weights, v.sigma, pad)
        scores = amap.reshape(len(amap), -1).max(1)
        image_labels, image_scores = M.group_max(groups, labels, scores)
        results[v.name] = {"image_auroc": M.auroc(labels, scores), "pixel_auroc": M.pixel_auroc(masks, amap),
                           "aupro": M.aupro(masks, amap), "full_image_auroc": M.auroc(image_labels, image_scores)}
        print(fabric, v.name, {k: round(results[v.name][k], 4) for k in KEYS}, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-lite1-default"))
    parser.add_argument("--data", type=Path, default=data_root(), help="AITEX folder (default: $FABRICAD_DATA/aitex)")
    parser.add_argument("--fabrics", nargs="*")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    fabrics = args.fabrics or sorted(p.parent.parent.name for p in args.runs.glob("*/rd/model.ckpt"))
    if not fabrics:
        sys.exit(f"no trained runs under {args.runs} (run benchmarks/aitex.py first)")
    by_fabric = {fabric: evaluate_fabric(args.runs / fabric / "rd", args.data, fabric) for fabric in fabrics}
    lines = [
        f"\n## AITEX-256: assembling the anomaly map ({date.today().isoformat()}, {platform.machine()}, "
        f"{os.cpu_count()} CPU threads)\n",
        f"Command: `python benchmarks/aitex_maps.py --runs {args.runs}" + (f" --fabrics {' '.join(args.fabrics)}" if args.fabrics else "")
        + "` — the trained models, evaluated only; means over fabrics " + ", ".join(fabrics) + ".\n",
        "| variant | tile image AUROC | pixel AUROC | AUPRO | full-image AUROC |", "|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        means = [np.mean([by_fabric[f][v.name][k] for f in fabrics]) for k in KEYS]
        lines.append(f"| {v.name} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    lines += ["", "| fabric | " + " | ".join(v.name for v in VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    for f in fabrics:
        lines.append(f"| {f} | " + " | ".join("/".join(f"{by_fabric[f][v.name][k]:.3f}" for k in KEYS) for v in VARIANTS) + " |")
    emit("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
