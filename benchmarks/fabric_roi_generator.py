"""What the fabric ROI blanks on the generator's fabrics: normal pixels and defect pixels.

    python benchmarks/fabric_roi_generator.py [--out runs/roi-generator] [--margin 0]

Why: the ROI takes flat, saturated regions for the scanner's background beyond the fabric. On a
backlit table a hole shows the lamp, flat saturated white, too. The shipped rule counts only
background that crosses the whole image (rows or columns); "any window" is the rule it replaced
(every flat saturated 9×9 window). A good rule blanks nothing here: none of these images shows
background. Last row: each fabric with a strip of scanner white across its left 32 columns,
which both rules must blank.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from fabricad.data import load_dataset
from fabricad.data.synthetic import FABRICS, generate_category
from fabricad.models.base import ROI_WINDOW, background_mask, flat_saturated, square_max
from fabricad.training.dataset import to_tensor


def any_window(x: torch.Tensor, margin: int) -> torch.Tensor:
    """The replaced rule: every flat (9×9) saturated window is background, wherever it lies."""
    return square_max(flat_saturated(x, ROI_WINDOW), 2 * (margin + ROI_WINDOW // 2) + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/roi-generator"))
    parser.add_argument("--margin", type=int, default=0)
    args = parser.parse_args()
    rules = {"shipped (crosses the image)": background_mask, "any window": any_window}
    print("| fabric | rule | normal px blanked | defect px blanked | strip of white blanked |\n|---|---|---|---|---|")
    for name in FABRICS:
        split = load_dataset(generate_category(args.out, name, seed=3, progress=False))
        images = torch.stack([to_tensor(s.load()) for s in split.train + split.test])
        defect = torch.from_numpy(np.stack([s.load_mask() if s.label else np.zeros(s.load().shape[:2], bool)
                                            for s in split.train + split.test]))[:, None]
        strip = images.clone()
        strip[..., :32] = 1.0
        for rule, mask_of in rules.items():
            blanked = mask_of(images, args.margin) > 0
            whole = (mask_of(strip, args.margin)[..., :32] > 0).float().mean()
            print(f"| {name} | {rule} | {int(blanked[~defect].sum())} of {int((~defect).sum())} "
                  f"| {int(blanked[defect].sum())} of {int(defect.sum())} | {whole:.0%} |", flush=True)


if __name__ == "__main__":
    main()
