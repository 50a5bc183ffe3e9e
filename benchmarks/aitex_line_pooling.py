"""The map averaged along the weave's rows and columns before its maximum is taken: evaluation only.

    python benchmarks/aitex_line_pooling.py --runs runs/bench-aitex [--fabrics 00 03] [--write BENCHMARKS.md]

Why: fabric 00's full-image AUROC (6 normal against 7 defective scans) is lost on two faint
weft lines (0064_022_00, 0065_022_00) whose map peaks at 0.5–0.6, the level of a normal scan's
brightest pixels (mostly where the fabric meets the scanner's white). A defect along a yarn is
long and thin; noise is short. Averaging the map over k pixels along each row and along each
column, and keeping the larger of the two, should favour the lines; a k × k box average, which
favours neither, is the control. Rows: the shipped map (fabric ROI and fabric-edge rule), then
the line and box averages at k = 9, 17, 33 (the tile is 256 px).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from fabricad.data.fabric_edges import keep_columns

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aitex as bench  # noqa: E402
from aitex_context import ShippedMaps  # noqa: E402
from service_load import emit  # noqa: E402

WIDTHS = (9, 17, 33)
VARIANTS = ["shipped (maximum of the map)", *(f"rows or columns, k = {k}" for k in WIDTHS),
            *(f"box, k = {k}" for k in WIDTHS)]


def pooled(maps: np.ndarray, k: int, lines: bool) -> np.ndarray:
    """Each map averaged over k px along rows and along columns, the larger kept (`lines`), or
    over a k × k box."""
    out = np.empty_like(maps)
    for i, amap in enumerate(maps):
        out[i] = np.maximum(cv2.blur(amap, (k, 1)), cv2.blur(amap, (1, k))) if lines else cv2.blur(amap, (k, k))
    return out


def evaluate_fabric(run: Path, data: Path, fabric: str) -> dict[str, dict]:
    shipped = ShippedMaps.of(run, data, fabric)
    width = shipped.rd.shape[-1]
    rd = shipped.rd * keep_columns(shipped.split.test, width)[:, None, :]
    normal = shipped.rd_normal * keep_columns(shipped.holdout, width)[:, None, :]
    candidates = {VARIANTS[0]: (rd, normal)}
    for k in WIDTHS:
        candidates[f"rows or columns, k = {k}"] = (pooled(rd, k, True), pooled(normal, k, True))
        candidates[f"box, k = {k}"] = (pooled(rd, k, False), pooled(normal, k, False))
    return bench.score_variants(fabric, candidates, shipped.truth())


def main() -> None:
    args = bench.evaluation_parser(__doc__).parse_args()
    fabrics, by_fabric = bench.evaluate_runs(args, evaluate_fabric)
    emit(bench.variant_report("the map averaged along rows and columns", "aitex_line_pooling.py", "", args, fabrics,
                              by_fabric, VARIANTS) + "\n", args.write)


if __name__ == "__main__":
    main()
