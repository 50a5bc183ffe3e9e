"""Do the default's heuristics still fire on AITEX-256 now that each checks its own premise?

    python benchmarks/aitex_premises.py          # FABRICAD_DATA (default ../shared/data) / aitex

For each fabric: the decision `fabricad train` makes (`fabricad.training.premises.check_premises`
on the training split, as the trainer calls it), and, for every rule it turns off, what that rule
would have done to the fabric's training and test tiles — blanked ROI pixels, aligned scans, bed
columns. Where a rule that goes off would have changed nothing on any tile, every map, score and
threshold of that fabric is the same as before, so the protocol figures are too (no retraining
needed to know it). Evaluation only: about a minute.
"""

from __future__ import annotations

import logging
import os
import platform
from datetime import date
from pathlib import Path

import numpy as np
import torch

from fabricad.config import FabricadConfig
from fabricad.data import load_dataset
from fabricad.data.aitex import CATEGORIES
from fabricad.data.alignment import TextureReference
from fabricad.data.fabric_edges import background_columns
from fabricad.data.images import image_size
from fabricad.models.base import fabric_keep
from fabricad.training.premises import check_premises
from fabricad.training.trainer import texture_reference


def data_root() -> Path:
    return Path(os.environ.get("FABRICAD_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")) / "aitex"


def roi_pixels(samples) -> int:
    """Pixels the fabric ROI blanks over `samples` (tiles), at native scale as AITEX is scored."""
    sources, total = {}, 0
    for s in samples:
        if s.path not in sources:
            sources[s.path] = s.load_source()
        x, y, w, h = s.crop
        tile = np.ascontiguousarray(sources[s.path][y : y + h, x : x + w])
        batch = torch.from_numpy(tile).permute(2, 0, 1)[None].float().div_(255.0)
        total += int((fabric_keep(batch, 0) == 0).sum())
    return total


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    print(f"{date.today()}, {platform.processor() or platform.machine()}\n")
    print("| fabric | texture alignment | fabric edges | fabric ROI | what the rules turned off would have done |")
    print("|---|---|---|---|---|")
    for fabric in CATEGORIES:
        config = FabricadConfig().with_overrides([f"data.path={data_root()}", f"data.category={fabric}"])
        split = load_dataset(config.data.path, fabric)
        sizes = [image_size(p) for p in {s.path: None for s in split.train}]
        decided = check_premises(config, split.train, sizes).model
        effects = []
        everything = split.train + split.test
        if not decided.fabric_roi:
            effects.append(f"ROI: {roi_pixels(everything)} px blanked on {len(everything)} tiles")
        if not decided.fabric_edges:
            scans = {s.path: s for s in everything}
            effects.append(f"edges: {sum(int(background_columns(s.load_source()).sum()) for s in scans.values())} bed columns")
        if not decided.align_texture:
            reference: TextureReference | None = texture_reference(split.train)
            scans = {s.path: s for s in split.test}
            moved = sum(not reference.align(s.load_source()).identity for s in scans.values()) if reference else 0
            effects.append(f"alignment: {moved} of {len(scans)} test scans aligned")
        on = {True: "on", False: "**off**"}
        print(f"| {fabric} | {on[decided.align_texture]} | {on[decided.fabric_edges]} | {on[decided.fabric_roi]} | "
              f"{'; '.join(effects) or '(all on)'} |", flush=True)


if __name__ == "__main__":
    main()
