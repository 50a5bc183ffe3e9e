"""Where a trained model's AITEX-256 tile errors come from: by column of the scan, and by source.

    python benchmarks/aitex_errors.py --runs runs/ab/base [--fabrics 03 02 00] [--write BENCHMARKS.md]

Evaluation only, on the maps cached by `aitex_fusion.py` (`<run>/fusion-cache/rd.npz`, computed
if absent). A 4096-wide AITEX scan is 16 tiles across the loom, and the protocol's normal test
tiles come from two sources: the six test-normal images of the roll and the clean tiles of the
defective images. For every tile column it prints the normal tiles' mean and highest score from
each source, the defective tiles there, and the tile AUROC with that column left out; then the
tile AUROC against each source of normal tiles alone; then, per image, the median score of its
clean mid-scan tiles beside its texture's dominant spatial frequency (a twill's diagonal: the
same weave sheared, stretched or mirrored moves it). Why: the means say how far off the targets
the default is, not where. If the false alarms sit in a few columns (the fabric's ends) or in one
source (images taken differently), no change to the student fixes them the way a change to what
is inspected would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from fabricad.data import load_dataset
from fabricad.inference import metrics as M

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aitex import evaluation_parser, test_truth, trained_fabrics  # noqa: E402
from aitex_fusion import cached_rd_maps  # noqa: E402
from service_load import emit  # noqa: E402


def dominant_frequency(path: Path, columns: slice = slice(1536, 2560)) -> tuple[float, float]:
    """(cycles per pixel down, across) of the strongest wave in the middle of a scan, from the
    half-plane of its Hann-windowed spectrum, the lowest frequencies left out."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)[:, columns].astype(np.float64)
    image -= image.mean()
    h, w = image.shape
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(image * np.outer(np.hanning(h), np.hanning(w)))))
    spectrum[: h // 2] = 0  # one half-plane: the spectrum of a real image is symmetric
    spectrum[h // 2 : h // 2 + 3, w // 2 - 8 : w // 2 + 9] = 0  # the slowest waves: shading, not weave
    y, x = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    return (y - h // 2) / h, (x - w // 2) / w


def geometry(frequency: tuple[float, float], trained: list[tuple[float, float]], tolerance: float = 0.012) -> str:
    """'as trained' when the dominant wave is one a training image has, 'mirrored' when it is
    one's mirror image (across frequency negated), else 'other angle or scale'."""
    def near(a, b):
        return abs(a[0] - b[0]) <= tolerance and abs(a[1] - b[1]) <= tolerance

    if any(near(frequency, f) for f in trained):
        return "as trained"
    if any(near(frequency, (fy, -fx)) for fy, fx in trained):
        return "mirrored"
    return "other angle or scale"


def image_table(t: dict, shown: int = 6) -> list[str]:
    """Per geometry of the test images' texture, how their clean mid-scan tiles score; then the
    images that score highest and lowest, with their dominant frequency."""
    split = t["split"]
    width = max(x + w for x, _, w, _ in (s.crop for s in split.test))
    middle = (t["columns"] >= width // 4) & (t["columns"] < 3 * width // 4) & (t["labels"] == 0)
    paths = np.array([s.path for s in split.test])
    medians = {path: float(np.median(t["scores"][middle & (paths == path)])) for path in dict.fromkeys(paths[middle])}
    trained = [dominant_frequency(p) for p in dict.fromkeys(s.path for s in split.train)]
    frequency = {path: dominant_frequency(path) for path in medians}
    kinds = {path: geometry(frequency[path], trained) for path in medians}
    lines = ["| test images' texture vs the training images' | images | their clean mid-scan tiles: median score |",
             "|---|---|---|"]
    for kind in ("as trained", "other angle or scale", "mirrored"):
        group = [medians[p] for p in medians if kinds[p] == kind]
        lines.append(f"| {kind} | {len(group)} | {np.median(group):.2f} |" if group else f"| {kind} | 0 | – |")
    order = sorted(medians, key=medians.get, reverse=True)
    lines += ["", "| test image | clean mid-scan tiles: median score | dominant frequency (down, across; cycles/px) | texture |",
              "|---|---|---|---|"]
    for path in order[:shown] + ([None] if len(order) > 2 * shown else []) + order[-shown:]:
        if path is None:
            lines.append("| … | | | |")
            continue
        dy, dx = frequency[path]
        lines.append(f"| {path.name} | {medians[path]:.2f} | {dy:+.3f}, {dx:+.3f} | {kinds[path]} |")
    return lines


def tile_scores(run: Path, data: Path, fabric: str):
    """Each test tile's score (its map's maximum), label, column and whether it comes from a
    defective image; the held-out normal tiles' scores; the split they belong to."""
    split = load_dataset(data, fabric)
    test, normal = cached_rd_maps(run, split)
    labels, _, _, image_labels = test_truth(split, test.shape[1:])
    return {
        "scores": test.reshape(len(test), -1).max(1).astype(np.float64),
        "labels": labels,
        "columns": np.array([s.crop[0] for s in split.test]),
        "from_defective": image_labels.astype(bool),
        "held_out": normal.reshape(len(normal), -1).max(1).astype(np.float64),
        "split": split,
    }


def column_table(fabric: str, t: dict) -> tuple[list[str], dict]:
    scores, labels, columns, from_defective = t["scores"], t["labels"], t["columns"], t["from_defective"]
    overall = M.auroc(labels, scores)
    lines = [f"Fabric {fabric}: tile AUROC {overall:.3f}; held-out normal tiles (training images) score "
             f"{np.mean(t['held_out']):.3f} on average, at most {np.max(t['held_out']):.3f}.", "",
             "| column (px) | test-normal images: mean / max | defective images' clean tiles: mean / max "
             "| defective tiles: n, mean | tile AUROC without this column |",
             "|---|---|---|---|---|"]

    def stats(selected: np.ndarray) -> str:
        return f"{scores[selected].mean():.2f} / {scores[selected].max():.2f}" if selected.any() else "–"

    worst = (None, overall)
    for x in np.unique(columns):
        here = columns == x
        normal = here & (labels == 0)
        defective = here & (labels == 1)
        without = M.auroc(labels[~here], scores[~here])
        worst = max(worst, (int(x), without), key=lambda w: w[1])
        lines.append(f"| {x} | {stats(normal & ~from_defective)} | {stats(normal & from_defective)} | "
                     f"{defective.sum()}, {f'{scores[defective].mean():.2f}' if defective.any() else '–'} | {without:.3f} |")
    positives = labels == 1
    by_source = {name: M.auroc(labels[positives | (sel & ~positives)], scores[positives | (sel & ~positives)])
                 for name, sel in (("test_normal", ~from_defective), ("defective_clean", from_defective))}
    summary = {"tile_auroc": overall, "worst_column": worst[0], "without_worst_column": worst[1], **by_source}
    return lines, summary


def main() -> None:
    args = evaluation_parser(__doc__).parse_args()
    torch.set_grad_enabled(False)
    fabrics = trained_fabrics(args.runs, args.fabrics)
    sections, summaries = [], {}
    for fabric in fabrics:
        tiles = tile_scores(args.runs / fabric / "rd", args.data, fabric)
        lines, summaries[fabric] = column_table(fabric, tiles)
        sections += ["", *lines, "", *image_table(tiles)]
    chosen = f" --fabrics {' '.join(fabrics)}" if args.fabrics else ""
    head = [f"\nCommand: `python benchmarks/aitex_errors.py --runs {args.runs}{chosen}` (evaluation only).\n",
            "| fabric | tile AUROC | without its worst column (px) | normal tiles only from test-normal images "
            "| only defective images' clean tiles |", "|---|---|---|---|---|"]
    head += [f"| {f} | {s['tile_auroc']:.3f} | {s['without_worst_column']:.3f} ({s['worst_column']}) | "
             f"{s['test_normal']:.3f} | {s['defective_clean']:.3f} |"
             for f, s in summaries.items()]
    emit("\n".join(head + sections), args.write)


if __name__ == "__main__":
    main()
