"""What a teach-in on the line gives against the threshold shipped in the bundle: evaluation only.

    python benchmarks/aitex_teach_in.py --runs runs/bench-aitex [--fabrics 02 03] [--write BENCHMARKS.md]

Why: the bundle's threshold comes from the held-out training tiles (32 on AITEX-256: two scans),
and on the test's normal tiles it gave about 8 % false alarms where 1 % was asked. The service's
teach-in sets the threshold instead from the scores of frames the line shows while it runs good
fabric. The AITEX test set stands in for the line: its scans are split in two by name (every other
scan). The normal tiles of the first half are the teach-in's good fabric (a teach-in takes the
frames of cloth declared good; here the defective tiles of those scans are left out, as an operator
would stop a teach-in over a visible fault); the second half is the line afterwards, where both
thresholds are scored — false alarms on its normal tiles, recall on its defective tiles — and
then the halves swap. Maps are the shipped default's, as `fabricad eval` scores them with the
fabric ROI (margin 0), cached by `aitex_scan_level.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from fabricad.data import load_dataset
from fabricad.inference import metrics as M
from fabricad.training import load_model
from fabricad.training.trainer import holdout_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aitex as bench  # noqa: E402
from aitex_context import fabric_roi  # noqa: E402
from aitex_scan_level import aligned_maps, scans  # noqa: E402
from service_load import emit  # noqa: E402

TARGET_FPR = 0.01
RULES = ["bundle (held-out training tiles)", "teach-in on the other half's good tiles"]


def evaluate_fabric(run: Path, data: Path, fabric: str) -> dict:
    split = load_dataset(data, fabric)
    _, holdout = holdout_split(split.train, load_model(run)[1].config)
    test, normal = aligned_maps(run, split)
    test_scores = (test.astype(np.float32) * fabric_roi(split.test)).reshape(len(test), -1).max(1)
    held_scores = (normal.astype(np.float32) * fabric_roi(holdout)).reshape(len(normal), -1).max(1)
    labels = np.array([s.label for s in split.test])
    names = sorted(scans(split.test))
    halves = [np.isin([s.group or str(s.path) for s in split.test], names[k::2]) for k in (0, 1)]
    bundle = M.threshold_for_fpr(held_scores, TARGET_FPR)
    cells = {rule: [] for rule in RULES}
    taught = []
    for teach, line in (halves, halves[::-1]):
        good = test_scores[teach & (labels == 0)]
        taught.append(len(good))
        for rule, threshold in zip(RULES, (bundle, M.threshold_for_fpr(good, TARGET_FPR))):
            cells[rule].append(M.rates_at(labels[line], test_scores[line], threshold))
    result = {rule: tuple(float(np.mean(v)) for v in zip(*pairs)) for rule, pairs in cells.items()}
    print(fabric, result, "teach-in tiles", taught, flush=True)
    return {"rates": result, "held_out": len(held_scores), "taught": taught}


def main() -> None:
    args = bench.evaluation_parser(__doc__).parse_args()
    fabrics, by_fabric = bench.evaluate_runs(args, evaluate_fabric)
    rows = {rule: [by_fabric[f]["rates"][rule] for f in fabrics] for rule in RULES}
    counts = ", ".join(f"{f}: {by_fabric[f]['held_out']} held-out, {'/'.join(map(str, by_fabric[f]['taught']))} taught"
                       for f in fabrics)
    emit("\n".join([
        "\n## AITEX-256: teach-in on the line vs the bundle's threshold\n",
        f"Command: `python benchmarks/aitex_teach_in.py --runs {args.runs}`. Recall on the other half's defective tiles "
        f"(its false-alarm rate on normal tiles) at a threshold set for {TARGET_FPR:.0%} false alarms; mean of the two "
        "halves.\n",
        *bench.rates_table("threshold from", rows, fabrics, fpr_digits=3),
        "", f"Tiles behind each threshold: {counts}.", "",
    ]), args.write)


if __name__ == "__main__":
    main()
