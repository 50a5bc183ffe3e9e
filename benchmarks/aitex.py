"""AITEX-256 benchmark: the default fabricad model vs a PatchCore-style baseline, per fabric.

    python benchmarks/aitex.py                       # all six fabrics, writes runs/bench-aitex/
    python benchmarks/aitex.py --fabrics 02 03 --set model.name=dbfad --no-baseline
    python benchmarks/aitex.py --write BENCHMARKS.md # also put the table into BENCHMARKS.md
    python benchmarks/aitex.py --out runs/bench-aitex --tabulate   # the table of finished runs again

Both methods use the same split (the AITEX-256 protocol), the same teacher and the same
evaluation code. Data: FABRICAD_DATA (default ../shared/data) / aitex.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
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


def trained_fabrics(runs: Path, fabrics: list[str] | None) -> list[str]:
    """The fabrics asked for, or every fabric with a trained model under `runs`."""
    found = fabrics or sorted(p.parent.parent.name for p in runs.glob("*/rd/model.ckpt"))
    if not found:
        sys.exit(f"no trained runs under {runs} (run benchmarks/aitex.py first)")
    return found


def test_truth(split, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Labels, masks at the network's size, source images of a split's test tiles, and each
    tile's full-image label (`Sample.full_image_label`)."""
    from fabricad.evaluation.evaluate import mask_at

    labels = np.array([s.label for s in split.test], dtype=int)
    masks = np.stack([mask_at(s, size) if s.label and s.mask_paths else np.zeros(size, bool) for s in split.test])
    return labels, masks, [s.group or str(s.path) for s in split.test], np.array([s.full_image_label for s in split.test])


def map_metrics(amap: np.ndarray, scores: np.ndarray, truth: tuple[np.ndarray, np.ndarray, list[str], np.ndarray]) -> dict[str, float]:
    """The four protocol figures (`KEYS`) of one variant's maps and tile scores."""
    from fabricad.inference import metrics as M

    labels, masks, groups, full_image_labels = truth
    image_labels, image_scores = M.group_max(groups, full_image_labels, scores)
    return {"image_auroc": M.auroc(labels, scores), "pixel_auroc": M.pixel_auroc(masks, amap),
            "aupro": M.aupro(masks, amap), "full_image_auroc": M.auroc(image_labels, image_scores)}


def score_variants(fabric: str, candidates: dict[str, tuple[np.ndarray, np.ndarray]],
                   truth: tuple[np.ndarray, np.ndarray, list[str], np.ndarray]) -> dict[str, dict]:
    """Each variant's (test maps, held-out normal maps): the protocol figures, and the recall and
    test false-alarm rate at the threshold its held-out maps calibrate for 1 % (`recall`,
    `test_fpr`), printed as they come."""
    from fabricad.inference import metrics as M

    results = {}
    for variant, (amap, normal) in candidates.items():
        scores = amap.reshape(len(amap), -1).max(1).astype(np.float64)
        results[variant] = map_metrics(amap, scores, truth)
        threshold = M.threshold_for_fpr(normal.reshape(len(normal), -1).max(1), 0.01)
        recall, false_alarms = M.rates_at(truth[0], scores, threshold)
        results[variant].update(recall=recall, test_fpr=false_alarms)
        print(fabric, variant, {k: round(v, 4) for k, v in results[variant].items()}, flush=True)
    return results


def recall_lines(by_fabric: dict[str, dict[str, dict]], names: list[str]) -> list[str]:
    """Markdown lines: the `score_variants` recall (test false-alarm rate) of each variant and fabric."""
    fabrics = list(by_fabric)
    rates = {v: [(by_fabric[f][v]["recall"], by_fabric[f][v]["test_fpr"]) for f in fabrics] for v in names}
    return ["", "Recall at the threshold for 1 % false alarms on the held-out tiles (test false-alarm rate):", "",
            *rates_table("variant", rates, fabrics)]


def evaluation_parser(doc: str, runs: Path | None = None) -> argparse.ArgumentParser:
    """The command line every evaluation-only comparison shares: --runs, --data, --fabrics, --write."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=runs, required=runs is None)
    parser.add_argument("--data", type=Path, default=data_root(), help="AITEX folder (default: $FABRICAD_DATA/aitex)")
    parser.add_argument("--fabrics", nargs="*")
    parser.add_argument("--write", type=Path)
    return parser


def evaluate_runs(args: argparse.Namespace, evaluate_fabric, *extra) -> tuple[list[str], dict[str, dict]]:
    """The fabrics chosen on the command line (or every trained one under --runs), and for each
    `evaluate_fabric(run, data, fabric, *extra)`, with gradients off: what every evaluation-only
    comparison does before it tabulates."""
    torch.set_grad_enabled(False)
    fabrics = trained_fabrics(args.runs, args.fabrics)
    return fabrics, {fabric: evaluate_fabric(args.runs / fabric / "rd", args.data, fabric, *extra) for fabric in fabrics}


def rates_table(name: str, rows: dict[str, list[tuple[float, float]]], fabrics: list[str], fpr_digits: int = 2) -> list[str]:
    """Markdown lines: per row (a variant, a rule) and fabric, defect recall and in brackets the
    test's false-alarm rate at a calibrated threshold, then their means."""
    lines = [f"| {name} | " + " | ".join(fabrics) + " | mean |", "|---|" + "---|" * (len(fabrics) + 1)]
    for row, cells in rows.items():
        cells = [*cells, tuple(float(np.mean(c)) for c in zip(*cells))]
        lines.append(f"| {row} | " + " | ".join(f"{r:.2f} ({f:.{fpr_digits}f})" for r, f in cells) + " |")
    return lines


def variant_tables(by_fabric: dict[str, dict[str, dict]], names: list[str]) -> list[str]:
    """Markdown lines: the variants' means over the fabrics, then every fabric's cells
    (tile / pixel / AUPRO / full-image AUROC), for the evaluation-only comparisons."""
    fabrics = list(by_fabric)
    lines = ["| variant | tile image AUROC | pixel AUROC | AUPRO | full-image AUROC |", "|---|---|---|---|---|"]
    for name in names:
        means = [np.mean([by_fabric[f][name][k] for f in fabrics]) for k in KEYS]
        lines.append(f"| {name} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    lines += ["", "| fabric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for f in fabrics:
        lines.append(f"| {f} | " + " | ".join("/".join(f"{by_fabric[f][name][k]:.3f}" for k in KEYS) for name in names) + " |")
    return lines


def variant_report(title: str, script: str, options: str, args: argparse.Namespace, fabrics: list[str],
                   by_fabric: dict[str, dict[str, dict]], names: list[str]) -> str:
    """The Markdown of an evaluation-only comparison: heading with date and machine, the command
    that reproduces it (`script` with --runs, `options` and --fabrics when chosen), the tables."""
    chosen = f" --fabrics {' '.join(fabrics)}" if args.fabrics else ""
    return "\n".join([
        f"\n## AITEX-256: {title} ({date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} CPU threads)\n",
        f"Command: `python benchmarks/{script} --runs {args.runs}{options}{chosen}` — the trained models, evaluated "
        f"only; means over fabrics {', '.join(fabrics)}.\n",
        *variant_tables(by_fabric, names),
    ])


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
            f"Command: `python benchmarks/aitex.py {' '.join('--set ' + o for o in args.overrides)}`\n\n"
        )
        with args.write.open("a") as f:
            f.write(header + text + "\n")


if __name__ == "__main__":
    main()
