"""Typed configuration, saved beside every checkpoint.

One `FabricadConfig` describes a run completely: which teacher and model, how images are read,
how training proceeds. It round-trips through YAML so that `config.yaml` next to `model.ckpt`
is enough to rebuild the model, and command-line overrides (`train.epochs=5`) are validated by
the same schema as the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fabricad.errors import ConfigError, did_you_mean, suggestion


class _Strict(BaseModel):
    # Unknown keys are typos; refuse them rather than silently ignore a setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TeacherConfig(_Strict):
    name: str = "tf_efficientnet_lite1"
    """timm architecture name. Lite1 led Lite0 and Lite2 in tile AUROC on all six AITEX fabrics at
    the same step budget (BENCHMARKS.md, teacher sweep); Lite0 is the lighter choice for slow PCs."""
    weights: str = "auto"
    """`auto` (packaged, then hub), `packaged`, `hub`, `random`, or a path to a .pth/.safetensors file."""
    layers: list[int] | None = None
    """timm `out_indices` to use; None takes the model's default for this teacher."""


class ModelConfig(_Strict):
    name: Literal["rd", "dbfad"] = "rd"
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    strides: list[int] | None = None
    """Teacher scales to distil, by stride; None = the family's default (rd: 8/16/32, dbfad:
    2/4/8/16). `teacher.layers` (timm stage indices), when set, takes precedence."""
    width: int = Field(256, ge=8)
    """Channel width of the bottleneck and the deepest student stage."""
    skips: bool = False
    """dbfad only: attention-gated teacher skips into the student (False = domain-generalisation setting)."""
    map_mode: Literal["add", "mul"] = "add"
    map_max_stride: int | None = Field(16, ge=1)
    """Only scales at this stride or finer make the anomaly map; coarser ones are still distilled
    (the bottleneck learns from them) but left out of it. None: every distilled scale. On AITEX the
    stride-32 scale blurs few-pixel defects and lifts normal texture: leaving it out raised every
    six-fabric mean (BENCHMARKS.md, assembling the anomaly map)."""
    blur_sigma: float = Field(2.0, ge=0.0)
    """Gaussian blur of the anomaly map, in pixels of the network input; 0 disables it. The
    reference method's 4 dilutes AITEX's 5-pixel defects (BENCHMARKS.md)."""
    pad: int = Field(32, ge=0, multiple_of=16)
    """Reflect-pad the input by this many pixels and crop the map back: keeps the teacher's
    zero-padding artefacts out of the map (tile borders otherwise dominate normal scores)."""
    tile_context: bool = True
    """A tile of a larger image carries `pad` px of its real neighbours instead of a reflection
    (only the image's own borders are reflected), in training and scoring alike: the student then
    learns a scan's edges (selvedge, the scanner's background) where they are, and no tile border
    shows a mirrored sliver that no training tile had. Inputs to the model are then pre-padded.
    The default since the six-fabric table of 2026-12-01 (BENCHMARKS.md). A dataset of whole
    images (no tiles) trains with it off: its only context would be its own reflection."""
    standardize: bool = False
    """Standardise each image's intensity (mean/std over all pixels) before the teacher, so
    illumination drift along a scan does not read as an anomaly."""
    fabric_roi: bool = True
    """Ignore what is not fabric: flat, saturated background (a scanner's white or black beyond
    the fabric edge, as rows or columns that cross the whole image) and `roi_margin` pixels
    around it get a zero anomaly map. Label-free, and it changes nothing on images that are fabric
    throughout, a white hole on a backlit table included. On by default since 2026-12-01: on
    AITEX it lifted tile AUROC, pixel AUROC and AUPRO with no fabric worse (BENCHMARKS.md). The
    margin and the flatness window are source pixels: tiles magnified for the network widen both
    with them."""
    fabric_edges: bool = True
    """Ignore the machine bed beyond the fabric's edges in scans (images at least twice as wide
    as tall): per scan, a strip from a side to an abrupt full-height edge that does not look like
    the scan's fabric gets a zero map (`fabricad.data.fabric_edges`). Applied to whole scans —
    by the inference engine and by `fabricad eval` and calibration, which cut tiles from them —
    not inside the exported graph, which sees one tile. On by default since 2026-12-01: on AITEX
    it lifted all four protocol figures (BENCHMARKS.md, the machine bed beyond the fabric edge)."""
    roi_margin: int = Field(0, ge=0, le=256)
    """0 blanks the background alone. Wider margins also blank the fabric's edge, where a
    scanner's edge artefacts sit, but defects beside the edge go with them: margin 24 cost AITEX
    full-image AUROC (BENCHMARKS.md, the fabric ROI's margin)."""
    check_premises: bool = True
    """Before training, check each default heuristic's premise on the training images and turn
    off, with one log line, those it fails (`fabricad.training.premises`): texture alignment
    where the images have no repeating weave or are of mixed sizes, fabric edges where they are
    not line scans, the fabric ROI where none shows a flat background. The decision is saved in
    the configuration, so evaluation, export and the service follow it. False keeps the
    settings as given."""
    align_texture: bool = True
    """Before scoring, mirror and/or shear a scan whose weave runs at another angle than the
    training scans' (a web drifting under a line-scan camera, fabric face down) back to their
    geometry, and move the map back onto its pixels (`fabricad.data.alignment`). The training
    scans' spectrum is saved with the model; a scan that matches as it is stays untouched."""

    @property
    def context(self) -> int:
        """Pixels of real neighbours every model input carries on each side (`tile_context`), else 0."""
        return self.pad if self.tile_context else 0


