"""`fabricad eval`: run a detector over a test split and measure it like a mill would.

Everything is scored through the inference engine (`fabricad.inference.scoring`), so what eval
measures is what a bundle serves. The detector is any callable `batch (B,3,H,W) in [0,1] ->
(maps (B,1,H,W), scores (B,))` (the PyTorch model, the PatchCore baseline) on the engine's
PyTorch backend.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from fabricad.data import Sample
from fabricad.data.alignment import Alignment, TextureReference
from fabricad.data.tiling import as_trained
from fabricad.evaluation.line import (
    STRATEGIES,
    LineSettings,
    frames_of,
    line_table,
    run_line_benchmark,
)
from fabricad.inference import metrics as M
from fabricad.inference import visualize as V
from fabricad.inference.engine import InferenceEngine
from fabricad.inference.scoring import score_samples
from fabricad.inference.thresholds import FEW_CALIBRATION_IMAGES
from fabricad.training.dataset import ImageDataset
from fabricad.training.torch_backend import (
    checkpoint_engine,
    evaluating,
    scoring_engine,
)

log = logging.getLogger(__name__)

Detector = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
TARGET_FPR = 0.01


@dataclass
class Predictions:
    samples: list[Sample]
    labels: np.ndarray
    scores: np.ndarray
    maps: np.ndarray  # (N, H, W) float16, at the network's input size
    masks: np.ndarray  # (N, H, W) bool, resized to the same size
    seconds_per_image: float


def mask_at(sample: Sample, size: tuple[int, int]) -> np.ndarray:
    """The sample's ground-truth mask at the network's `size` (what its anomaly map is scored against)."""
    mask = sample.load_mask()
    if mask.shape != size:
        # INTER_AREA then > 0: a defect of a single pixel survives downscaling.
        mask = cv2.resize(mask.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA) > 0
    return mask


def predict(detector: Detector, samples: list[Sample], size: tuple[int, int], batch_size: int = 8,
            device: torch.device | str = "cpu", progress: bool = True,
            reference: TextureReference | None = None, fabric_edges: bool = False) -> Predictions:
    """Maps and scores of `samples` by any detector, through the inference engine. With a
    texture `reference` (the checkpoint's), each source scan whose weave is sheared or mirrored
    against the training scans is scored aligned, as the engine serves it; with `fabric_edges`,
    the columns beyond each source scan's fabric edges score zero."""
    roi = bool(getattr(getattr(detector, "config", None), "fabric_roi", False))
    engine = scoring_engine(detector, device, size, fabric_edges=fabric_edges, fabric_roi=roi, reference=reference,
                            batch_size=batch_size)
    return predictions_of(engine, samples, size, progress)


def predictions_of(engine: InferenceEngine, samples: list[Sample], size: tuple[int, int],
                   progress: bool = True) -> Predictions:
    """`samples` scored by `engine` (`fabricad.inference.scoring`), with their masks at `size`."""
    with evaluating(getattr(engine.backend, "model", None)):
        scored = score_samples(engine, samples, tuple(size), progress, desc="evaluating")
    masks = np.zeros((len(samples), *size), bool)
    for i, sample in enumerate(samples):
        if sample.label and sample.mask_paths:
            masks[i] = mask_at(sample, size)
    labels = np.array([s.label for s in samples], dtype=int)
    return Predictions(samples, labels, scored.scores, scored.maps, masks, scored.seconds / max(len(samples), 1))


def scan_alignments(samples: list[Sample], reference: TextureReference) -> dict[Path, Alignment]:
    """The alignment of every source image of `samples` that needs one."""
    first = {s.path: s for s in reversed(samples)}
    found = {path: reference.align(sample.load_source()) for path, sample in first.items()}
    return {path: a for path, a in found.items() if not a.identity}


def compute_metrics(p: Predictions, calibration_scores: list[float] | None) -> dict:
    """All numbers of metrics.json; None where a metric is undefined for this split."""
    has_masks = p.masks.any()
    result: dict = {
        "image_auroc": M.auroc(p.labels, p.scores),
        "pixel_auroc": M.pixel_auroc(p.masks, p.maps) if has_masks else None,
        "aupro": M.aupro(p.masks, p.maps) if has_masks else None,
    }
    result["f1_max"], result["threshold_f1"] = M.f1_max(p.labels, p.scores)
    threshold = None
    if calibration_scores:
        threshold = M.threshold_for_fpr(np.asarray(calibration_scores), TARGET_FPR)
        recall, false_alarms = M.rates_at(p.labels, p.scores, threshold)
        result.update(
            recall_at_1pct_fpr=recall,
            threshold_1pct_fpr=threshold,
            test_fpr_at_calibrated_threshold=false_alarms,
            calibration_images=len(calibration_scores),
        )
    else:
        result.update(recall_at_1pct_fpr=None, threshold_1pct_fpr=None)
    groups = [s.group or str(s.path) for s in p.samples]
    if any(s.crop is not None for s in p.samples):
        image_labels, image_scores = M.group_max(groups, np.array([s.full_image_label for s in p.samples]), p.scores)
        result["full_image_auroc"] = M.auroc(image_labels, image_scores)
        result["full_images"] = {"normal": int((image_labels == 0).sum()), "defective": int(image_labels.sum())}
    result["normal_count"] = int((p.labels == 0).sum())
    result["defective_count"] = int((p.labels == 1).sum())
    result["seconds_per_image"] = p.seconds_per_image
    return result


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) and not math.isnan(value) else str(value)


