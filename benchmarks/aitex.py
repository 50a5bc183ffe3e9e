"""AITEX-256 benchmark: the default fabricad model vs a PatchCore-style baseline, per fabric.

    python -m benchmarks.aitex                       # all six fabrics, writes runs/bench-aitex/
    python -m benchmarks.aitex --fabrics 02 03 --set model.name=dbfad --no-baseline
    python -m benchmarks.aitex --write BENCHMARKS.md # also put the table into BENCHMARKS.md
    python -m benchmarks.aitex --out runs/bench-aitex --tabulate   # the table of finished runs again

Both methods use the same split (the AITEX-256 protocol), the same teacher and the same
evaluation code. Data: FABRICAD_DATA (default ../shared/data) / aitex.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from fabricad.baselines import PatchCore
from fabricad.config import FabricadConfig
from fabricad.data import load_dataset
from fabricad.data.aitex import CATEGORIES
from fabricad.data.tiling import magnification, tile_of
from fabricad.evaluation import compute_metrics, predict, texture_of, write_report
from fabricad.training import load_model, train
from fabricad.training.dataset import ImageDataset
from fabricad.training.trainer import holdout_split, select_device

KEYS = ("image_auroc", "pixel_auroc", "aupro", "full_image_auroc")


def data_root() -> Path:
    return Path(os.environ.get("FABRICAD_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")) / "aitex"


def run_fabric(fabric: str, overrides: list[str], out: Path, baseline: bool, sigmas: list[float] | None = None,
               report: bool = True, progress: bool = True) -> dict:
    config = FabricadConfig().with_overrides([f"data.path={data_root()}", f"data.category={fabric}", *overrides])
    run_dir = out / fabric
    started = time.perf_counter()
    result = train(config, run_dir / "rd", progress=progress)
    train_seconds = time.perf_counter() - started
    model, ckpt = load_model(run_dir / "rd")
    device = select_device(config.train.device)  # evaluate where training ran (a GPU host's sweeps)
    model.to(device)
    model.teacher.use_runtime(config.train.teacher_runtime, device)  # as `fabricad eval` does
    split = load_dataset(config.data.path, fabric)
    size = config.data.image_size
    rows = {}
    calibration = ckpt.score_stats.get("scores")
    for sigma in sigmas or [config.model.blur_sigma]:  # post-processing variants on the same trained model
        from fabricad.models.anomaly_map import AnomalyMapGenerator

        model.anomaly_map = AnomalyMapGenerator(config.model.map_mode, sigma).to(device)  # same model, other blur
        preds = predict(model, split.test, size, batch_size=8, device=device, progress=progress,
                        reference=texture_of(ckpt), fabric_edges=config.model.fabric_edges)
        family = config.model.name
        name = family if sigma == config.model.blur_sigma else f"{family}-sigma{sigma:g}"
        metrics = compute_metrics(preds, calibration if name == family else None)
        if name == family and report:
            write_report(run_dir / "rd" / "eval", preds, metrics, f"AITEX {fabric}")
        metrics.update(train_seconds=train_seconds, steps=result.steps, epochs=result.epochs)
        rows[name] = metrics
    if baseline:
        started = time.perf_counter()
        core = fit_patchcore(config, holdout_split(split.train, config)[0], size)
        fit_seconds = time.perf_counter() - started
        # The same pre-processing as the model it is compared with: scans aligned to the same
        # texture reference (alignment lifted PatchCore on fabric 02 even more than RD).
        preds = predict(core, split.test, size, batch_size=8, reference=texture_of(ckpt),
                        fabric_edges=config.model.fabric_edges)
        metrics = compute_metrics(preds, None)
        metrics.update(train_seconds=fit_seconds)
        rows["patchcore"] = metrics
    (run_dir / "results.json").write_text(json.dumps(rows, indent=2))
    return rows


def fit_patchcore(config: FabricadConfig, train_samples: list, size: tuple[int, int], sigma: float | None = None) -> PatchCore:
    """The baseline's memory bank from the RD run's own training tiles and teacher."""
    roi = config.model.roi_margin if config.model.fabric_roi else None  # the model's own post-processing
    core = PatchCore(config.model.teacher, roi_margin=roi, roi_scale=magnification(tile_of(train_samples), size),
                     **({} if sigma is None else {"sigma": sigma}))
    core.teacher.use_runtime(config.train.teacher_runtime, torch.device("cpu"))  # the same features, sooner
    dataset = ImageDataset(train_samples, size)
    core.fit(torch.stack([dataset[i] for i in range(j, min(j + 8, len(dataset)))]) for j in range(0, len(dataset), 8))
    return core


def table(results: dict[str, dict[str, dict]]) -> str:
    """Per fabric and method, and the means. The last column is what a mill would see on the line:
    defect recall with the threshold set on held-out normal training tiles for 1 % false alarms,
    and the false-alarm rate that threshold really gives on the test's normal tiles."""
    methods = sorted({m for rows in results.values() for m in rows}, key=lambda m: (m == "patchcore", m))
    head = ("| fabric | method | tile image AUROC | pixel AUROC | AUPRO | full-image AUROC | train s | ms/tile "
            "| recall at the 1 % FPR threshold (test FPR) |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]

    def mean(rows: list[dict], key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return float(np.mean(values)) if values else None

    def on_the_line(recall: float | None, fpr: float | None) -> str:
        return "n/a" if recall is None else f"{recall:.2f} ({fpr:.2f})"

    for method in methods:
        for fabric, rows in results.items():
            if method in rows:
                r = rows[method]
                vals = " | ".join(f"{r[k]:.3f}" if r.get(k) is not None else "n/a" for k in KEYS)
                lines.append(f"| {fabric} | {method} | {vals} | {r['train_seconds']:.0f} | {1000 * r['seconds_per_image']:.1f} "
                             f"| {on_the_line(r.get('recall_at_1pct_fpr'), r.get('test_fpr_at_calibrated_threshold'))} |")
        present = [rows[method] for rows in results.values() if method in rows]
        means = " | ".join(f"**{mean(present, k):.3f}**" for k in KEYS)
        lines.append(
            f"| **mean** | {method} | {means} | {mean(present, 'train_seconds'):.0f} | "
            f"{1000 * mean(present, 'seconds_per_image'):.1f} "
            f"| {on_the_line(mean(present, 'recall_at_1pct_fpr'), mean(present, 'test_fpr_at_calibrated_threshold'))} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fabrics", nargs="+", default=list(CATEGORIES))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-aitex"))
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--sigmas", type=float, nargs="*", default=[], help="extra blur sigmas to evaluate")
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    parser.add_argument("--tabulate", action="store_true",
                        help="only print the table of the runs already in --out (their results.json)")
    args = parser.parse_args()
    if args.tabulate:
        done = [f for f in args.fabrics if (args.out / f / "results.json").is_file()]
        print(table({f: json.loads((args.out / f / "results.json").read_text()) for f in done}))
        return
    if not data_root().is_dir():
        raise SystemExit(f"AITEX not found at {data_root()}; set FABRICAD_DATA")
    torch.set_num_threads(os.cpu_count() or 1)
    base_sigma = FabricadConfig().with_overrides(args.overrides).model.blur_sigma
    results = {}
    for fabric in args.fabrics:
        results[fabric] = run_fabric(fabric, args.overrides, args.out, not args.no_baseline, [base_sigma, *args.sigmas])
        print(table(results), flush=True)
    text = table(results)
    (args.out / "table.md").write_text(text)
    if args.write:
        header = (
            f"\n## AITEX-256 ({date.today().isoformat()}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPU threads, torch {torch.__version__})\n\n"
            f"Command: `python -m benchmarks.aitex {' '.join('--set ' + o for o in args.overrides)}`\n\n"
        )
        with args.write.open("a") as f:
            f.write(header + text + "\n")


if __name__ == "__main__":
    main()
