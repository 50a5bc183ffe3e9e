"""Convert any dataset fabricad reads (AITEX native, TILDA class folders, plain folders) to MVTec
AD layout, e.g. to use it with other tools or to freeze a split.

    python datasets/to_mvtec.py --data ../shared/data/aitex --category 02 --out /tmp/aitex02
    python datasets/to_mvtec.py --data path/to/tilda/c1 --out /tmp/tilda-c1

Tiles (AITEX-256) become separate images; masks are written for defective samples that have
them (TILDA has none, so its ground_truth folder stays empty).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fabricad.data import load_dataset
from fabricad.data.samples import Sample


def sample_name(sample: Sample) -> str:
    stem = sample.path.stem
    return f"{stem}_x{sample.crop[0]:04d}_y{sample.crop[1]:04d}" if sample.crop else stem


def convert(data: Path, category: str | None, out: Path) -> Path:
    split = load_dataset(data, category)
    target = out / (category or split.name)
    jobs = [("train", s) for s in split.train] + [("test", s) for s in split.test]
    for part, sample in tqdm(jobs, desc=f"converting {split.name}", unit="img"):
        image = sample.load()
        defect = "good" if sample.label == 0 else sample.defect_type
        path = target / part / defect / f"{sample_name(sample)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if sample.label and sample.mask_paths:
            mask = sample.load_mask()
            mask_path = target / "ground_truth" / defect / f"{sample_name(sample)}_mask.png"
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mask_path), mask.astype(np.uint8) * 255)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--category")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(convert(args.data, args.category, args.out))


if __name__ == "__main__":
    main()
