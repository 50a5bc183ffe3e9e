"""The fabric ROI's margin on trained models: evaluation only.

    python benchmarks/aitex_roi_margin.py --runs runs/bench-aitex [--fabrics 00 02 03] [--write BENCHMARKS.md]

Why: `model.fabric_roi` blanks flat, saturated background (the scanner's white beyond the
fabric) and `roi_margin` px around it. With margin 24 it raised tile AUROC, pixel AUROC and AUPRO
of the tile-context default but cost full-image AUROC: the margin blanks defects that lie beside
the background too. Margin 0 blanks the background alone. Maps as `fabricad eval` scores them
(texture alignment included), cached by `aitex_scan_level.py` (`<run>/fusion-cache/rd-aligned.npz`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from fabricad.data import load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aitex as bench  # noqa: E402
from aitex_context import fabric_roi  # noqa: E402
from aitex_scan_level import aligned_maps  # noqa: E402
from service_load import emit  # noqa: E402

MARGINS = (0, 8, 16, 24)
VARIANTS = ["no ROI", *(f"ROI, margin {m}" for m in MARGINS)]


def evaluate_fabric(run: Path, data: Path, fabric: str) -> dict[str, dict]:
    split = load_dataset(data, fabric)
    plain = aligned_maps(run, split)[0]
    truth = bench.test_truth(split, plain.shape[1:])
    results = {}
    for variant, keep in zip(VARIANTS, (None, *(fabric_roi(split, m) for m in MARGINS))):
        amap = plain if keep is None else plain * keep
        results[variant] = bench.map_metrics(amap, amap.reshape(len(amap), -1).max(1).astype(np.float64), truth)
        print(fabric, variant, results[variant], flush=True)
    return results


def main() -> None:
    args = bench.evaluation_parser(__doc__).parse_args()
    fabrics, by_fabric = bench.evaluate_runs(args, evaluate_fabric)
    emit(bench.variant_report("the fabric ROI's margin", "aitex_roi_margin.py", "", args, fabrics, by_fabric, VARIANTS),
         args.write)


if __name__ == "__main__":
    main()
