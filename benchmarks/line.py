"""The line benchmark on AITEX-256: false alarms per 100 m, defect recall, localisation and
grade agreement at the operating points the product offers, per fabric and as the mean.

    python -m benchmarks.aitex --no-baseline --out runs/bench-aitex   # the six trained defaults
    python -m benchmarks.line --runs runs/bench-aitex [--mm-per-px 0.25] [--rolls 20] [--write BENCHMARKS.md]

Each fabric's checkpoint is evaluated as `fabricad eval --line` evaluates it
(`fabricad.evaluation.line`: rolls simulated from the test scans in a seeded order, a teach-in on
each roll's first good scans); every operating point is judged on the same rolls.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.common import emit, machine
from fabricad.data.aitex import CATEGORIES
from fabricad.evaluation import evaluate_checkpoint
from fabricad.evaluation.line import LineSettings

COLUMNS = ("false_alarms_per_100_m", "defect_recall", "localisation_mm_median", "grade_agreement")


def mean_of(rows: list[dict], key: str) -> float | None:
    """The mean over the fabrics that have the figure (no defect found: no localisation)."""
    values = [r[key] for r in rows if r[key] is not None]
    return float(np.mean(values)) if values else None


def cell(r: dict) -> str:
    where = "n/a" if r["localisation_mm_median"] is None else f"{r['localisation_mm_median']:.1f}"
    recall = "n/a" if r["defect_recall"] is None else f"{r['defect_recall']:.2f}"
    return f"{r['false_alarms_per_100_m']:.0f} / {recall} / {where} / {r['grade_agreement']:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-aitex"), help="benchmarks.aitex's --out")
    parser.add_argument("--fabrics", nargs="+", default=list(CATEGORIES))
    parser.add_argument("--mm-per-px", type=float, default=0.25)
    parser.add_argument("--rolls", type=int, default=20)
    parser.add_argument("--roll-length-m", type=float, default=25.0)
    parser.add_argument("--selvedge-mm", type=float, default=25.0, help="the selvedge band measured (0: not measured)")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    settings = LineSettings(mm_per_px=args.mm_per_px, rolls=args.rolls, roll_length_m=args.roll_length_m,
                            selvedge_mm=args.selvedge_mm)
    results = {}
    for fabric in args.fabrics:
        run = args.runs / fabric / "rd"
        results[fabric] = evaluate_checkpoint(run, run / "eval-line", progress=False, line=settings)["line"]
        print(fabric, results[fabric]["strategies"], flush=True)
    names = list(next(iter(results.values()))["strategies"])
    lines = [f"## Line benchmark: false alarms per 100 m at a defect recall ({machine()})", "",
             f"`python -m benchmarks.line --runs {args.runs} --mm-per-px {args.mm_per_px:g} --rolls {args.rolls} "
             f"--roll-length-m {args.roll_length_m:g}`: per fabric {args.rolls} rolls of {args.roll_length_m:g} m at "
             f"{args.mm_per_px:g} mm/px (assumed), teach-in on each roll's first {settings.teach_in_frames} good scans for "
             f"{settings.target_alarms_per_100_m:g} alarms / 100 m; size rule ≥ {settings.min_area_mm2:g} mm² and "
             f"≥ {settings.min_length_mm:g} mm; {settings.zones} zones; selvedge band {settings.selvedge_mm:g} mm. "
             "Cells: false alarms / 100 m, defect recall, "
             "median localisation mm (n/a: nothing found), grade agreement.", "",
             "| operating point | " + " | ".join(args.fabrics) + " | mean |", "|---|" + "---|" * (len(args.fabrics) + 1)]
    for name in names:
        cells, rows = [], [results[f]["strategies"][name] for f in args.fabrics]
        for r in rows + [{k: mean_of(rows, k) for k in COLUMNS}]:
            cells.append(cell(r))
        cells[-1] = f"**{cells[-1]}**"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    shares = {name: [results[f]["strategies"][name].get("false_alarm_share_at_edges") for f in args.fabrics]
              for name in names}
    shares = {name: [v for v in values if v is not None] for name, values in shares.items()}
    if any(shares.values()):
        lines += ["", f"Share of the false alarms within {settings.selvedge_mm:g} mm of a fabric edge (mean over the "
                      "fabrics that have alarms): " + "; ".join(f"{name} {np.mean(v):.2f}" for name, v in shares.items() if v) + "."]
    good = ", ".join(f"{f}: {results[f]['distinct_good_m']:g} m" for f in args.fabrics)
    lines += ["", f"Distinct good fabric behind the rates (normal test scans): {good}."]
    emit("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
