"""The held-out share of a fabric's normal images: what early stopping watches and the threshold
is calibrated on. Training, evaluation, export and the benchmarks must draw the same share from the
same images, so the rule lives here, below all of them (no torch)."""

from __future__ import annotations

import math
import random

from fabricad.config import FabricadConfig
from fabricad.data.samples import Sample


def split_holdout(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Hold out whole source images (not tiles of them) so held-out tiles are truly unseen."""
    groups = sorted({s.group or str(s.path) for s in samples})
    count = math.ceil(len(groups) * fraction) if fraction > 0 and len(groups) > 1 else 0
    held = set(random.Random(seed).sample(groups, count)) if count else set()
    return [s for s in samples if (s.group or str(s.path)) not in held], [
        s for s in samples if (s.group or str(s.path)) in held
    ]


def holdout_split(samples: list[Sample], config: FabricadConfig) -> tuple[list[Sample], list[Sample]]:
    """The run's own train / held-out partition (its fraction and seed): what export and the
    benchmarks must reuse to calibrate on the images training held out."""
    return split_holdout(samples, config.data.holdout_fraction, config.train.seed)
