"""The inference engine: any image in, a verdict with a heatmap and defect regions out.

Images of any size are handled the way the model was trained: resized whole, or cut at native
scale into overlapping tiles whose maps are blended with a smooth window (no seams), batched
across tiles and images. The verdict compares the image score (max of the map) with a
threshold that can be changed at run time; regions are the connected components of the map
above that same threshold, so "DEFECT" always comes with at least one region.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fabricad.data.alignment import IDENTITY, Alignment, TextureReference
from fabricad.data.fabric_edges import background_columns, only_background
from fabricad.data.images import resize, to_rgb_uint8
from fabricad.data.tiling import cut_window, reflect_pad, tile_starts
from fabricad.errors import FabricadError
from fabricad.export.bundle import BundleMeta, Threshold
from fabricad.inference import thresholds as T
from fabricad.inference.backends import OnnxBackend, TorchBackend
from fabricad.inference.ort_session import Spinning


@dataclass
class Region:
    x: int
    y: int
    width: int
    height: int
    area: int
    max_score: float
    mean_score: float
    outline: list[list[int]] = field(default_factory=list)
    """the region's boundary as a simplified polygon of [x, y] points (for overlays and roll maps)"""

    def as_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class Result:
    score: float
    normalized_score: float
    is_defect: bool
    threshold: float
    regions: list[Region]
    anomaly_map: np.ndarray = field(repr=False)
    latency_ms: float = 0.0
    alignment: Alignment = IDENTITY
    fabric_in_view: bool = True
    """False when the model's fabric ROI found nothing but background (a web break, the end of a
    roll): the map is zero everywhere, so the OK verdict says nothing about fabric, and a line
    should hear of it rather than count the frame as good cloth."""

    def as_dict(self) -> dict:
        return {
            "verdict": "DEFECT" if self.is_defect else "OK",
            "is_defect": self.is_defect,
            "score": self.score,
            "normalized_score": self.normalized_score,
            "threshold": self.threshold,
            "regions": [r.as_dict() for r in self.regions],
            "latency_ms": self.latency_ms,
            "alignment": None if self.alignment.identity else self.alignment.as_dict(),
            "fabric_in_view": self.fabric_in_view,
        }


def blend_window(height: int, width: int) -> np.ndarray:
    """Weights that fall off towards tile borders (but never to zero), for seamless blending."""
    wy = np.hanning(height + 2)[1:-1] if height > 1 else np.ones(1)
    wx = np.hanning(width + 2)[1:-1] if width > 1 else np.ones(1)
    return (np.outer(wy, wx) + 1e-3).astype(np.float32)


def _outline(component: np.ndarray, x: int, y: int, max_points: int = 64) -> list[list[int]]:
    contours, _ = cv2.findContours(component.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=cv2.contourArea)
    epsilon = 1.0
    polygon = cv2.approxPolyDP(contour, epsilon, True)
    while len(polygon) > max_points:
        epsilon *= 2
        polygon = cv2.approxPolyDP(contour, epsilon, True)
    return [[int(px) + x, int(py) + y] for px, py in polygon[:, 0, :]]


