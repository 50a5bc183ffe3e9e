"""INT8 calibration variants side by side: which keeps the tile AUROC of the fp32 graph.

    python -m benchmarks.int8_calibration --model runs/bench-lite1-default/02/rd     # every variant, one model
    python -m benchmarks.int8_calibration --runs runs/bench-lite1-default            # shipped INT8, every fabric

Quantises the model's ONNX graph several ways with `fabricad export`'s own `quantize_int8` (ONNX
Runtime static QDQ, per-channel weights, the anomaly map always in float) and reports tile image
AUROC on the checkpoint's test tiles and ONNX Runtime throughput at batch 16 for each.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort
import torch

from benchmarks.inference_speed import test_tiles, throughput, tile_auroc
from fabricad.data import load_dataset
from fabricad.export.onnx_export import export_fp32, quantize_int8
from fabricad.training import load_model
from fabricad.training.dataset import ImageDataset
from fabricad.training.trainer import holdout_split

SHIPPED = "as shipped: MinMax, first 32 training tiles"


def compare(model_path: Path, threads: int, only: list[str] | None = None, seconds: float = 5.0) -> list[tuple[str, float, float]]:
    """(graph, tile AUROC, tiles/s at batch 16) for fp32 and each INT8 variant of one trained model
    (`only`: the shipped one and these)."""
    model, ckpt = load_model(model_path)
    split = load_dataset(ckpt.config.data.path, ckpt.config.data.category)
    train, _ = holdout_split(split.train, ckpt.config)
    size = tuple(ckpt.config.data.image_size)
    tmp = Path(tempfile.mkdtemp())
    fp32 = tmp / "fp32.onnx"
    export_fp32(model, size, fp32)
    convs = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"]
    heads = [c for c in convs if "/head/" in c]
    last_of_stage = {}
    for c in convs:  # the teacher's last projection in each stage: the features the student copies
        match = re.match(r"/model/teacher/body/blocks\.(\d+)/.*conv_pwl/Conv", c)
        if match:
            last_of_stage[match.group(1)] = c
    teacher_outputs = list(last_of_stage.values())
    stem = [c for c in convs if c.startswith("/model/teacher/") and "conv_stem" in c]
    trained = [c for c in convs if not c.startswith("/model/teacher/")]  # bottleneck and student decoder
    frozen = [c for c in convs if c.startswith("/model/teacher/")]
    tiles, labels = test_tiles(split.test, size)

    def measure(path: Path) -> tuple[float, float]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        value = tile_auroc(lambda b: session.run(["score"], {"image": b})[0], tiles, labels)
        return value, throughput(lambda b: session.run(None, {"image": b}), tiles[:16], seconds)

    def images(samples) -> list:
        dataset = ImageDataset(samples, size)
        return [dataset.image(i) for i in range(len(dataset))]

    calibration_sets = {
        "first": lambda: images(train[:32]),  # what `fabricad export --precision int8` calibrates on
        "spread": lambda: images(train[:: max(1, len(train) // 64)][:64]),
    }
    variants = {
        SHIPPED: ("first", "minmax", ()),
        "MinMax, 64 tiles spread over the training images": ("spread", "minmax", ()),
        "Percentile (99.999), 64 spread tiles": ("spread", "percentile", ()),
        "as shipped + decoder heads in float": ("first", "minmax", tuple(heads)),
        "as shipped + heads and teacher stage outputs in float": ("first", "minmax", tuple(heads + teacher_outputs)),
        "as shipped + the teacher's stem in float": ("first", "minmax", tuple(stem)),
        "teacher INT8, bottleneck and student in float": ("first", "minmax", tuple(trained)),
        "bottleneck and student INT8, teacher in float": ("first", "minmax", tuple(frozen)),
    }
    if only is not None:
        variants = {name: v for name, v in variants.items() if name == SHIPPED or name in only}
    calibration = {key: calibration_sets[key]() for key in {key for key, *_ in variants.values()}}  # only the sets used
    rows = [("fp32", *measure(fp32))]
    for name, (images_key, method, float_nodes) in variants.items():
        path = tmp / f"{len(rows)}.onnx"
        quantize_int8(fp32, path, calibration[images_key], method, float_nodes)
        rows.append((name, *measure(path)))
        print(model_path, rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="one trained model: every calibration variant")
    parser.add_argument("--runs", type=Path, help="a benchmarks/aitex.py output: fp32 vs the shipped INT8 on each fabric")
    parser.add_argument("--also", nargs="*", default=[], help="with --runs: more variants (by name) beside the shipped one")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput figure")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.runs:
        fabrics = sorted(p.parent.parent.name for p in args.runs.glob("*/rd/model.ckpt"))
        lines = [f"Models {args.runs}/<fabric>/rd, test tiles of each fabric, {args.threads} threads.\n",
                 "| fabric | INT8 graph | fp32 tile AUROC | INT8 tile AUROC | Δ (points) | INT8 / fp32 speed, b16 |",
                 "|---|---|---|---|---|---|"]
        deltas: dict[str, list[float]] = {}
        for fabric in fabrics:
            (_, base, base_speed), *variants = compare(args.runs / fabric / "rd", args.threads, only=args.also, seconds=args.seconds)
            for name, value, speed in variants:
                deltas.setdefault(name, []).append(100 * (value - base))
                lines.append(f"| {fabric} | {name} | {base:.4f} | {value:.4f} | {deltas[name][-1]:+.2f} | {speed / base_speed:.2f} |")
        for name, values in deltas.items():
            lines.append(f"| **mean** | {name} | | | **{sum(values) / len(values):+.2f}** | |")
        print("\n".join(lines))
        return
    if not args.model:
        parser.error("give --model or --runs")
    rows = compare(args.model, args.threads, seconds=args.seconds)
    base_auroc = rows[0][1]
    lines = [f"Model {args.model}, its category's test tiles, {args.threads} threads.\n",
             "| graph | tile image AUROC | Δ vs fp32 (points) | tiles/s b16 |", "|---|---|---|---|"]
    for name, value, speed in rows:
        delta = "—" if name == "fp32" else f"{100 * (value - base_auroc):+.2f}"
        lines.append(f"| {name} | {value:.4f} | {delta} | {speed:.1f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
