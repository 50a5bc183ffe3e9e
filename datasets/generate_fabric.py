"""Generate synthetic fabric datasets (MVTec layout) — the same generator as `fabricad generate`.

    python datasets/generate_fabric.py --out /tmp/synthetic --fabric plain twill knit --size 256
    python datasets/generate_fabric.py --out /tmp/crops --fabric twill --size 250 400   # height width
    python datasets/generate_fabric.py --out /tmp/mono --fabric knit --size 128 --grayscale
    python datasets/generate_fabric.py --out /tmp/photos --fabric felt twill --photos   # mixed sizes, uneven light

Woven (plain, twill) and knitted textures in several colours and yarn pitches, with holes,
stains, broken and missing yarns, slubs, knots, folds and thick places, and exact masks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fabricad.data.synthetic import DEFECT_TYPES, FABRICS, Scene, generate_category


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fabric", nargs="+", default=["plain"], choices=sorted(FABRICS))
    parser.add_argument("--size", type=int, nargs="+", default=[256], metavar="PX",
                        help="image side, or height and width")
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--test-good", type=int, default=10)
    parser.add_argument("--test-defect", type=int, default=2 * len(DEFECT_TYPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grayscale", action="store_true", help="single-channel images (a monochrome camera)")
    parser.add_argument("--photos", action="store_true",
                        help="photographs: each image of its own size, lit by a gradient, vignetted, some beside a table")
    args = parser.parse_args()
    if len(args.size) > 2:
        parser.error("--size takes one side or a height and a width")
    size = (args.size[0], args.size[-1])
    for fabric in args.fabric:
        folder = generate_category(args.out, fabric, size=size, n_train=args.train,
                                   n_test_good=args.test_good, n_test_defect=args.test_defect, seed=args.seed,
                                   grayscale=args.grayscale, scene=Scene() if args.photos else None)
        print(folder)


if __name__ == "__main__":
    main()
