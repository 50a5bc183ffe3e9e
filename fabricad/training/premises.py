"""Which of the default's heuristics hold for this training set: decided once, before training.

The default carries rules tuned on AITEX line scans — texture alignment, fabric edges, the fabric
ROI — each of which rests on a premise about the images: a repeating weave in frames of one
size, scans much wider than tall with the machine bed beside the web, a flat saturated
background beyond the fabric's edge. On a folder of texture photos the premises may not hold,
and a rule applied where its premise fails costs: alignment crashed on mixed sizes and reshapes
what it cannot understand, an edge rule cuts real texture, the ROI blanks a defect that happens
to saturate a whole row. So each is checked here on the training images and turned off, with
one log line saying why, where it fails; the decision is saved with the model's configuration,
so evaluation, export and the service follow it. On AITEX every premise holds except the ROI's
on fabrics 04 and 06, whose scans never show the scanner's white — there the ROI blanks nothing,
in training or test, so turning it off changes no figure (BENCHMARKS.md).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from fabricad.config import FabricadConfig
from fabricad.data.alignment import PERIODIC, periodicity
from fabricad.data.fabric_edges import SCAN_ASPECT
from fabricad.data.samples import Sample
from fabricad.data.tiling import mixed_sizes
from fabricad.models.base import fabric_keep

log = logging.getLogger(__name__)

MOST_IMAGES = 32
"""Source images looked at (evenly spread): enough to see a background on one of them."""
SCANS = 0.9
"""Share of the images that must be scans (at least `SCAN_ASPECT` wide) for fabric edges."""


def sources_of(samples: list[Sample], most: int = MOST_IMAGES) -> list[Sample]:
    """One sample per source image, at most `most` of them, evenly spread."""
    sources = list({s.path: s for s in samples}.values())
    return sources[:: max(1, math.ceil(len(sources) / most))]


def has_background(image: np.ndarray) -> bool:
    """Whether the fabric ROI would blank anything of `image` (RGB uint8) at its own scale."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div_(255.0)
    return bool((fabric_keep(x, 0) == 0).any())


def check_premises(config: FabricadConfig, samples: list[Sample], sizes: list[tuple[int, int]]) -> FabricadConfig:
    """`config` with each heuristic whose premise the training images fail turned off.
    `sizes`: (height, width) of every training source image."""
    model = config.model
    if not model.check_premises or not samples:
        return config
    images = [s.load_source() for s in sources_of(samples)]
    off: dict[str, str] = {}
    if model.align_texture:
        if mixed_sizes(sizes):
            off["align_texture"] = "the training images are of mixed sizes, not frames of one camera"
        else:
            repeat = float(np.median([periodicity(i) for i in images]))
            if repeat < PERIODIC:
                off["align_texture"] = (f"the texture has no repeating weave to align (periodicity {repeat:.2f}, "
                                        f"a weave shows at least {PERIODIC})")
    if model.fabric_edges:
        scans = sum(w >= SCAN_ASPECT * h for h, w in sizes)
        if scans < SCANS * len(sizes):
            off["fabric_edges"] = (f"{len(sizes) - scans} of {len(sizes)} training images are not line scans "
                                   f"(at least {SCAN_ASPECT:g}x as wide as tall)")
    if model.fabric_roi and not any(has_background(i) for i in images):
        off["fabric_roi"] = (f"none of {len(images)} training images shows a flat, saturated background beside "
                             "the material, so there is nothing for it to blank but defects")
    for name, why in off.items():
        log.warning("model.%s off: %s (set model.check_premises=false to keep it)", name, why)
    if not off:
        return config
    return config.model_copy(update={"model": model.model_copy(update={k: False for k in off})})
