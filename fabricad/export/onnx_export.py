"""`fabricad export`: checkpoint → ONNX bundle (fp32, fp16 or int8)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from tqdm import tqdm

from fabricad.backbones.static_padding import freeze_same_padding
from fabricad.data import Sample
from fabricad.errors import FabricadError
from fabricad.inference.backends import OnnxBackend
from fabricad.inference.bundle import CHECKPOINT_FILE, OPSET, sha256_file, write_meta
from fabricad.inference.bundle_meta import bundle_meta, checkpoint_meta
from fabricad.inference.engine import InferenceEngine
from fabricad.inference.scoring import score_samples
from fabricad.models import DistillationModel
from fabricad.training.checkpoint import Checkpoint, write_checkpoint
from fabricad.training.dataset import ImageDataset

log = logging.getLogger(__name__)
class UInt8Graph(nn.Module):
    """uint8 NHWC RGB in, (anomaly map, score) out: clients send plain decoded frames."""

    def __init__(self, model: DistillationModel):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image.permute(0, 3, 1, 2).float() / 255.0
        return self.model(x)


def export_fp32(model: DistillationModel, size: tuple[int, int], path: Path) -> None:
    """Trace the model for (height, width) = `size` images, taken with the model's context."""
    c = model.context
    example = torch.zeros(1, size[0] + 2 * c, size[1] + 2 * c, 3, dtype=torch.uint8)
    wrapper = freeze_same_padding(UInt8Graph(model.eval().cpu()), example)
    with warnings.catch_warnings():
        # The tracer's notes (static shapes, constant folding) are expected for a fixed input size.
        warnings.simplefilter("ignore")
        _trace(wrapper, example, path)
    onnx.checker.check_model(str(path))


def _trace(wrapper: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        wrapper,
        (example,),
        str(path),
        dynamo=False,  # the TorchScript exporter: stable for conv nets, no onnxscript at run time
        opset_version=OPSET,
        input_names=["image"],
        output_names=["anomaly_map", "score"],
        dynamic_axes={"image": {0: "batch"}, "anomaly_map": {0: "batch"}, "score": {0: "batch"}},
    )


def convert_fp16(source: Path, target: Path) -> None:
    """Half-precision weights and activations, uint8 input and float32 outputs kept (GPU use)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))


def quantize_int8(source: Path, target: Path, calibration: list[np.ndarray], method: str = "minmax",
                  float_nodes: tuple[str, ...] = ()) -> None:
    """Static INT8 (QDQ, per-channel weights) calibrated on normal images.

    Only the network's convolutions and their activations are quantised. The anomaly map's blur
    is a convolution too, but it works on small differences between teacher and student that 8 bits flatten
    (measured: score correlation with fp32 drops from 0.99 to 0.48 when it is included).
    `method` (minmax, percentile, entropy) and `float_nodes` (more nodes kept in float) exist for
    `benchmarks/int8_calibration.py`; the defaults are what `fabricad export` ships.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {"image": item[None]}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        names = {n.name for n in onnx.load(str(prepared)).graph.node}
        map_nodes = [name for name in names if name.startswith("/model/anomaly_map/")]
        if not map_nodes:
            raise FabricadError("cannot find the anomaly-map nodes to keep in float; refusing to quantise them")
        unknown = [name for name in float_nodes if name not in names]
        if unknown:  # ORT would ignore them silently and quantise what was meant to stay float
            raise FabricadError(f"no such nodes in the graph to keep in float: {', '.join(unknown[:3])}")
        quantize_static(
            str(prepared),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            # The activations (ReLU6 is a Clip) too: quantised, ONNX Runtime folds them into the
            # integer convolution; left in float, every convolution dequantises and re-quantises its
            # output around them, which took 38 % of a Lite1 INT8 run (1.9x fp32 with, 1.3x without).
            op_types_to_quantize=["Conv", "ConvTranspose", "Clip", "Relu"],
            nodes_to_exclude=map_nodes + list(float_nodes),
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method],
        )