def write_report(out: Path, p: Predictions, result: dict, title: str, max_examples: int = 6) -> None:
    """metrics.json, report.md and the pictures it links."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    write_scores(out / "scores.csv", p)
    threshold = result.get("threshold_1pct_fpr") or result.get("threshold_f1") or float(np.median(p.scores))
    pictures = []
    if result["image_auroc"] is not None:
        fpr, tpr = M.roc_points(p.labels, p.scores)
        V.plot_roc(out / "roc.png", fpr, tpr, result["image_auroc"], f"{title}: image ROC")
        pictures.append(("Image ROC", "roc.png"))
    if result.get("aupro") is not None:
        curve = M.pro_curve(p.masks, p.maps)
        V.plot_pro(out / "pro.png", curve.fpr, curve.pro, result["aupro"])
        pictures.append(("PRO curve", "pro.png"))
    V.plot_histogram(out / "histogram.png", p.scores[p.labels == 0], p.scores[p.labels == 1], threshold)
    pictures.append(("Scores", "histogram.png"))

    def tiles(indices) -> tuple[list[np.ndarray], list[str]]:
        dataset = ImageDataset([p.samples[i] for i in indices], p.maps.shape[1:])
        images = [V.overlay(dataset.image(k), p.maps[i].astype(np.float32), threshold, p.masks[i]) for k, i in enumerate(indices)]
        captions = [f"{p.samples[i].path.name[:18]} {p.scores[i]:.3f}" for i in indices]
        return images, captions

    rows = [(name, *tiles(list(idx))) for name, idx in example_rows(p.labels, p.scores, threshold, max_examples)]
    V.overlay_grid(out / "overlays.png", rows)
    pictures.append(("Overlays (red: above threshold, green: ground truth)", "overlays.png"))

    lines = [f"# Evaluation: {title}", ""]
    count = result.get("calibration_images")
    if count is not None and count < FEW_CALIBRATION_IMAGES:
        lines += [f"> **Warning:** the calibrated threshold rests on {count} held-out normal image(s) (fewer than "
                  f"{FEW_CALIBRATION_IMAGES}): its false-alarm rate on the line can be several times the 1 % asked "
                  "for. Train on more defect-free images, or recalibrate on the line's own frames (the service's "
                  "teach-in).", ""]
    lines += ["| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in result.items() if not isinstance(v, dict)]
    lines += ["", f"Threshold used in the pictures: {threshold:.4f}", ""]
    lines += [f"## {caption}\n\n![{caption}]({name})\n" for caption, name in pictures]
    if "line" in result:
        lines += ["## On the line", "", *line_table(result["line"]), ""]
    (out / "report.md").write_text("\n".join(lines))


def write_scores(path: Path, p: Predictions) -> None:
    """Every test image's (or tile's) score, where it came from and its label: what a person
    sorts to find the misses, and what the served bundle must reproduce."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "x", "y", "width", "height", "label", "defect_type", "score"])
        for sample, label, score in zip(p.samples, p.labels, p.scores):
            box = sample.crop or ("", "", "", "")
            writer.writerow([str(sample.path), *box, int(label), sample.defect_type, f"{score:.6f}"])


