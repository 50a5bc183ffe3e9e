"""Where the last gaps to the targets are: what finding each defective scan would be worth.

    python benchmarks/aitex_gap.py --runs runs/bench-aitex [--fabrics 00 03] [--pictures DIR] [--write BENCHMARKS.md]

Why: pixel AUROC pools every defect pixel of a fabric, so a single large defect can decide it,
and full-image AUROC ranks a handful of scans, so one defect the map misses moves it by several
points. Before another model change, this says which scans hold the gap and shows them. For each
defective scan: its share of the fabric's defect pixels, the median map value on its defect
against the 99th percentile of the normal tiles' pixels, the pixel AUROC if its defect alone were
found (its pixels given the map's maximum), and how many normal scans outscore it (each such pair
costs full-image AUROC 1 / (normal × defective scans)); then each normal scan that outscores a
defective one, with how many. Maps as `fabricad eval` scores them with
the shipped fabric ROI (margin 0) applied to the maps cached by `aitex_scan_level.py`, so the
models must have been trained without the ROI. `--pictures` writes, per fabric, the listed scans'
defect regions (a normal scan's: around its maximum): the image, the map (0 to the normal 99.9th
percentile, black to white) and the image with the mask's outline.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from fabricad.data import load_dataset
from fabricad.inference import metrics as M

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aitex as bench  # noqa: E402
from aitex_context import fabric_roi  # noqa: E402
from aitex_scan_level import aligned_maps, scans  # noqa: E402
from service_load import emit  # noqa: E402

LISTED = 3
"""Defective scans listed per fabric, by pixel-AUROC gain; every normal scan that outscores a
defective one is listed after them."""


def scan_rows(amap: np.ndarray, labels: np.ndarray, image_labels: np.ndarray, masks: np.ndarray,
              samples) -> tuple[float, list[dict]]:
    base = M.pixel_auroc(masks, amap)
    top, total = amap.max(), masks.sum()
    normal_p99 = float(np.percentile(amap[labels == 0].astype(np.float32), 99))
    by_scan = scans(samples)
    scores = {scan: float(amap[index].max()) for scan, index in by_scan.items()}
    normal_scores = [scores[s] for s, index in by_scan.items() if not image_labels[index].any()]
    defective_scores = [scores[s] for s, index in by_scan.items() if image_labels[index].any()]
    rows = []
    for scan, index in by_scan.items():
        defect = masks[index]
        if not image_labels[index].any():
            above = sum(scores[scan] >= d for d in defective_scores)
            if above:
                rows.append({"scan": scan, "index": index, "normal": True, "outscores": above, "gain": 0.0})
            continue
        tiles = amap[index]  # a copy (fancy indexing): the scan's maps as they are
        found = tiles.copy()
        found[defect] = top
        amap[index] = found  # this defect found, for one AUROC; then put back
        gain = M.pixel_auroc(masks, amap) - base
        amap[index] = tiles
        rows.append({
            "scan": scan, "index": index, "normal": False, "share": defect.sum() / total,
            "median_vs_p99": float(np.median(tiles[defect].astype(np.float32))) / normal_p99 if defect.any() else np.nan,
            "gain": gain, "outscored_by": sum(n >= scores[scan] for n in normal_scores),
        })
    return base, sorted(rows, key=lambda r: -r["gain"])


def picture(rows: list[dict], amap: np.ndarray, masks: np.ndarray, samples, scale: float, path: Path) -> None:
    """Each listed scan's defect region (its mask's box and 64 px around it): image / map / outline."""
    panels = []
    for row in rows:
        source = samples[row["index"][0]].load_source()
        image = cv2.cvtColor(source, cv2.COLOR_RGB2GRAY) if source.ndim == 3 else source
        canvas, truth = np.zeros(image.shape[:2], np.float32), np.zeros(image.shape[:2], np.uint8)
        for i in row["index"]:
            x, y, w, h = samples[i].crop
            canvas[y:y + h, x:x + w] = cv2.resize(amap[i].astype(np.float32), (w, h))
            truth[y:y + h, x:x + w] = cv2.resize(masks[i].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        xs = np.nonzero(truth)[1] if truth.any() else np.array([int(canvas.max(axis=0).argmax())])
        x0, x1 = max(xs.min() - 64, 0), min(xs.max() + 64, image.shape[1])
        x1 = min(max(x1, x0 + 384), image.shape[1])
        shown = cv2.cvtColor(image[:, x0:x1], cv2.COLOR_GRAY2BGR)
        heat = cv2.cvtColor((np.clip(canvas[:, x0:x1] / scale, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        outline = shown.copy()
        contours, _ = cv2.findContours(truth[:, x0:x1], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(outline, contours, -1, (0, 0, 255), 1)
        panel = np.vstack([shown, heat, outline])
        cv2.putText(panel, Path(row["scan"]).stem, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1)
        panels.append(panel)
    height = max(p.shape[0] for p in panels)
    cv2.imwrite(str(path), np.hstack([cv2.copyMakeBorder(p, 0, height - p.shape[0], 0, 8, cv2.BORDER_CONSTANT) for p in panels]))


def evaluate_fabric(run: Path, data: Path, fabric: str, pictures: Path | None) -> dict:
    split = load_dataset(data, fabric)
    amap = aligned_maps(run, split)[0] * fabric_roi(split.test, 0)
    labels, masks, _, image_labels = bench.test_truth(split, amap.shape[1:])
    base, rows = scan_rows(amap, labels, image_labels, masks, split.test)
    defective = [r for r in rows if not r["normal"]]
    listed = defective[:LISTED] + [r for r in rows if r["normal"]]
    if pictures:
        pictures.mkdir(parents=True, exist_ok=True)
        scale = float(np.percentile(amap[labels == 0].astype(np.float32), 99.9))
        picture(listed, amap, masks, split.test, scale, pictures / f"gap-{fabric}.png")
    return {"pixel_auroc": base, "listed": listed}


def report(by_fabric: dict[str, dict], command: str) -> str:
    lines = [f"\nCommand: `{command}`.\n",
             "| fabric | pixel AUROC | scan | share of defect px | median on defect / normal p99 | pixel AUROC if found "
             "| normal scans above it |", "|---|---|---|---|---|---|---|"]
    for fabric, result in by_fabric.items():
        for i, r in enumerate(result["listed"]):
            head = f"| {fabric} | {result['pixel_auroc']:.3f} " if i == 0 else "| | "
            if r["normal"]:
                lines.append(f"{head}| {Path(r['scan']).stem} (normal: outscores {r['outscores']} defective scans) "
                             "| | | | |")
                continue
            lines.append(f"{head}| {Path(r['scan']).stem} | {r['share']:.0%} | {r['median_vs_p99']:.2f} "
                         f"| {result['pixel_auroc'] + r['gain']:.3f} (+{r['gain']:.3f}) | {r['outscored_by']} |")
    return "\n".join(lines)


def main() -> None:
    parser = bench.evaluation_parser(__doc__)
    parser.add_argument("--pictures", type=Path, help="folder for one picture per fabric of the listed scans")
    args = parser.parse_args()
    fabrics, by_fabric = bench.evaluate_runs(args, evaluate_fabric, args.pictures)
    chosen = f" --fabrics {' '.join(fabrics)}" if args.fabrics else ""
    emit(report(by_fabric, f"python benchmarks/aitex_gap.py --runs {args.runs}{chosen}"), args.write)


if __name__ == "__main__":
    main()