def export_bundle(
    model: DistillationModel,
    checkpoint: Checkpoint,
    out: Path,
    *,
    precision: str = "fp32",
    calibration_samples: list[Sample] | None = None,
    holdout_samples: list[Sample] | None = None,
    calibration_images: int = 32,
    name: str | None = None,
    progress: bool = True,
) -> Path:
    """Write `out/model.onnx` and `out/model.json`; return `out`."""
    if precision not in ("fp32", "fp16", "int8"):
        raise FabricadError(f"unknown precision {precision!r}: use fp32, fp16 or int8")
    out.mkdir(parents=True, exist_ok=True)
    size = tuple(checkpoint.config.data.image_size)
    onnx_path = out / "model.onnx"
    steps = ["trace to ONNX", "convert" if precision != "fp32" else None, "write metadata"]
    bar = tqdm(total=len([s for s in steps if s]), desc="export", disable=not progress)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        bar.set_postfix_str("trace to ONNX")
        export_fp32(model, size, fp32_path)
        bar.update(1)
        if precision == "fp32":
            shutil.copyfile(fp32_path, onnx_path)
        elif precision == "fp16":
            bar.set_postfix_str("fp16")
            convert_fp16(fp32_path, onnx_path)
            bar.update(1)
        else:
            if not calibration_samples:
                raise FabricadError("INT8 needs normal calibration images (the training data of the checkpoint)")
            bar.set_postfix_str("int8 calibration")
            dataset = ImageDataset(calibration_samples[:calibration_images], size, context=model.context)
            images = [dataset.image(i) for i in range(len(dataset))]
            quantize_int8(fp32_path, onnx_path, images)
            bar.update(1)
    normal = checkpoint.score_stats.get("scores") or []
    if holdout_samples and precision != "fp16":
        # Score the held-out normal images with the exported graph itself, through the engine
        # that will serve it: an INT8 graph's scores are not the fp32 model's, and its threshold
        # must come from its own.
        graph = checkpoint_meta(checkpoint, precision=precision)
        engine = InferenceEngine(OnnxBackend(None, ["cpu"], graph=(graph, onnx_path)), graph)
        normal = score_samples(engine, holdout_samples).scores.tolist()
    meta = bundle_meta(checkpoint, normal, name=name or out.name, sha256=sha256_file(onnx_path), precision=precision)
    write_meta(out, meta)
    bar.update(1)
    bar.close()
    if precision == "fp16":
        log.warning("fp16 bundle: threshold from fp32 scores (fp16 runs on GPUs); recalibrate on site if scores shift")
    return out


def export_checkpoint(model: Path, out: Path, precision: str = "fp32", data: Path | None = None,
                      category: str | None = None, name: str | None = None, progress: bool = True,
                      overrides: list[str] | None = None, with_checkpoint: bool = False) -> Path:
    """`fabricad export` as a function: the checkpoint's own normal images (or `data`) calibrate the
    threshold on the held-out part and, for int8, the quantiser on the training part. With
    `with_checkpoint`, the bundle also carries the checkpoint, so the service can fine-tune it."""
    from fabricad.training import load_model

    detector, ckpt = load_model(model, overrides)
    train_samples, holdout = normal_samples(ckpt, data, category)
    if train_samples is None and precision == "int8":
        raise FabricadError("int8 export needs the normal training images for calibration: pass --data")
    bundle = export_bundle(detector, ckpt, out, precision=precision, calibration_samples=train_samples,
                           holdout_samples=holdout, name=name, progress=progress)
    if with_checkpoint:
        save_portable_checkpoint(ckpt, bundle / CHECKPOINT_FILE)
    return bundle


def normal_samples(checkpoint: Checkpoint, data: Path | None = None, category: str | None = None
                   ) -> tuple[list[Sample] | None, list[Sample] | None]:
    """The checkpoint's normal training images (or `data`'s), split as training split them:
    (the part the model learnt from, the held-out part), cut as training cut them; (None, None)
    where the images are not here. Calibration of thresholds and quantisers draws on them."""
    from fabricad.data import load_dataset
    from fabricad.data.holdout import holdout_split
    from fabricad.data.tiling import as_trained

    data_path = data or checkpoint.config.data.path
    if data_path is None or not Path(data_path).exists():
        return None, None
    split = load_dataset(data_path, category or (None if data else checkpoint.config.data.category))
    return holdout_split(as_trained(split.train, checkpoint.training.get("dataset", {})), checkpoint.config)


def save_portable_checkpoint(checkpoint: Checkpoint, path: Path) -> Path:
    """The checkpoint a bundle carries: weights, configuration (the inference settings given at
    export included), score statistics and the dataset's description; no optimiser state or
    history, which a fine-tune starts afresh and which would triple the file."""
    training = {k: v for k, v in checkpoint.training.items() if k in ("dataset", "epoch", "step", "best_loss")}
    payload = replace(checkpoint, training=training)
    return write_checkpoint(path, payload)
