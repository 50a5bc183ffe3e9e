"""`fabricad export --format openvino`: a bundle whose graph is an OpenVINO IR, INT8 through NNCF.

ONNX bundles already run on OpenVINO (`FABRICAD_RUNTIME=openvino`), the INT8 one with the
quantise/dequantise pairs ONNX Runtime's quantiser wrote. This is OpenVINO's own route: NNCF's
post-training quantisation of the fp32 graph, calibrated on the same normal training tiles,
with the anomaly map's nodes left in float (as in the ONNX INT8 graph: 8 bits flatten the small
teacher–student differences the map is made of). Which of the two is faster depends on the CPU
(BENCHMARKS.md, CPU inference): measure both with `python -m benchmarks.inference_speed`.

The bundle holds `model.xml` + `model.bin`; `model.json`'s sha256 covers both, and its threshold
is calibrated on this graph's own scores of the held-out images. Only OpenVINO runs it: the
engine, `predict` and the service pick OpenVINO for such a bundle by themselves.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tqdm import tqdm

from fabricad.errors import FabricadError, missing_extra
from fabricad.export.onnx_export import (
    export_checkpoint,
    normal_samples,
    save_portable_checkpoint,
)
from fabricad.inference.bundle import (
    CHECKPOINT_FILE,
    read_bundle,
    sha256_files,
    write_meta,
)
from fabricad.inference.bundle_meta import bundle_meta
from fabricad.inference.engine import InferenceEngine
from fabricad.inference.scoring import score_samples
from fabricad.training import load_model
from fabricad.training.dataset import ImageDataset

CALIBRATION_IMAGES = 32
"""Normal training tiles NNCF calibrates on: as many as the ONNX INT8 export's."""


def export_openvino(model: Path, out: Path, precision: str = "int8", data: Path | None = None, category: str | None = None,
                    name: str | None = None, progress: bool = True, overrides: list[str] | None = None,
                    with_checkpoint: bool = False) -> Path:
    """Write `out/model.xml`, `out/model.bin` and `out/model.json`; return `out`."""
    if precision not in ("fp32", "int8"):
        raise FabricadError(f"OpenVINO bundles are fp32 or int8, not {precision!r}")
    try:
        import openvino as ov
    except ImportError:
        raise missing_extra("openvino") from None
    if precision == "int8":
        try:
            import nncf
        except ImportError:
            raise missing_extra("nncf") from None
    _, checkpoint = load_model(model, overrides)
    train, holdout = normal_samples(checkpoint, data, category)
    if train is None:
        raise FabricadError("an OpenVINO export calibrates on the model's normal training images: pass --data")
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=3, desc="export (OpenVINO)", disable=not progress)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_bundle = export_checkpoint(model, Path(tmp) / "onnx", data=data, category=category, name=name or out.name,
                                        progress=False, overrides=overrides)
        meta, graph = read_bundle(onnx_bundle)
        converted = ov.Core().read_model(str(graph))
        bar.update(1)
        if precision == "int8":
            bar.set_postfix_str("NNCF INT8 calibration")
            tiles = ImageDataset(train[:CALIBRATION_IMAGES], (meta.input.height, meta.input.width), context=meta.preprocess.context)
            converted = nncf.quantize(
                converted, nncf.Dataset([tiles.image(i)[None] for i in range(len(tiles))]), subset_size=len(tiles),
                preset=nncf.QuantizationPreset.PERFORMANCE,
                ignored_scope=nncf.IgnoredScope(patterns=[".*anomaly_map.*"], validate=False))
        ov.save_model(converted, str(out / "model.xml"), compress_to_fp16=False)
        bar.update(1)
    files = [out / "model.xml", out / "model.bin"]
    meta = meta.model_copy(update={"model_file": "model.xml", "sha256": sha256_files(files), "precision": precision})
    write_meta(out, meta)
    # The threshold from this graph's own scores of the held-out images, as every export does.
    normal = score_samples(InferenceEngine.load(out, backend="openvino"), holdout).scores.tolist() if holdout else meta.normal_scores
    calibrated = bundle_meta(checkpoint, normal, name=meta.name, sha256=meta.sha256, precision=precision)
    write_meta(out, calibrated.model_copy(update={"model_file": "model.xml"}))
    if with_checkpoint:
        save_portable_checkpoint(checkpoint, out / CHECKPOINT_FILE)
    bar.update(1)
    bar.close()
    return out
