"""Defect types on AITEX: the classifier against the geometry rules, leave-one-image-out.

    python -m benchmarks.defect_types [--data ../shared/data/aitex] [--out runs/defect-types] [--write BENCHMARKS.md]

Every defect of the six AITEX-256 fabrics' defective scans (a mask's parts closed over 9 px
gaps) is one example labelled by its file's defect code; the codes on at least three scans are
the types. Each scan's defects are named by a classifier fitted on every other scan's
(`fabricad.defect_types.fit.leave_one_image_out`, the same figures `fabricad train-types`
prints), and by the geometry rules in the same folds. Writes confusion matrices to OUT.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import emit, machine
from fabricad.data.aitex import CATEGORIES, load_aitex
from fabricad.defect_types.examples import AITEX_TYPES, dataset_examples
from fabricad.defect_types.fit import leave_one_image_out


def confusion_png(figures: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    kinds = sorted(figures["types"])
    truth = figures["predictions"]["truth"]
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5))
    for ax, key, title in zip(axes, ("classifier", "geometry_rules"), ("classifier", "geometry rules")):
        ConfusionMatrixDisplay.from_predictions(truth, figures["predictions"][key], labels=kinds, ax=ax,
                                                xticks_rotation=60, colorbar=False)
        ax.set_title(f"{title}: accuracy {figures[key]['accuracy']:.2f}, macro-F1 {figures[key]['macro_f1']:.2f}")
    fig.tight_layout()
    path = out / "confusion.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/aitex"))
    parser.add_argument("--out", type=Path, default=Path("runs/defect-types"))
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    examples = [e for c in CATEGORIES for e in dataset_examples(load_aitex(args.data, c))]
    figures = leave_one_image_out(examples, progress=True)
    (args.out / "figures.json").write_text(json.dumps(figures, indent=1))
    picture = confusion_png(figures, args.out)
    code = {name: c for c, name in AITEX_TYPES.items()}
    ours, rules = figures["classifier"], figures["geometry_rules"]
    lines = [f"## Defect types: classifier vs geometry rules ({machine()})", "",
             f"`python -m benchmarks.defect_types`: AITEX-256 fabrics {', '.join(CATEGORIES)}, "
             f"{figures['defects']} defects on {figures['images']} scans, leave-one-scan-out; the codes on ≥ 3 scans. "
             "The geometry rules' classes (spot, line along, line across) are each named by their training defects' "
             f"majority type. Confusion matrices: `{picture}`.", "",
             "| type (AITEX code) | defects | scans | classifier accuracy | geometry rules accuracy |", "|---|---|---|---|---|"]
    for kind, n in figures["types"].items():
        lines.append(f"| {kind} ({code.get(kind, '?')}) | {n['defects']} | {n['images']} | {ours['per_type'][kind]:.2f} | "
                     f"{rules['per_type'][kind]:.2f} |")
    lines.append(f"| **all: accuracy / macro-F1** | {figures['defects']} | {figures['images']} | "
                 f"**{ours['accuracy']:.2f} / {ours['macro_f1']:.2f}** | {rules['accuracy']:.2f} / {rules['macro_f1']:.2f} |")
    emit("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
