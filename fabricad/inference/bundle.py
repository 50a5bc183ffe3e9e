"""The model bundle: `model.onnx` + `model.json`, everything a line PC needs and nothing else.

`model.json` is the contract between export and every runtime (engine, service, Triton): input
geometry and layout, how wide images are cut, the calibrated threshold, where the model came
from, and the sha256 of the graph so a swapped or truncated file is caught before it runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fabricad.errors import CheckpointError

BUNDLE_FORMAT = 1
META_FILE = "model.json"
OPSET = 17
"""ONNX opset of every graph fabricad writes: bundles and the training-time teacher."""
CHECKPOINT_FILE = "checkpoint.ckpt"
"""The training checkpoint a bundle may carry (`fabricad export --with-checkpoint`): not needed to
serve it, only to fine-tune it from the operators' labels (`fabricad.inference.retraining`)."""


class InputSpec(BaseModel):
    name: str = "image"
    layout: Literal["NHWC"] = "NHWC"
    dtype: Literal["uint8"] = "uint8"
    color: Literal["RGB"] = "RGB"
    height: int
    width: int
    normalisation: str = "inside the graph: x/255, then the teacher's mean/std"


class Preprocess(BaseModel):
    mode: Literal["resize", "tile"] = "resize"
    """`resize`: the whole image is resized to the input size (the model was trained on whole
    images). `tile`: the image is cut at native scale into tiles of `tile` size (input-sized when
    None), each resized to the input (trained on tiles)."""
    tile: tuple[int, int] | None = None
    """(height, width) of the tiles at native scale when training resized them to another input
    size (tiles magnified for small defects); None: tiles are input-sized."""
    overlap: float = Field(0.0, ge=0.0, lt=1.0)
    """Share of a tile its neighbours overlap (blended with a smooth window). 0 cuts the image as
    training did (AITEX-256: side by side, the last tile right-aligned), which on AITEX fabric 02
    scored full scans better (AUROC 0.934 vs 0.772 at 0.25) and 22 % faster (259 vs 330 ms)."""
    context: int = Field(0, ge=0)
    """Pixels, at the input size, of its real neighbours each tile carries on every side
    (`model.tile_context`; a whole image is reflected instead): the graph's input is then
    (height + 2·context, width + 2·context) and its map (height, width)."""


class Threshold(BaseModel):
    value: float
    method: str
    """`normal-quantile` (calibrated on normal images for `target_fpr`), `f1` or `manual`."""
    target_fpr: float | None = None
    calibration_count: int = 0


class ServingSpec(BaseModel):
    """How a serving engine should batch and replicate this model (Triton's dynamic batcher and
    instance groups, Ray Serve's batching): sized for line cameras, small batches, low delay."""

    max_batch_size: int = Field(16, ge=1, le=1024)
    preferred_batch_sizes: list[int] = [4, 8, 16]
    max_queue_delay_us: int = Field(2000, ge=0, description="how long a batch may wait to fill")
    instances: int = Field(1, ge=1, le=64, description="model copies per device")
    device: Literal["auto", "gpu", "cpu"] = "auto"


class BundleMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    format: int = BUNDLE_FORMAT
    name: str
    model_file: str = "model.onnx"
    sha256: str
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    opset: int
    input: InputSpec
    outputs: dict[str, str] = {
        "anomaly_map": "float32 (B, 1, H, W)",
        "score": "float32 (B,): max of the map",
    }
    preprocess: Preprocess = Preprocess()
    threshold: Threshold
    score_scale: float
    """Spread of normal scores; the normalised score is sigmoid((score - threshold) / score_scale)."""
    normal_scores: list[float] = []
    """Held-out normal scores, kept so the threshold can be recalibrated on site."""
    teacher: dict
    model: dict
    training_data: dict = {}
    texture: dict = {}
    """The training images' weave spectrum (`TextureReference.encode()`): served scans are aligned
    to it. Empty: no alignment (older bundles, or `model.align_texture=false`)."""
    serving: ServingSpec = ServingSpec()
    fabricad_version: str

    @property
    def graph_input(self) -> tuple[int, int]:
        """(height, width) of the images the graph takes: the input size plus any context."""
        c = self.preprocess.context
        return self.input.height + 2 * c, self.input.width + 2 * c


def sha256_file(path: Path) -> str:
    return sha256_files([path])


def sha256_files(paths: list[Path]) -> str:
    """One digest over the files' bytes in order: a graph, or an OpenVINO IR's topology and weights."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def is_openvino_ir(meta: BundleMeta) -> bool:
    """Whether the bundle's graph is an OpenVINO IR (`fabricad export --format openvino`: NNCF's
    INT8 or fp32, `model.xml` + `model.bin`), which only OpenVINO runs, rather than ONNX."""
    return Path(meta.model_file).suffix == ".xml"


def graph_files(folder: Path, meta: BundleMeta) -> list[Path]:
    """The files `meta.sha256` covers: the ONNX graph, or an IR's topology and weights."""
    graph = folder / Path(meta.model_file).name  # a name only: never a path out of the bundle
    return [graph, graph.with_suffix(".bin")] if is_openvino_ir(meta) else [graph]


def write_meta(folder: Path, meta: BundleMeta) -> Path:
    path = folder / META_FILE
    path.write_text(meta.model_dump_json(indent=2))
    return path


def is_bundle(path: str | Path) -> bool:
    """Whether `path` is a bundle folder (or its model.json) rather than a checkpoint."""
    path = Path(path)
    return (path / META_FILE).is_file() or (path.name == META_FILE and path.is_file())


def read_bundle(folder: str | Path, verify: bool = True) -> tuple[BundleMeta, Path]:
    """Validated metadata and the path of the graph; refuses a bundle whose graph changed."""
    folder = Path(folder)
    if folder.is_file() and folder.name == META_FILE:
        folder = folder.parent
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"{folder} is not a model bundle (no {META_FILE})")
    try:
        meta = BundleMeta.model_validate_json(meta_path.read_text())
    except ValidationError as exc:
        raise CheckpointError(f"{meta_path} is invalid: {exc}") from None
    if meta.format != BUNDLE_FORMAT:
        raise CheckpointError(f"{meta_path}: bundle format {meta.format}, this fabricad reads {BUNDLE_FORMAT}")
    files = graph_files(folder, meta)
    for path in files:
        if not path.is_file():
            raise CheckpointError(f"{path} missing from the bundle")
    if verify and sha256_files(files) != meta.sha256:
        raise CheckpointError(f"{files[0]} does not match the sha256 in {META_FILE}: the file was changed or truncated")
    return meta, files[0]
