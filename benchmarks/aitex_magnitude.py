"""Does the student's feature *magnitude* see what its direction misses? Evaluation only.

    python benchmarks/aitex_magnitude.py --runs runs/bench-aitex [--fabrics 01 03] [--write BENCHMARKS.md]

Why: the anomaly map is `1 − cos(teacher, student)` per position, blind by construction to how
strong a feature is. The large low-contrast defects that hold the pixel-AUROC gap (01's dark band,
03's strip of disturbed picks) are shading and density changes, which change the teacher's feature
magnitudes more than their directions. The student was trained on direction only, but a decoder
that rebuilds normal fabric may also rebuild normal magnitudes; if it does, `|log‖s‖ − log‖t‖|`
per position lights such regions inside, not only at their edges. This measures that map (strides
8 and 16 summed, upsampled and blurred like the shipped map, fabric ROI with margin 0) on the
trained models as they are, alone and added to the shipped map — either standardised by the
held-out normal pixels, or only where it exceeds its own held-out extreme. If it helps, training
for it is the next step; if the magnitude map is noise, it is not worth that run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fabricad.evaluation import predict, texture_of
from fabricad.models.anomaly_map import GaussianBlur
from fabricad.training import load_model
from fabricad.training.trainer import holdout_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aitex as bench  # noqa: E402
from aitex_context import ShippedMaps  # noqa: E402
from aitex_fusion import cached  # noqa: E402
from service_load import emit  # noqa: E402

VARIANTS = ["rd (shipped)", "magnitude only", "rd + 0.5 standardised magnitude", "rd + standardised magnitude",
            "rd + magnitude above its held-out 99.9 %"]


class MagnitudeMap(nn.Module):
    """Stands in for the model's `AnomalyMapGenerator`: `|log‖s‖ − log‖t‖|` per scale instead of
    `1 − cos`, combined, upsampled and blurred the same way."""

    def __init__(self, sigma: float):
        super().__init__()
        self.blur = GaussianBlur(sigma) if sigma > 0 else nn.Identity()

    def forward(self, teacher, student, size):
        total = 0
        for t, s in zip(teacher, student):
            ratio = (torch.log(s.norm(dim=1, keepdim=True) + 1e-6) - torch.log(t.norm(dim=1, keepdim=True) + 1e-6)).abs()
            total = total + F.interpolate(ratio, size=size, mode="bilinear", align_corners=False)
        return self.blur(total)


def magnitude_maps(run: Path, split) -> tuple[np.ndarray, np.ndarray]:
    def make():
        model, ckpt = load_model(run)
        model.teacher.use_runtime(ckpt.config.train.teacher_runtime, torch.device("cpu"))
        model.anomaly_map = MagnitudeMap(ckpt.config.model.blur_sigma)
        _, holdout = holdout_split(split.train, ckpt.config)
        size, reference = ckpt.config.data.image_size, texture_of(ckpt)
        return (predict(model, split.test, size, reference=reference).maps,
                predict(model, holdout, size, reference=reference).maps)

    return cached(run / "fusion-cache" / "magnitude-aligned.npz", make)


def evaluate_fabric(run: Path, data: Path, fabric: str) -> dict[str, dict]:
    shipped = ShippedMaps.of(run, data, fabric)
    rd, rd_normal = shipped.rd, shipped.rd_normal
    mag, mag_normal = shipped.on_fabric(magnitude_maps(run, shipped.split))
    scale = rd_normal.std() / (mag_normal.std() + 1e-12)
    z, z_normal = ((m - mag_normal.mean()) * scale for m in (mag, mag_normal))
    candidates = {
        "rd (shipped)": (rd, rd_normal),
        "magnitude only": (mag, mag_normal),
        "rd + 0.5 standardised magnitude": (rd + 0.5 * z, rd_normal + 0.5 * z_normal),
        "rd + standardised magnitude": (rd + z, rd_normal + z_normal),
        "rd + magnitude above its held-out 99.9 %": shipped.plus_excess((mag, mag_normal), 99.9),
    }
    return bench.score_variants(fabric, candidates, shipped.truth())


def main() -> None:
    args = bench.evaluation_parser(__doc__).parse_args()
    fabrics, by_fabric = bench.evaluate_runs(args, evaluate_fabric)
    emit(bench.variant_report("the student's feature magnitude as a second map", "aitex_magnitude.py", "", args,
                              fabrics, by_fabric, VARIANTS) + "\n", args.write)


if __name__ == "__main__":
    main()
