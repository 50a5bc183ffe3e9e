"""INT8 calibration variants side by side: which keeps the tile AUROC of the fp32 graph.

    python benchmarks/int8_calibration.py --model runs/bench-lite1-default/02/rd

Quantises the model's ONNX graph several ways (ONNX Runtime static QDQ, per-channel weights,
the anomaly map always in float as `fabricad export` does) and reports tile image AUROC on the
checkpoint's test tiles and ONNX Runtime throughput at batch 16 for each.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from fabricad.data import ImageDataset, load_dataset
from fabricad.evaluation.metrics import auroc
from fabricad.export.onnx_export import export_fp32
from fabricad.training import load_model
from fabricad.training.trainer import holdout_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_speed import throughput  # noqa: E402


class Reader(CalibrationDataReader):
    def __init__(self, images: list[np.ndarray]) -> None:
        self.items = iter(images)

    def get_next(self):
        item = next(self.items, None)
        return None if item is None else {"image": item[None]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, ckpt = load_model(args.model)
    split = load_dataset(ckpt.config.data.path, ckpt.config.data.category)
    train, _ = holdout_split(split.train, ckpt.config)
    size = tuple(ckpt.config.data.image_size)
    tmp = Path(tempfile.mkdtemp())
    fp32, prepared = tmp / "fp32.onnx", tmp / "prepared.onnx"
    export_fp32(model, size, fp32)
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    convs = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
    map_nodes = [c for c in convs if c.startswith("/model/anomaly_map/")]
    heads = [c for c in convs if "/head/" in c]
    last_of_stage = {}
    for c in convs:  # the teacher's last projection in each stage: the features the student copies
        match = re.match(r"/model/teacher/body/blocks\.(\d+)/.*conv_pwl/Conv", c)
        if match:
            last_of_stage[match.group(1)] = c
    teacher_outputs = list(last_of_stage.values())

    labels = np.array([s.label for s in split.test])
    tiles = np.stack([cv2.resize(s.load(), (size[1], size[0])) for s in split.test])

    def measure(path: Path) -> tuple[float, float]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        scores = np.concatenate([session.run(["score"], {"image": tiles[i : i + 16]})[0] for i in range(0, len(tiles), 16)])
        return auroc(labels, scores), throughput(lambda b: session.run(None, {"image": b}), tiles[:16], 5.0)

    def images(samples) -> list[np.ndarray]:
        dataset = ImageDataset(samples, size)
        return [dataset.image(i) for i in range(len(dataset))]

    first = images(train[:32])
    spread = images(train[:: max(1, len(train) // 64)][:64])
    variants = {
        "as shipped: MinMax, first 32 training tiles": (first, CalibrationMethod.MinMax, []),
        "MinMax, 64 tiles spread over the training images": (spread, CalibrationMethod.MinMax, []),
        "Percentile (99.999), 64 spread tiles": (spread, CalibrationMethod.Percentile, []),
        "as shipped + decoder heads in float": (first, CalibrationMethod.MinMax, heads),
        "as shipped + heads and teacher stage outputs in float": (first, CalibrationMethod.MinMax, heads + teacher_outputs),
    }
    base_auroc, base_speed = measure(fp32)
    lines = [f"Model {args.model} ({ckpt.teacher['name']}), {split.name} test tiles, {args.threads} threads.\n",
             "| graph | tile image AUROC | Δ vs fp32 (points) | tiles/s b16 |", "|---|---|---|---|",
             f"| fp32 | {base_auroc:.4f} | — | {base_speed:.1f} |"]
    for name, (calibration, method, float_nodes) in variants.items():
        path = tmp / f"{len(lines)}.onnx"
        quantize_static(str(prepared), str(path), Reader(calibration), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        op_types_to_quantize=["Conv", "ConvTranspose"], nodes_to_exclude=map_nodes + float_nodes,
                        calibrate_method=method)
        value, speed = measure(path)
        lines.append(f"| {name} | {value:.4f} | {100 * (value - base_auroc):+.2f} | {speed:.1f} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
