"""The default on folders of mixed-size texture photos, side by side: before (texture alignment
off by hand, since it crashed there), now (the default, each heuristic's premise checked), and
each image cut into native-scale tiles instead of resized (`data.whole_images=tile`).

    python -m benchmarks.mixed_sizes                          # twill, knit, felt; writes runs/bench-mixed/
    python -m benchmarks.mixed_sizes --fabrics felt --max-steps 100 --train-images 40
    python -m benchmarks.mixed_sizes --out runs/bench-mixed-s1 --seed 1 --variants before tiled   # a replicate
    python -m benchmarks.mixed_sizes --out runs/bench-mixed-large --defects large --variants now \
        --fabrics twill felt --sets model.map_max_stride=null model.blur_sigma=8   # large defects, map settings

The data are the generator's `Scene` photographs (`fabricad.data.synthetic`): each image a crop
of its own size (239–400 px a side), lit by a gradient, vignetted, some with a table beside the
material; the same seed for both variants, the same step budget, the product's own train and
eval functions. `--defects large` draws the generator's large, faint defects instead
(`LARGE_DEFECT_TYPES`); `--sets` evaluates each trained model again with those settings (one
row per setting), as `fabricad eval --set` would.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

from fabricad.config import FabricadConfig
from fabricad.data.synthetic import (
    DEFECT_TYPES,
    LARGE_DEFECT_TYPES,
    Scene,
    generate_category,
)
from fabricad.evaluation import evaluate_checkpoint
from fabricad.training import train

KEYS = ("image_auroc", "pixel_auroc", "aupro")
VARIANTS = {
    "before (alignment off by hand)": ["model.align_texture=false", "model.check_premises=false"],
    "now (the default: premises checked)": [],
    "tiled at native scale (data.whole_images=tile)": ["data.whole_images=tile"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-mixed"))
    parser.add_argument("--fabrics", nargs="+", default=["twill", "knit", "felt"])
    parser.add_argument("--train-images", type=int, default=120)
    parser.add_argument("--max-steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0, help="of the generated data and of training")
    parser.add_argument("--variants", nargs="+", choices=[v.split()[0] for v in VARIANTS], default=[v.split()[0] for v in VARIANTS])
    parser.add_argument("--defects", choices=["small", "large"], default="small",
                        help="the generator's default defects, or its large faint ones (LARGE_DEFECT_TYPES)")
    parser.add_argument("--sets", nargs="*", default=[], help="inference settings to evaluate each model with as well")
    args = parser.parse_args()
    table = {}
    for fabric in args.fabrics:
        data = args.out / "data"
        if not (data / fabric).is_dir():
            generate_category(data, fabric, n_train=args.train_images, n_test_good=20, n_test_defect=32,
                              seed=args.seed, scene=Scene(), progress=False,
                              defect_types=LARGE_DEFECT_TYPES if args.defects == "large" else DEFECT_TYPES)
        for variant, overrides in VARIANTS.items():
            if variant.split()[0] not in args.variants:
                continue
            run = args.out / fabric / variant.split()[0]
            config = FabricadConfig().with_overrides([f"data.path={data / fabric}", f"train.max_steps={args.max_steps}",
                                                      "train.max_minutes=null", f"train.seed={args.seed}", *overrides])
            record = run / "bench.json"
            if not record.is_file():  # a finished run is reused: --out of an earlier run adds only what is missing
                started = time.perf_counter()
                train(config, run, progress=False)
                seconds = time.perf_counter() - started
                metrics = evaluate_checkpoint(run, run / "eval", progress=False)
                record.write_text(json.dumps({**{k: metrics.get(k) for k in KEYS}, "train_s": seconds}))
            table[(fabric, variant)] = json.loads(record.read_text())
            print(fabric, variant, json.dumps(table[(fabric, variant)]), flush=True)
            for setting in args.sets:  # the same model, scored with another inference setting
                metrics = evaluate_checkpoint(run, run / f"eval-{setting.replace('=', '-')}", progress=False,
                                              overrides=[setting])
                table[(fabric, f"{variant}, {setting}")] = {**{k: metrics.get(k) for k in KEYS}, "train_s": None}
    print(f"\n{date.today()}, {platform.processor() or platform.machine()}, {args.max_steps} steps, "
          f"{args.train_images} training images per fabric\n")
    print("| fabric | variant | image AUROC | pixel AUROC | AUPRO | training s |")
    print("|---|---|---|---|---|---|")
    for (fabric, variant), row in table.items():
        seconds = "" if row["train_s"] is None else f"{row['train_s']:.0f}"
        print(f"| {fabric} | {variant} | " + " | ".join(f"{row[k]:.3f}" for k in KEYS) + f" | {seconds} |")
    for variant in dict.fromkeys(v for _, v in table):  # each variant (and setting) in the order it ran
        rows = [r for (_, v), r in table.items() if v == variant]
        print(f"| mean | {variant} | " + " | ".join(f"{sum(r[k] for r in rows) / len(rows):.3f}" for k in KEYS) + " | |")


if __name__ == "__main__":
    main()