class DataConfig(_Strict):
    path: str | None = None
    category: str | None = None
    image_size: tuple[int, int] = (256, 256)
    """(height, width) the network sees; each must be a multiple of 32. Training images smaller
    than this are not enlarged (unless `upscale`): the model is trained, saved and served at
    their own size, rounded to a multiple of 32."""
    upscale: bool = False
    """Enlarge images smaller than `image_size` to it. Off by default: on synthetic 128² scans,
    enlarging to 256² cost pixel AUROC 0.10–0.20 at the same time budget (BENCHMARKS.md, "the
    default on 128² scans") — four times the pixels per step buys fewer steps and no detail the
    camera did not record. Turn it on for defects only a pixel or two across."""
    whole_images: Literal["resize", "tile"] = "resize"
    """How a dataset of whole images (no tiles) is fed to the network. `resize` (the default):
    each image resized to `image_size`, whatever its size and aspect. `tile`: each cut at its
    own scale into square tiles of the network side (less where one image in ten is smaller),
    as wide scans are; evaluation and serving then tile the same way and an image's score is
    its tiles' maximum. On the generator's mixed-size photos (239–400 px a side, 300 steps, two
    seeds) tiling cost image AUROC in five of six fabric-and-seed pairs and moved pixel AUROC
    either way (BENCHMARKS.md, "mixed-size photo folders"): an option, with `fabricad eval` as
    the judge."""
    augment: bool = True
    flip: bool = False
    """Mirror training images (with `augment`). Off by default: a twill mirrored is the opposite
    twill, which a mill would call a defect, and the student's capacity is better spent on the
    texture as the camera sees it (without mirroring, tile and pixel AUROC rose on every AITEX
    fabric: BENCHMARKS.md). Turn it on for symmetric textures with very few training images."""
    random_tiles: bool = False
    """Cut training tiles of wide scans at random offsets instead of the fixed tile grid
    (evaluation and held-out images keep the grid). Datasets of whole images are unaffected."""
    skew: float = Field(0.0, ge=0.0, le=45.0)
    """Shear half the training images by up to this many degrees (each row moved sideways in
    proportion to its height, so a twill's diagonals change angle), as when the web drifts
    sideways under a line-scan camera: a student that never saw it flags such a scan as a
    whole. Off (0) by default: it cost AITEX fabric 03, whose scans never drift (BENCHMARKS.md)."""
    holdout_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of normal training images held out for early stopping and score calibration."""
    workers: int = Field(0, ge=0)

    @field_validator("image_size", mode="before")
    @classmethod
    def _square_from_int(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) else value

    @field_validator("image_size")
    @classmethod
    def _multiple_of_32(cls, value: tuple[int, int]) -> tuple[int, int]:
        if any(v < 32 or v % 32 for v in value):
            raise ValueError(f"each side must be a multiple of 32, at least 32 (the teacher's deepest stride); got {value}")
        return value


class TrainConfig(_Strict):
    epochs: int = Field(100, ge=1)
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimiser steps whatever the epoch count (quick runs, tests)."""
    max_minutes: float | None = Field(14.0, gt=0)
    """Wall-clock training budget; the best weights so far are kept when it runs out. The default
    keeps onboarding a fabric on an ordinary 2-core PC under 15 minutes; a GPU converges (early
    stopping) long before it. None = no limit."""
    batch_size: int = Field(8, ge=1)
    """Images per optimiser step and process (with torchrun, each process takes this many)."""
    accumulate: int = Field(1, ge=1, le=64)
    """Micro-batches whose gradients are averaged per step: a larger effective batch on a small GPU."""
    lr: float = Field(0.005, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    hard_fraction: float = Field(1.0, gt=0, le=1)
    """Share of positions per scale, the worst reproduced, that make the loss (1: all of them).
    Focuses training on the rare hard normal texture that decides false alarms."""
    patience: int = Field(10, ge=1)
    """Epochs without held-out-loss improvement before early stopping."""
    seed: int = 0
    device: str = "auto"
    teacher_runtime: Literal["auto", "torch", "onnxruntime"] = "auto"
    """What runs the frozen teacher. auto: ONNX Runtime on a CPU (about 4x faster than eager
    PyTorch there, so a time budget buys more steps), PyTorch on a GPU. Evaluation follows it."""
    amp: bool = True
    """Mixed precision, used on CUDA only."""
    threads: int | None = Field(None, ge=1)


class FabricadConfig(_Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    # --- persistence -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FabricadConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid configuration: {validation_message(exc, suggest_from=cls)}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> FabricadConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping at the top level")
        return cls.from_dict(data)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))

    def with_overrides(self, overrides: list[str]) -> FabricadConfig:
        """Apply `section.key=value` overrides; values are parsed as YAML (`5`, `true`, `[1,2]`)."""
        data = self.model_dump(mode="json")
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"override {item!r} must look like section.key=value")
            *parents, leaf = key.strip().split(".")
            node = data
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"override {item!r}: no section {part!r}{_did_you_mean(key, self)}")
                node = node[part]
            if leaf not in node or isinstance(node[leaf], dict):
                raise ConfigError(f"override {item!r}: unknown key {key!r}{_did_you_mean(key, self)}")
            parsed = node[leaf] = _parse_value(raw)
            try:
                self.model_validate(data)
            except ValidationError:
                node[leaf] = raw  # YAML reads "02" as 2; a string field wants the text as typed
                try:
                    self.model_validate(data)
                except ValidationError:
                    node[leaf] = parsed  # neither fits: report the error of the value as parsed
        return self.from_dict(data)


