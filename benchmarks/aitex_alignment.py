"""AITEX-256: trained models scored as they are and with texture alignment (`model.align_texture`).
Evaluation only: the maps of the scans that need no alignment are the cached ones.

    python benchmarks/aitex_alignment.py --runs runs/ab/base runs/ab/seed1-base --fabrics 02 03

For each run (RUNS/FABRIC/rd) and fabric: how many test scans the alignment mirrors, shears or
stretches (and by how much), and tile image AUROC, pixel AUROC, AUPRO and full-image AUROC without and with
it. Checkpoints written before the texture reference existed get it from the split's training
images, as training now does. `--patchcore`: the baseline of `aitex.py` (fitted on the run's
training tiles with its teacher) scored both ways too, since alignment is pre-processing that
would serve it as well.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from fabricad.evaluation import predict, texture_of
from fabricad.evaluation.evaluate import scan_alignments
from fabricad.training import load_model, read_checkpoint
from fabricad.training.trainer import holdout_split, texture_reference

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aitex import KEYS, data_root, fit_patchcore, map_metrics, test_truth  # noqa: E402
from aitex_fusion import cached_rd_maps  # noqa: E402

from fabricad.data import load_dataset  # noqa: E402


def compare(run: Path, fabric: str, patchcore: bool) -> list[str]:
    """Table rows for one run and fabric: the run's RD model, then (`patchcore`) the baseline."""
    split = load_dataset(data_root(), fabric)
    ckpt = read_checkpoint(run)
    reference = texture_of(ckpt) or texture_reference(split.train)
    size = ckpt.config.data.image_size
    truth = test_truth(split, size)

    def cells(maps: np.ndarray, scores: np.ndarray) -> str:
        metrics = map_metrics(maps.astype(np.float32), scores, truth)
        return " / ".join(f"{metrics[k]:.3f}" for k in KEYS)

    base_maps = cached_rd_maps(run, split)[0]
    base_scores = base_maps.reshape(len(base_maps), -1).max(axis=1).astype(np.float64)
    maps, scores = base_maps.copy(), base_scores.copy()
    aligned = scan_alignments(split.test, reference)
    index = [i for i, s in enumerate(split.test) if s.path in aligned]
    if index:  # only the scans alignment changes are scored again
        model, _ = load_model(run)
        model.teacher.use_runtime(ckpt.config.train.teacher_runtime, torch.device("cpu"))
        rescored = predict(model, [split.test[i] for i in index], size, progress=False, reference=reference)
        maps[index], scores[index] = rescored.maps, rescored.scores
    scans = len({s.path for s in split.test})
    mirrored = sum(a.mirror for a in aligned.values())
    shears = [abs(a.shear) for a in aligned.values() if a.shear]
    spread = f"{min(shears):.3f}" + (f"–{max(shears):.3f}" if max(shears) > min(shears) else "") if shears else ""
    sheared = f"{len(shears)} sheared by {spread}" if shears else "0 sheared"
    stretches = sorted({a.stretch for a in aligned.values() if a.stretch != 1.0})
    stretched = sum(a.stretch != 1.0 for a in aligned.values())
    sheared += f", {stretched} stretched by {'/'.join(f'{v:g}' for v in stretches)}" if stretched else ""
    rows = [f"| {fabric} | {run.parent.parent} | {len(aligned)} of {scans}: {mirrored} mirrored, {sheared} "
            f"| {cells(base_maps, base_scores)} | {cells(maps, scores)} |"]
    if patchcore:
        core = fit_patchcore(ckpt.config, holdout_split(split.train, ckpt.config)[0], size)
        both = [predict(core, split.test, size, progress=False, reference=ref) for ref in (None, reference)]
        rows.append(f"| {fabric} | PatchCore ({run.parent.parent}) | as above "
                    f"| {cells(both[0].maps, both[0].scores)} | {cells(both[1].maps, both[1].scores)} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="folders holding FABRIC/rd runs")
    parser.add_argument("--fabrics", nargs="+", default=["02", "03"])
    parser.add_argument("--patchcore", action="store_true", help="score the PatchCore baseline both ways too")
    args = parser.parse_args()
    print("| fabric | run | test scans aligned | as is: " + " / ".join(KEYS) + " | aligned |")
    print("|---|---|---|---|---|")
    for runs in args.runs:
        for fabric in args.fabrics:
            run = runs / fabric / "rd"
            if run.is_dir():
                print("\n".join(compare(run, fabric, args.patchcore)), flush=True)


if __name__ == "__main__":
    main()
