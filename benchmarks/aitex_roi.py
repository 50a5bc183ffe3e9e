"""The fabric ROI on AITEX-256, side by side with the same trained models without it.

    python benchmarks/aitex_roi.py --runs runs/bench-aitex [--margin 24] [--write BENCHMARKS.md]

Evaluation only: `model.fabric_roi` post-processes the map (flat saturated background and a
margin around it score zero), so each fabric's trained default model (`<runs>/<fabric>/rd`, from
`benchmarks/aitex.py`) is evaluated twice on the protocol's test split.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

from fabricad.evaluation import evaluate_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aitex import KEYS, data_root  # noqa: E402
from service_load import emit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-aitex"))
    parser.add_argument("--data", type=Path, default=data_root(), help="AITEX folder (default: $FABRICAD_DATA/aitex)")
    parser.add_argument("--margin", type=int, default=24)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    fabrics = sorted(p.parent.parent.name for p in args.runs.glob("*/rd/model.ckpt"))
    if not fabrics:
        sys.exit(f"no trained runs under {args.runs} (run benchmarks/aitex.py first)")
    rows: dict[str, dict[str, dict]] = {"default": {}, "fabric ROI": {}}
    scratch = Path(tempfile.mkdtemp())
    for fabric in fabrics:
        for label, overrides in (("default", []), ("fabric ROI", ["model.fabric_roi=true", f"model.roi_margin={args.margin}"])):
            rows[label][fabric] = evaluate_checkpoint(args.runs / fabric / "rd", scratch / fabric / label, args.data, fabric,
                                                      progress=False, overrides=overrides)
            print(fabric, label, {k: round(rows[label][fabric][k], 4) for k in KEYS}, flush=True)
    lines = [
        f"\n## AITEX-256: the fabric ROI ({date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} CPU threads)\n",
        f"Command: `python benchmarks/aitex_roi.py --runs {args.runs} --margin {args.margin}` — the six-fabric default "
        "models above, evaluated without and with `model.fabric_roi` (no retraining).\n",
        "| fabric | variant | tile image AUROC | pixel AUROC | AUPRO | full-image AUROC |", "|---|---|---|---|---|---|",
    ]
    for label, by_fabric in rows.items():
        for fabric, m in by_fabric.items():
            lines.append(f"| {fabric} | {label} | " + " | ".join(f"{m[k]:.3f}" for k in KEYS) + " |")
        means = [np.mean([m[k] for m in by_fabric.values()]) for k in KEYS]
        lines.append(f"| **mean** | {label} | " + " | ".join(f"**{v:.3f}**" for v in means) + " |")
    emit("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