def find_regions(anomaly_map: np.ndarray, threshold: float, min_area: int = 1) -> list[Region]:
    """Connected components above the threshold. A region's box and outline are drawn where the map
    is at least half its peak (never below the threshold): the blurred map's tails would otherwise
    make a strong defect look several times its size, and sizes are what a roll is graded on."""
    above = (anomaly_map > threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
    regions = []
    for k in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[k])
        if area < min_area:
            continue
        component = labels[y:y + h, x:x + w] == k
        window = anomaly_map[y:y + h, x:x + w]
        values = window[component]
        peak = float(values.max())
        core = component & (window >= max(threshold, 0.5 * peak))
        ys, xs = np.nonzero(core)
        cx, cy = x + int(xs.min()), y + int(ys.min())
        core = core[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        regions.append(Region(cx, cy, core.shape[1], core.shape[0], area, peak, float(values.mean()), _outline(core, cx, cy)))
    return sorted(regions, key=lambda r: -r.max_score)


class InferenceEngine:
    def __init__(self, backend, meta: BundleMeta, batch_size: int = 16, mode: str | None = None,
                 overlap: float | None = None, align: bool = True):
        self.backend = backend
        self.meta = meta
        self.batch_size = batch_size
        self.mode = mode or meta.preprocess.mode
        self.overlap = meta.preprocess.overlap if overlap is None else overlap
        self.input_size = tuple(backend.input_size)
        # Tiles are cut at the size training cut them, then resized to the network input like
        # training resized them (a model trained on 256² tiles magnified to 512² sees 256² crops).
        self.tile_size = tuple(meta.preprocess.tile or self.input_size)
        self.context = meta.preprocess.context
        self._threshold = meta.threshold
        self._window = blend_window(*self.tile_size)
        # A scan whose weave runs at another angle than the training scans' is scored aligned
        # to them, and its map moved back (fabricad.data.alignment).
        self.texture = TextureReference.decode(meta.texture) if align else None

    @classmethod
    def load(cls, path: str | Path, backend: str = "auto", providers: list[str] | None = None,
             threads: int | None = None, device: str = "auto", spinning: Spinning = "during_run", **kwargs) -> InferenceEngine:
        """A bundle folder (ONNX Runtime) or a checkpoint (PyTorch)."""
        path = Path(path)
        is_bundle = (path / "model.json").is_file() or path.name == "model.json"
        if backend == "auto":
            backend = "onnx" if is_bundle else "torch"
        if backend == "onnx":
            if not is_bundle:
                raise FabricadError(f"{path} is not an exported bundle; run `fabricad export` first or use the torch backend")
            runner = OnnxBackend(path, providers, threads, spinning=spinning)
            return cls(runner, runner.meta, **kwargs)
        if backend == "torch":
            runner = TorchBackend(path, device, threads)
            return cls(runner, runner.meta(), **kwargs)
        raise FabricadError(f"unknown backend {backend!r}: use auto, onnx or torch")

    # --- threshold -----------------------------------------------------------------------------
    @property
    def threshold(self) -> Threshold:
        return self._threshold

    def use_threshold(self, threshold: Threshold) -> None:
        """Put a threshold decided elsewhere in force as it is: one kept by the service across
        restarts, a teach-in's, or the bundle's own again."""
        self._threshold = threshold.model_copy()

    def set_threshold(self, value: float | None = None, *, target_fpr: float | None = None) -> Threshold:
        """Change the threshold at run time: an explicit value, or a new false-alarm target
        recalibrated on the bundle's normal scores."""
        if target_fpr is not None:
            if not self.meta.normal_scores:
                raise FabricadError("this model carries no normal scores to recalibrate from")
            self._threshold = T.from_normal_scores(self.meta.normal_scores, target_fpr)
        elif value is not None:
            self._threshold = Threshold(value=float(value), method="manual")
        else:
            raise FabricadError("give a threshold value or a target false-alarm rate")
        return self._threshold

    # --- inference -----------------------------------------------------------------------------
    def _plan(self, image: np.ndarray) -> tuple[list[np.ndarray], list[tuple[int, int, int, int]] | None, tuple[int, int]]:
        """Network-sized crops of `image` and where they go back (None = one resized view).
        Resized exactly as the training images were (`fabricad.data.images.resize`)."""
        if self.mode == "resize" or image.shape[:2] == self.tile_size:
            return [reflect_pad(resize(image, self.input_size), self.context)], None, image.shape[:2]
        # Tiles at native scale; an image smaller than a tile in a dimension is padded by reflection.
        height, width = self.tile_size
        ph, pw = max(height - image.shape[0], 0), max(width - image.shape[1], 0)
        canvas = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REFLECT_101) if ph or pw else image
        ys = tile_starts(canvas.shape[0], height, max(1, round(height * (1 - self.overlap))))
        xs = tile_starts(canvas.shape[1], width, max(1, round(width * (1 - self.overlap))))
        boxes = [(x, y, width, height) for y in ys for x in xs]
        # With a context, each tile comes with its neighbours in the image (as in training).
        crops = [cut_window(canvas, box, self.input_size, self.context) for box in boxes]
        return crops, boxes, image.shape[:2]

    def _assemble(self, maps: list[np.ndarray], boxes, shape: tuple[int, int]) -> np.ndarray:
        if boxes is None:
            amap = maps[0]
            return cv2.resize(amap, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) if amap.shape != shape else amap
        height = max(y + h for _, y, _, h in boxes)
        width = max(x + w for x, _, w, _ in boxes)
        total = np.zeros((height, width), np.float32)
        weight = np.zeros((height, width), np.float32)
        for amap, (x, y, w, h) in zip(maps, boxes):
            if amap.shape != (h, w):
                amap = cv2.resize(amap, (w, h), interpolation=cv2.INTER_LINEAR)
            total[y : y + h, x : x + w] += amap * self._window
            weight[y : y + h, x : x + w] += self._window
        return (total / weight)[: shape[0], : shape[1]]

    def predict(self, images: list[np.ndarray]) -> list[Result]:
        """Inspect several RGB images (any size; gray, RGB, RGBA, 8 or 16 bit)."""
        started = time.perf_counter()
        rgb = [to_rgb_uint8(np.asarray(img), order="rgb") for img in images]
        alignments = [self.texture.align(img) if self.texture is not None else IDENTITY for img in rgb]
        plans = [self._plan(a.apply(img)) for a, img in zip(alignments, rgb)]
        crops = [c for crops, _, _ in plans for c in crops]
        maps: list[np.ndarray] = []
        for start in range(0, len(crops), self.batch_size):
            batch = np.ascontiguousarray(np.stack(crops[start : start + self.batch_size]))
            batch_maps, _ = self.backend(batch)
            maps.extend(batch_maps)
        elapsed_ms = (time.perf_counter() - started) * 1000 / max(len(images), 1)
        results, k = [], 0
        threshold = self._threshold.value
        roi = bool(self.meta.model.get("fabric_roi"))
        edges = bool(self.meta.model.get("fabric_edges"))  # absent from bundles exported before it
        for (crops_, boxes, shape), alignment, image in zip(plans, alignments, rgb):
            amap = alignment.undo(self._assemble(maps[k : k + len(crops_)], boxes, shape))
            k += len(crops_)
            if edges:  # the map is on the scan's own pixels (Alignment.undo restores its shape)
                amap[:, background_columns(image)] = 0.0
            # A model without the ROI (its training images showed no background) still tells a
            # frame of bare background from fabric: a web break is not inspected cloth.
            empty = not roi and only_background(image)
            if empty:
                amap[:] = 0.0
            score = float(amap.max())
            is_defect = score > threshold
            results.append(Result(
                score=score,
                normalized_score=T.normalise(score, threshold, self.meta.score_scale),
                is_defect=is_defect,
                threshold=threshold,
                regions=find_regions(amap, threshold) if is_defect else [],
                anomaly_map=amap,
                latency_ms=elapsed_ms,
                alignment=alignment,
                # The ROI zeroes background exactly; a map of fabric is never zero everywhere.
                fabric_in_view=not empty and (not (roi or edges) or bool(np.any(amap))),
            ))
        return results

    def inspect(self, image: np.ndarray) -> Result:
        return self.predict([image])[0]

    @property
    def description(self) -> dict:
        return {"backend": self.backend.name, "name": self.meta.name, "precision": self.meta.precision,
                "input": list(self.input_size), "mode": self.mode, "threshold": self._threshold.model_dump(),
                "texture_alignment": self.texture is not None}
