"""Each tile scored with its neighbours as context, and where each scan's maximum lies: evaluation only.

    python benchmarks/aitex_context.py --runs runs/ab/full6 [--fabrics 03 02] [--write BENCHMARKS.md]

Why: on fabric 03 almost every scan, normal or defective, takes its full-image score from the
tile where the scanner's white background meets the fabric, so that edge decides 03's
full-image AUROC. The model reflect-pads every 256² tile by 32 px (`model.pad`); a tile that
holds only a sliver of fabric beside the background then sees a mirrored sliver, a pattern no
training tile showed. The variant here pads each tile with its real neighbours instead (the
scan's own pixels; reflection only beyond the scan's ends and above and below, where AITEX has
no more rows), as an overlap-tile scheme would, and the map is cut back to the tile.

Second table: per fabric, how many scans (normal / defective) take their maximum within 16 px of
the fabric edge, as shipped. Maps as `fabricad eval` scores them, texture alignment included;
the shipped maps come from `aitex_scan_level.py`'s cache (`<run>/fusion-cache/rd-aligned.npz`),
the context maps are cached beside them (`rd-context.npz`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from fabricad.data import load_dataset
from fabricad.evaluation import predict, texture_of
from fabricad.models.base import fabric_keep
from fabricad.training import load_model
from fabricad.training.dataset import to_tensor
from fabricad.training.trainer import holdout_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aitex import (  # noqa: E402
    evaluate_runs,
    evaluation_parser,
    map_metrics,
    test_truth,
    variant_report,
)
from aitex_fusion import cached  # noqa: E402
from aitex_scan_level import aligned_maps, scans  # noqa: E402
from service_load import emit  # noqa: E402

VARIANTS = ["as shipped", "neighbours as context", "as shipped, fabric ROI", "neighbours as context, fabric ROI"]
EDGE_BAND = 16
"""Pixels either side of the fabric edge that count as 'at the edge'."""


def context_maps(run: Path, split) -> np.ndarray:
    """Test maps with each tile padded by its real neighbours: the trained model scored as
    `model.tile_context` scores (aligned scans in their aligned geometry, as shipped)."""
    def make():
        model, ckpt = load_model(run)
        model.teacher.use_runtime(ckpt.config.train.teacher_runtime, torch.device("cpu"))
        model.config.tile_context = True  # an inference-time switch here: the weights are the run's
        return (predict(model, split.test, ckpt.config.data.image_size, reference=texture_of(ckpt)).maps,)

    return cached(run / "fusion-cache" / "rd-context.npz", make)[0]


def fabric_roi(samples, margin: int = 0) -> np.ndarray:
    """1 where `model.fabric_roi` keeps the map of each sample's tile (the model's own mask: flat,
    saturated background and `margin` px around it are 0)."""
    keep = []
    for start in range(0, len(samples), 32):
        batch = torch.stack([to_tensor(s.load()) for s in samples[start : start + 32]])
        keep.append(fabric_keep(batch, margin)[:, 0].numpy())
    return np.concatenate(keep)


@dataclass
class ShippedMaps:
    """A fabric's test and held-out normal tiles with the shipped default's maps of them (fabric
    ROI, margin 0): what every 'a second map beside RD' comparison starts from."""

    split: object
    train: list
    holdout: list
    keep: np.ndarray
    keep_normal: np.ndarray
    rd: np.ndarray
    rd_normal: np.ndarray

    @classmethod
    def of(cls, run: Path, data: Path, fabric: str) -> ShippedMaps:
        split = load_dataset(data, fabric)
        train, holdout = holdout_split(split.train, load_model(run)[1].config)
        keep, keep_normal = fabric_roi(split.test), fabric_roi(holdout)
        rd, rd_normal = (m.astype(np.float32) * k for m, k in zip(aligned_maps(run, split), (keep, keep_normal)))
        return cls(split, train, holdout, keep, keep_normal, rd, rd_normal)

    def on_fabric(self, maps: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Another method's (test, held-out) maps with the same ROI."""
        return tuple(m.astype(np.float32) * k for m, k in zip(maps, (self.keep, self.keep_normal)))

    def plus_excess(self, other: tuple[np.ndarray, np.ndarray], q: float) -> tuple[np.ndarray, np.ndarray]:
        """(test, held-out) RD maps plus another map's excess over its own held-out q-quantile,
        in units of RD's same quantile: `rd + rd_q · max(0, other / other_q − 1)`, so the other
        map speaks only where it exceeds what normal fabric gave it."""
        rd_q, other_q = np.percentile(self.rd_normal, q), np.percentile(other[1], q)
        return tuple(rd + rd_q * np.maximum(0.0, o / other_q - 1.0) for rd, o in zip((self.rd, self.rd_normal), other))

    def truth(self):
        return test_truth(self.split, self.rd.shape[1:])


def fabric_edge(path: Path) -> int:
    """First column where fabric begins: most of the column darker than the scanner's white."""
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    columns = np.flatnonzero((gray < 250).mean(axis=0) > 0.5)
    return int(columns[0]) if len(columns) else 0


def maxima_at_edge(maps: np.ndarray, samples) -> dict[int, list[int]]:
    """Per label (0 normal, 1 defective): [scans whose maximum is within EDGE_BAND px of the
    fabric edge, scans]."""
    counts = {0: [0, 0], 1: [0, 0]}
    for index in scans(samples).values():
        flat = maps[index].reshape(len(index), -1).astype(np.float32)
        tile, pixel = np.unravel_index(np.argmax(flat), flat.shape)
        x = samples[index[tile]].crop[0] + pixel % maps.shape[-1]
        label = max(samples[i].label for i in index)
        counts[label][0] += abs(x - fabric_edge(samples[index[0]].path)) <= EDGE_BAND
        counts[label][1] += 1
    return counts


def evaluate_fabric(run: Path, data: Path, fabric: str) -> dict[str, dict]:
    split = load_dataset(data, fabric)
    shipped = aligned_maps(run, split)[0]
    truth = test_truth(split, shipped.shape[1:])
    context = context_maps(run, split)
    keep = fabric_roi(split.test, load_model(run)[1].config.model.roi_margin)
    results = {}
    for variant, amap in zip(VARIANTS, (shipped, context, shipped * keep, context * keep)):
        results[variant] = map_metrics(amap, amap.reshape(len(amap), -1).max(1).astype(np.float64), truth)
        results[variant]["edge"] = maxima_at_edge(amap, split.test)
        print(fabric, variant, results[variant], flush=True)
    return results


def main() -> None:
    args = evaluation_parser(__doc__).parse_args()
    fabrics, by_fabric = evaluate_runs(args, evaluate_fabric)
    lines = ["", f"Scans whose maximum lies within {EDGE_BAND} px of the fabric edge (normal; defective):", "",
             "| fabric | " + " | ".join(VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    for f in fabrics:
        cells = [by_fabric[f][v]["edge"] for v in VARIANTS]
        lines.append(f"| {f} | " + " | ".join(f"{c[0][0]} of {c[0][1]}; {c[1][0]} of {c[1][1]}" for c in cells) + " |")
    emit(variant_report("each tile with its neighbours as context", "aitex_context.py", "", args, fabrics,
                        by_fabric, VARIANTS) + "\n" + "\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    main()
