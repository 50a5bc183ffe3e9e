"""Does a trained model's map depend on where the tile sits in the padded input it sees?

    python benchmarks/canvas_sensitivity.py --run runs/ab/base/03/rd --fabric 03 [--tiles 48]

Normal test tiles go through the model as trained (reflect padding p on every side: the canvas
of training) and on other canvases: more padding after the tile (the same tile, the same feature
grid, a larger input), the tile moved by 8 px inside a larger canvas (another grid phase), and
moved by 8 px on the training canvas (less padding before it). For each: the correlation of its
map with the trained canvas's map (the map of strides 8 and 16, before the blur) and the mean
of the tiles' maxima — the image score of normal fabric, which decides false alarms.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from fabricad.data import load_dataset
from fabricad.training import load_model
from fabricad.training.dataset import ImageDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aitex import data_root  # noqa: E402
from aitex_maps import canvas_maps  # noqa: E402


def tile_map(model, x: torch.Tensor, before: tuple[int, int], after: tuple[int, int]) -> np.ndarray:
    """The tile's map (B, H, W) of the scales that make the model's map, before the blur, when it
    has `before` (top, left) and `after` (bottom, right) padding."""
    maps = canvas_maps(model, x, before, after)[:, model.map_scales()].sum(1)
    h, w = x.shape[-2:]
    return maps[:, before[0] : before[0] + h, before[1] : before[1] + w].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--fabric", required=True)
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--tiles", type=int, default=48)
    args = parser.parse_args()
    model, ckpt = load_model(args.run)
    model.eval()
    model.teacher.use_runtime(ckpt.config.train.teacher_runtime, torch.device("cpu"))
    size = ckpt.config.data.image_size
    normals = [s for s in load_dataset(args.data, args.fabric).test if s.label == 0][: args.tiles]
    dataset = ImageDataset(normals, size)
    x = torch.stack([dataset[i] for i in range(len(dataset))])
    p, e = ckpt.config.model.pad, 2 * max(model.scale_strides())  # e: the bottleneck's stride
    canvases = {
        f"as trained: {p} px on every side": ((p, p), (p, p)),
        f"{e} px more after the tile (same grid)": ((p, p), (p + e, p + e)),
        f"moved 8 px within {e} px more (grid phase)": ((p + 8, p + 8), (p + e - 8, p + e - 8)),
        "moved 8 px on the trained canvas": ((p - 8, p - 8), (p + 8, p + 8)),
    }
    reference = None
    print(f"Command: `python benchmarks/canvas_sensitivity.py --run {args.run} --fabric {args.fabric} --tiles {len(normals)}`\n")
    print("| canvas | input | correlation with the trained canvas's map | mean normal tile score (max of map) |")
    print("|---|---|---|---|")
    for name, (before, after) in canvases.items():
        amap = tile_map(model, x, before, after)
        reference = amap if reference is None else reference
        corr = np.corrcoef(reference.ravel(), amap.ravel())[0, 1]
        print(f"| {name} | {size[0] + before[0] + after[0]}² | {corr:.3f} | {amap.max(axis=(1, 2)).mean():.3f} |", flush=True)


if __name__ == "__main__":
    main()
