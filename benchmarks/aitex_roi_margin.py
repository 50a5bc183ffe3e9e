"""The fabric ROI's margin on trained models, and PatchCore with the same ROI: evaluation only.

    python benchmarks/aitex_roi_margin.py --runs runs/bench-aitex [--fabrics 00 02 03] [--baseline] [--write BENCHMARKS.md]

Why: `model.fabric_roi` blanks flat, saturated background (the scanner's white beyond the
fabric, as rows or columns that cross the whole tile) and `roi_margin` px around it. Margin 24
raised tile AUROC, pixel AUROC and AUPRO of the tile-context default but cost full-image AUROC:
the margin blanks defects that lie beside the background too. Margin 0 blanks the background
alone. Maps as `fabricad eval` scores them (texture alignment included), cached by
`aitex_scan_level.py` (`<run>/fusion-cache/rd-aligned.npz`), so the models must have been
trained and evaluated without the ROI. `--baseline` adds PatchCore fitted on the run's own
training tiles and teacher, without and with the margin-0 ROI (the same post-processing).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from fabricad.data import load_dataset
from fabricad.evaluation import predict, texture_of
from fabricad.training import load_model
from fabricad.training.trainer import holdout_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aitex as bench  # noqa: E402
from aitex_context import fabric_roi  # noqa: E402
from aitex_scan_level import aligned_maps  # noqa: E402
from service_load import emit  # noqa: E402

MARGINS = (0, 8, 16, 24)
VARIANTS = ["no ROI", *(f"ROI, margin {m}" for m in MARGINS)]
BASELINE = ["patchcore", "patchcore, ROI margin 0"]


def patchcore_maps(run: Path, split) -> np.ndarray:
    """PatchCore's maps of the test tiles, from the run's training tiles, teacher and texture reference."""
    _, ckpt = load_model(run)
    config, size = ckpt.config, ckpt.config.data.image_size
    core = bench.fit_patchcore(config, holdout_split(split.train, config)[0], size)
    return predict(core, split.test, size, batch_size=8, reference=texture_of(ckpt)).maps


def evaluate_fabric(run: Path, data: Path, fabric: str, baseline: bool) -> dict[str, dict]:
    split = load_dataset(data, fabric)
    plain = aligned_maps(run, split)[0]
    truth = bench.test_truth(split, plain.shape[1:])
    keeps = {m: fabric_roi(split.test, m) for m in MARGINS}
    candidates = {"no ROI": plain, **{f"ROI, margin {m}": plain * keeps[m] for m in MARGINS}}
    if baseline:
        core = patchcore_maps(run, split)
        candidates.update({"patchcore": core, "patchcore, ROI margin 0": core * keeps[0]})
    results = {}
    for variant, amap in candidates.items():
        results[variant] = bench.map_metrics(amap, amap.reshape(len(amap), -1).max(1).astype(np.float64), truth)
        print(fabric, variant, results[variant], flush=True)
    return results


def main() -> None:
    parser = bench.evaluation_parser(__doc__)
    parser.add_argument("--baseline", action="store_true", help="PatchCore without and with the margin-0 ROI too")
    args = parser.parse_args()
    fabrics, by_fabric = bench.evaluate_runs(args, evaluate_fabric, args.baseline)
    names = VARIANTS + (BASELINE if args.baseline else [])
    emit(bench.variant_report("the fabric ROI's margin", "aitex_roi_margin.py", " --baseline" if args.baseline else "",
                              args, fabrics, by_fabric, names), args.write)


if __name__ == "__main__":
    main()
