"""The machine bed beyond the fabric edge, blanked per scan (`model.fabric_edges`): evaluation only.

    python benchmarks/aitex_edges.py --runs runs/bench-aitex [--fabrics 01 02] [--pictures DIR] [--write BENCHMARKS.md]

Why: counting which normal pixels outscore the defects ("where the last gaps are" counted which
defects) showed that on fabrics 00, 01, 02, 04 and 06 most of them lie in the first tiles of
scans whose left side shows the machine bed — a striped, reflective table beside the fabric —
instead of the scanner's white: a surface the model lights from edge to edge (fabric 01's
normal scans show white there, its defective ones the bed; 04 and 06 show the bed in training
too, and the model still lights it in test scans: it is never the same twice). The fabric ROI
blanks only flat, saturated background. `fabricad.data.fabric_edges` finds, per scan, the strip
between a side and an abrupt full-height edge that does not look like the scan's fabric (its
level 20 % off, or less than half its texture across rows), and the map is zero there — for
the test tiles and the held-out tiles that calibrate the threshold alike.

Rows: the shipped maps without and with the rule, the rule's neighbours (each threshold moved
one way), and PatchCore without and with it. RD maps as `fabricad eval` scores them
(`aitex_scan_level.py`'s cache), PatchCore's from `aitex_excess.py`'s cache; both carry the
fabric ROI (margin 0).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import cv2
import numpy as np

from fabricad.data.fabric_edges import EdgeRule, background_columns, keep_columns

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aitex as bench  # noqa: E402
from aitex_context import ShippedMaps  # noqa: E402
from aitex_excess import patchcore_maps  # noqa: E402
from service_load import emit  # noqa: E402

DEFAULT = EdgeRule()
RULES = {
    "rd + fabric edges (default rule)": DEFAULT,
    "rd + fabric edges, level 15 %": EdgeRule(level=math.log(1.15)),
    "rd + fabric edges, level 25 %": EdgeRule(level=math.log(1.25)),
    "rd + fabric edges, texture below 1/1.7": EdgeRule(texture=math.log(1.7)),
    "rd + fabric edges, texture below 1/2.5": EdgeRule(texture=math.log(2.5)),
    "rd + fabric edges, edge step 0.15": EdgeRule(step=0.15),
    "rd + fabric edges, edge step 0.3": EdgeRule(step=0.3),
}
VARIANTS = ["rd (no edges)", *RULES, "patchcore (no edges)", "patchcore + fabric edges"]


def keep_of(samples, width: int, rule: EdgeRule) -> np.ndarray:
    return keep_columns(samples, width, rule)[:, None, :]


def picture(shipped: ShippedMaps, path: Path, scans: int = 6) -> None:
    """Up to `scans` test scans with a strip, those whose strip is not the scanner's white (a bed)
    first: each scan's left 1536 px, the strip tinted red, its name in yellow."""
    found = []
    for source in dict.fromkeys(s.path for s in shipped.split.test):
        image = cv2.imread(str(source), cv2.IMREAD_COLOR)
        background = background_columns(image[..., ::-1])
        if background.any():
            found.append((float(image[:, background].mean()) >= 245, source.stem, image, background))
    rows = []
    for _, name, image, background in sorted(found, key=lambda f: f[0])[:scans]:
        row, strip = image[:, :1536].copy(), background[:1536]
        row[:, strip, :2] = (row[:, strip, :2] * 0.4).astype(np.uint8)  # less blue and green: red
        cv2.putText(row, name, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 255), 2)
        rows.append(row)
    if rows:
        cv2.imwrite(str(path), np.vstack(rows))


def evaluate_fabric(run: Path, data: Path, fabric: str, pictures: Path | None) -> dict[str, dict]:
    shipped = ShippedMaps.of(run, data, fabric)
    rd, rd_normal = shipped.rd, shipped.rd_normal
    truth = shipped.truth()
    width = rd.shape[-1]
    candidates = {"rd (no edges)": (rd, rd_normal)}
    blanked = {}
    for name, rule in RULES.items():
        keep, keep_normal = keep_of(shipped.split.test, width, rule), keep_of(shipped.holdout, width, rule)
        candidates[name] = (rd * keep, rd_normal * keep_normal)
        blanked[name] = (int((truth[1] & (keep == 0)).sum()), int(truth[1].sum()), float(1 - keep.mean()))
    pc, pc_normal = shipped.on_fabric(patchcore_maps(run, shipped.split))
    keep, keep_normal = keep_of(shipped.split.test, width, DEFAULT), keep_of(shipped.holdout, width, DEFAULT)
    candidates["patchcore (no edges)"] = (pc, pc_normal)
    candidates["patchcore + fabric edges"] = (pc * keep, pc_normal * keep_normal)
    results = bench.score_variants(fabric, candidates, truth)
    for name, counts in blanked.items():
        results[name]["blanked"] = counts
    if pictures is not None:
        pictures.mkdir(parents=True, exist_ok=True)
        picture(shipped, pictures / f"edges-{fabric}.png")
    return results


def main() -> None:
    parser = bench.evaluation_parser(__doc__)
    parser.add_argument("--pictures", type=Path, help="write edges-FF.png: scans with their blanked strips tinted")
    args = parser.parse_args()
    fabrics, by_fabric = bench.evaluate_runs(args, evaluate_fabric, args.pictures)
    lines = ["", "Defect pixels blanked (of the fabric's) and share of test tile columns blanked, per rule:", "",
             "| rule | " + " | ".join(fabrics) + " |", "|---|" + "---|" * len(fabrics)]
    for name in RULES:
        cells = [by_fabric[f][name]["blanked"] for f in fabrics]
        lines.append(f"| {name} | " + " | ".join(f"{lost} of {total} px; {share:.1%}" for lost, total, share in cells) + " |")
    emit(bench.variant_report("the machine bed beyond the fabric edge", "aitex_edges.py", "", args, fabrics, by_fabric,
                              VARIANTS) + "\n" + "\n".join(lines + bench.recall_lines(by_fabric, VARIANTS)) + "\n", args.write)


if __name__ == "__main__":
    main()
