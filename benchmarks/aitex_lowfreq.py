"""The fabric's local brightness and contrast as a second map: evaluation only.

    python benchmarks/aitex_lowfreq.py --runs runs/bench-aitex [--fabrics 01 03 06] [--write BENCHMARKS.md]

Why: the default's pixel AUROC is short of the target because of a few large, low-contrast
defects ("where the last gaps are"): fabric 01's dark band, 03's strip of disturbed picks, 06's
0060_022. The reverse-distillation map lights their edges, not their inside — inside, the weave
is a normal weave, only darker or flatter, and the teacher's features barely see a change of
level. The simplest signal that does is the image's own low frequencies: the local mean (how
dark) and the local standard deviation (how much contrast) of the grey levels in a W×W window.
Each is turned into a deviation from the fabric's normal — |x − median| over half the 0.5–99.5 %
range of 150 training tiles' fabric pixels — and added to the RD map in two ways:

- only above its own normal extreme, as PatchCore was in `aitex_excess.py`:
  `rd + rd_q · max(0, z / z_q − 1)`, z_q the 99.9 % quantile of the held-out normal tiles' z;
- as a weighted sum, `rd + β · rd_99 · z / z_99` (β = 0.1, 0.25, 0.5).

RD maps as `fabricad eval` scores them (`aitex_scan_level.py`'s cache); both maps carry the
default's fabric ROI (margin 0).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aitex as bench  # noqa: E402
from aitex_context import ShippedMaps, fabric_roi  # noqa: E402
from service_load import emit  # noqa: E402

WINDOW = 64
"""Side of the window, px: a quarter of a tile, wide enough to sit inside 01's band."""
REFERENCE_TILES = 150
STATISTICS = ("mean", "std")
WEIGHTS = (0.1, 0.25, 0.5)
VARIANTS = ["rd (shipped)", *(f"rd + local {s} above its held-out 99.9 %" for s in STATISTICS),
            *(f"rd + {b} · local {s}" for s in STATISTICS for b in WEIGHTS)]


def local_statistics(samples, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Per tile, at the map's size: the grey level's local mean and standard deviation."""
    means, stds = [], []
    for sample in samples:
        gray = cv2.resize(cv2.cvtColor(sample.load(), cv2.COLOR_RGB2GRAY), size[::-1], interpolation=cv2.INTER_AREA)
        gray = gray.astype(np.float32)
        mean = cv2.blur(gray, (WINDOW, WINDOW), borderType=cv2.BORDER_REFLECT)
        square = cv2.blur(gray * gray, (WINDOW, WINDOW), borderType=cv2.BORDER_REFLECT)
        means.append(mean)
        stds.append(np.sqrt(np.maximum(square - mean * mean, 0.0)))
    return {"mean": np.stack(means), "std": np.stack(stds)}


def deviation(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|x − median| in units of half the reference's 0.5–99.5 % range."""
    low, median, high = np.percentile(reference, [0.5, 50, 99.5])
    return np.abs(values - median) / max((high - low) / 2, 1e-6)


def evaluate_fabric(run: Path, data: Path, fabric: str) -> dict[str, dict]:
    shipped = ShippedMaps.of(run, data, fabric)
    rd, rd_normal, keep, keep_normal, train = shipped.rd, shipped.rd_normal, shipped.keep, shipped.keep_normal, shipped.train
    size = rd.shape[1:]
    reference = [train[i] for i in np.random.default_rng(0).choice(len(train), min(REFERENCE_TILES, len(train)), replace=False)]
    on_fabric = fabric_roi(reference) > 0
    stats = {name: local_statistics(samples, size) for name, samples in
             (("reference", reference), ("test", shipped.split.test), ("holdout", shipped.holdout))}
    candidates = {"rd (shipped)": (rd, rd_normal)}
    for s in STATISTICS:
        z, z_normal = (deviation(stats[part][s], stats["reference"][s][on_fabric]) * k
                       for part, k in (("test", keep), ("holdout", keep_normal)))
        candidates[f"rd + local {s} above its held-out 99.9 %"] = shipped.plus_excess((z, z_normal), 99.9)
        rd_99, z_99 = np.percentile(rd_normal, 99), np.percentile(z_normal, 99)
        for b in WEIGHTS:
            candidates[f"rd + {b} · local {s}"] = (rd + b * rd_99 * z / z_99, rd_normal + b * rd_99 * z_normal / z_99)
    return bench.score_variants(fabric, candidates, shipped.truth())


def main() -> None:
    args = bench.evaluation_parser(__doc__).parse_args()
    fabrics, by_fabric = bench.evaluate_runs(args, evaluate_fabric)
    emit(bench.variant_report("the fabric's local brightness and contrast as a second map", "aitex_lowfreq.py", "",
                              args, fabrics, by_fabric, VARIANTS) + "\n" + "\n".join(bench.recall_lines(by_fabric, VARIANTS)) + "\n",
         args.write)


if __name__ == "__main__":
    main()