def setting_keys(node: BaseModel | dict, prefix: str = "") -> list[str]:
    """Every dotted key of a configuration: `train.lr`, `model.teacher.name`, ..."""
    items = node.model_dump(mode="json") if isinstance(node, BaseModel) else node
    keys = []
    for name, value in items.items():
        keys += setting_keys(value, f"{prefix}{name}.") if isinstance(value, dict) and value else [f"{prefix}{name}"]
    return keys


def _did_you_mean(key: str, config: BaseModel) -> str:
    """`; did you mean 'train.lr'?` for `lr` (a key of that name in another section), `train.lrr`
    or `trian.lr` (close spellings); "" when nothing is close."""
    keys = setting_keys(config)
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [k for k in keys if k.rsplit(".", 1)[-1] == leaf]
    return suggestion(same_leaf) if same_leaf else did_you_mean(key, keys)


def validation_message(exc: ValidationError, suggest_from: BaseModel | type[BaseModel] | None = None,
                       names: dict[str, str] | None = None) -> str:
    """A pydantic error as one line a person can act on: `data.image_size: Value error, must be a
    multiple of 32 (got 100)`; `names` maps a field to how the user spelled it (an environment
    variable, say)."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        if names and where in names:
            where = f"{names[where]} ({where})"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
            if suggest_from is not None:
                model = suggest_from if isinstance(suggest_from, BaseModel) else suggest_from()
                message += _did_you_mean(where, model)
        elif error["type"] != "value_error" and "input" in error and not isinstance(error["input"], dict):
            message += f" (got {error['input']!r})"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def _parse_value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