def example_rows(labels: np.ndarray, scores: np.ndarray, threshold: float, most: int) -> list[tuple[str, np.ndarray]]:
    """The report's overlay rows, each what its name says at `threshold`: misses are defective
    images at or under it (lowest first), false alarms normal ones above it (highest first),
    hits defective ones above it (around their median). Where there are none, the row shown
    instead says so: the defects caught with the least margin, the normals closest to alarming."""
    defective, normal = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    caught = scores[defective] > threshold
    misses = defective[~caught][np.argsort(scores[defective][~caught])][:most]
    hits = defective[caught][np.argsort(scores[defective][caught])]
    alarming = scores[normal] > threshold
    alarms = normal[alarming][np.argsort(-scores[normal][alarming])][:most]
    rows = [("missed defects", misses) if len(misses) else ("no defect missed; the closest catches", hits[:most]),
            ("false alarms", alarms) if len(alarms) else ("no false alarm; the normals closest to the threshold",
                                                          normal[np.argsort(-scores[normal])][:most]),
            ("typical catches", hits[max(len(hits) // 2 - most // 2, 0):][:most])]
    return [(name, idx) for name, idx in rows if len(idx)]


REPORTED = ("image_auroc", "pixel_auroc", "aupro", "full_image_auroc", "f1_max", "recall_at_1pct_fpr",
            "test_fpr_at_calibrated_threshold")
"""Printed by `fabricad eval` and the demo. The false-alarm rate the calibrated threshold gives on the
test's normal images goes with its recall: on AITEX-256 the threshold set for 1 % gave 8 % (BENCHMARKS.md)."""


def texture_of(checkpoint) -> TextureReference | None:
    """The checkpoint's texture reference, when it has one and `model.align_texture` is on."""
    return TextureReference.decode(checkpoint.texture) if checkpoint.config.model.align_texture else None


@dataclass
class SplitPredictions:
    """A checkpoint's predictions on a test split, with what judging them needs."""

    predictions: Predictions
    calibration: list[float] | None
    """the held-out normal images' scores, re-scored with the map under test (None: none held out)"""
    checkpoint: object
    split_name: str
    whole_images_tile: bool


def predict_test_split(model: Path, data: Path | None = None, category: str | None = None, batch_size: int = 8,
                       device: str = "auto", progress: bool = True, overrides: list[str] | None = None) -> SplitPredictions:
    """Load a checkpoint and predict its test split through the checkpoint's own engine (what
    `fabricad predict` and its exported bundle serve). Without `data`, the dataset the model was
    trained on."""
    from fabricad.data import load_dataset
    from fabricad.data.holdout import holdout_split
    from fabricad.errors import FabricadError
    from fabricad.training import load_model
    from fabricad.training.device import select_device

    detector, ckpt = load_model(model, overrides)
    data_path = data or ckpt.config.data.path
    if data_path is None:
        raise FabricadError("no dataset given: pass --data PATH")
    category = category or (None if data else ckpt.config.data.category)
    split = load_dataset(data_path, category)
    dataset_info = ckpt.training.get("dataset", {})
    split.train, split.test = as_trained(split.train, dataset_info), as_trained(split.test, dataset_info)
    trained_on = ckpt.config.data.category or (Path(ckpt.config.data.path).name if ckpt.config.data.path else None)
    evaluated_on = category or Path(data_path).name
    if trained_on and trained_on != evaluated_on:
        # Allowed (a sister article, a new lot), but a mix-up of models and fabrics reads the same.
        log.warning("the model was trained on %r and is evaluated on %r: a one-class model knows only the "
                    "fabric it was trained on", trained_on, evaluated_on)
    if not split.test:
        raise FabricadError(f"{data_path}: the dataset has no test images to evaluate on")
    target = select_device(device)
    detector.teacher.use_runtime(ckpt.config.train.teacher_runtime, target)
    size = ckpt.config.data.image_size
    engine = checkpoint_engine(detector.to(target), ckpt, target, batch_size)
    predictions = predictions_of(engine, split.test, size, progress)
    calibration = ckpt.score_stats.get("scores")
    _, holdout = holdout_split(split.train, ckpt.config) if split.train else ([], [])
    if holdout:
        # Re-score the held-out normal images rather than trust the scores saved at training:
        # an inference setting (--set, or a default changed since) may have changed the map.
        with evaluating(detector):
            calibration = score_samples(engine, holdout).scores.tolist()
    return SplitPredictions(predictions, calibration, ckpt, split.name, bool(dataset_info.get("whole_images_tile")))


def evaluate_checkpoint(model: Path, out: Path, data: Path | None = None, category: str | None = None,
                        batch_size: int = 8, device: str = "auto", progress: bool = True,
                        overrides: list[str] | None = None, line: LineSettings | None = None) -> dict:
    """`fabricad eval` as a function: load, predict on the test split, write metrics.json and the
    report. Without `data`, the dataset the model was trained on. With `line`, also the line
    benchmark on rolls simulated from the test scans (`fabricad.evaluation.line`)."""
    run = predict_test_split(model, data, category, batch_size, device, progress, overrides)
    result = compute_metrics(run.predictions, run.calibration)
    if run.whole_images_tile:
        # Tiles of whole images: an image's score is its tiles' maximum, as the engine scores it.
        result["tile_auroc"], result["image_auroc"] = result["image_auroc"], result.pop("full_image_auroc")
    if line is not None:
        result["line"] = line_benchmark(run.predictions, result.get("threshold_1pct_fpr"), line,
                                        edges=run.checkpoint.config.model.fabric_edges)
    write_report(out, run.predictions, result, run.split_name)
    return result


def line_benchmark(predictions: Predictions, calibrated: float | None, settings: LineSettings,
                   edges: bool = False) -> dict:
    """The line benchmark on these predictions; without a calibrated threshold (no held-out
    images), the teach-in operating points only; the selvedge band only for a model that finds
    fabric edges (`edges`), as only such a model's engine can leave it uninspected."""
    from fabricad.errors import FabricadError

    edges = edges and settings.selvedge_mm > 0
    frames = frames_of(predictions, round(settings.match_tolerance_mm / settings.mm_per_px), edges=edges)
    strategies = [s for s in STRATEGIES if (calibrated is not None or s.threshold != "calibrated")
                  and (edges or not s.selvedge)]
    try:
        return run_line_benchmark(frames, calibrated, settings, strategies)
    except ValueError as e:
        raise FabricadError(f"line benchmark: {e}") from None


def format_metrics(result: dict) -> str:
    width = max(map(len, REPORTED))
    return "\n".join(f"{key:>{width}}: {result[key]:.4f}" if result[key] is not None else f"{key:>{width}}: n/a"
                     for key in REPORTED if key in result)
