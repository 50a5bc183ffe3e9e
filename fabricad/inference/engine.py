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
from fabricad.defect_types import TypeClassifier, geometry_type, load_types
from fabricad.errors import FabricadError
from fabricad.inference import thresholds as T
from fabricad.inference.backends import OnnxBackend, OpenVinoBackend
from fabricad.inference.bundle import (
    BundleMeta,
    Threshold,
    is_bundle,
    is_openvino_ir,
    read_bundle,
)
from fabricad.inference.operating_point import OperatingPoint
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
    type: str | None = None
    """the defect type (`fabricad.defect_types`): the bundle's classifier's, `unknown` where it is
    unsure, or a geometry rule's (spot, line_along, line_across) where the bundle has none"""
    type_confidence: float | None = None
    """the classifier's probability of `type`; None for a geometry rule"""

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
    selvedge_score: float | None = None
    """The selvedge band's highest value, where the operating point has a band and the frame
    shows a fabric edge; `score` is then the rest of the fabric's. Kept apart because the band is
    judged apart (or not at all), and a teach-in learns the two thresholds from the two."""

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
            "selvedge_score": self.selvedge_score,
        }


def blend_window(height: int, width: int) -> np.ndarray:
    """Weights that fall off towards tile borders (but never to zero), for seamless blending."""
    wy = np.hanning(height + 2)[1:-1] if height > 1 else np.ones(1)
    wx = np.hanning(width + 2)[1:-1] if width > 1 else np.ones(1)
    return (np.outer(wy, wx) + 1e-3).astype(np.float32)


def to_shape(amap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A network-sized map on an image's own `shape` (bilinear, as every served map is)."""
    return amap if amap.shape == tuple(shape) else cv2.resize(amap, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _outline(component: np.ndarray, x: int, y: int, max_points: int = 64) -> list[list[int]]:
    contours, _ = cv2.findContours(component.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=cv2.contourArea)
    epsilon = 1.0
    polygon = cv2.approxPolyDP(contour, epsilon, True)
    while len(polygon) > max_points:
        epsilon *= 2
        polygon = cv2.approxPolyDP(contour, epsilon, True)
    return [[int(px) + x, int(py) + y] for px, py in polygon[:, 0, :]]


def find_regions(anomaly_map: np.ndarray, threshold: float | np.ndarray, min_area: int = 1,
                 rules: OperatingPoint | None = None) -> list[Region]:
    """Connected components above the threshold (one value, or one per column: the operating
    point's zones). A region's box and outline are drawn where the map is at least half its peak
    (never below the threshold): the blurred map's tails would otherwise make a strong defect
    look several times its size, and sizes are what a roll is graded on. `rules` drop regions
    too small to be a defect, measured on that drawn core."""
    above = (anomaly_map > threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
    columns = np.broadcast_to(np.asarray(threshold, np.float32), (anomaly_map.shape[1],))
    regions = []
    for k in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[k])
        if area < min_area:
            continue
        component = labels[y:y + h, x:x + w] == k
        window = anomaly_map[y:y + h, x:x + w]
        values = window[component]
        peak = float(values.max())
        core = component & (window >= np.maximum(columns[x:x + w], 0.5 * peak))
        ys, xs = np.nonzero(core)
        cx, cy = x + int(xs.min()), y + int(ys.min())
        core = core[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        if rules is not None and not rules.keeps(core.shape[1], core.shape[0], int(core.sum())):
            continue
        regions.append(Region(cx, cy, core.shape[1], core.shape[0], area, peak, float(values.mean()), _outline(core, cx, cy)))
    return sorted(regions, key=lambda r: -r.max_score)


def regions_at(anomaly_map: np.ndarray, threshold: float, op: OperatingPoint,
               band: np.ndarray | None = None) -> list[Region]:
    """The regions an operating point raises an alarm for: its zones' thresholds (or the one
    threshold), the selvedge band's (`band`: the frame's `selvedge_columns`) and its rules; a band
    left uninspected must already be zeroed in the map (`leaves_band_uninspected`). The engine's
    verdict and the line benchmark both judge by this."""
    return find_regions(anomaly_map, op.column_thresholds(anomaly_map.shape[1], threshold, band), rules=op)


class InferenceEngine:
    def __init__(self, backend, meta: BundleMeta, batch_size: int = 16, mode: str | None = None,
                 overlap: float | None = None, align: bool = True, reference: TextureReference | None = None,
                 types: TypeClassifier | None = None):
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
        self.operating_point: OperatingPoint | None = None
        """Region rules and zone thresholds on top of the threshold (`use_operating_point`)."""
        self._window = blend_window(*self.tile_size)
        # A scan whose weave runs at another angle than the training scans' is scored aligned
        # to them, and its map moved back (fabricad.data.alignment).
        # `reference`: one in memory (a model being trained or evaluated has no bundle yet).
        self.texture = reference if reference is not None else TextureReference.decode(meta.texture) if align else None
        self.types = types
        """the bundle's defect-type classifier (its `defect_types.json`); None: geometry rules"""

    @classmethod
    def load(cls, path: str | Path, backend: str = "auto", providers: list[str] | None = None,
             threads: int | None = None, spinning: Spinning = "during_run", device: str = "CPU",
             **kwargs) -> InferenceEngine:
        """An exported bundle on ONNX Runtime (`backend` onnx; `providers`) or OpenVINO (`backend`
        openvino; `device`); auto picks OpenVINO for an OpenVINO IR bundle, ONNX Runtime for an
        ONNX one. A checkpoint runs on PyTorch, which this runtime never imports:
        `fabricad.training.torch_backend.load_engine` opens either."""
        path = Path(path)
        if backend not in ("auto", "onnx", "openvino"):
            raise FabricadError(f"backend {backend!r}: this runtime runs bundles on ONNX Runtime (onnx) or OpenVINO "
                                "(openvino); a checkpoint on PyTorch opens with fabricad.training.torch_backend.load_engine")
        if not is_bundle(path):
            raise FabricadError(f"{path} is not an exported bundle; run `fabricad export` first, or open the "
                                "checkpoint with fabricad.training.torch_backend.load_engine (PyTorch)")
        if backend == "openvino" or (backend == "auto" and is_openvino_ir(read_bundle(path, verify=False)[0])):
            runner = OpenVinoBackend(path, threads, device)
        else:
            runner = OnnxBackend(path, providers, threads, spinning=spinning)
        return cls(runner, runner.meta, types=load_types(path), **kwargs)

    # --- threshold -----------------------------------------------------------------------------
    @property
    def threshold(self) -> Threshold:
        return self._threshold

    def use_threshold(self, threshold: Threshold) -> None:
        """Put a threshold decided elsewhere in force as it is: one kept by the service across
        restarts, a teach-in's, or the bundle's own again."""
        self._threshold = threshold.model_copy()

    def use_operating_point(self, operating_point: OperatingPoint | None) -> None:
        """Judge by region rules and zone thresholds from now on (None: by the threshold alone)."""
        self.operating_point = operating_point.model_copy() if operating_point is not None else None

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
    def _plan(self, image: np.ndarray, tile: tuple[int, int] | None = None
              ) -> tuple[list[np.ndarray], list[tuple[int, int, int, int]] | None, tuple[int, int]]:
        """Network-sized crops of `image` and where they go back (None = one resized view).
        Resized exactly as the training images were (`fabricad.data.images.resize`). `tile`:
        cut into tiles of that size whatever the model's mode (an aligned scan's windows)."""
        whole = tile is None and self.mode == "resize"
        tile = tile or self.tile_size
        if whole or image.shape[:2] == tile:
            return [reflect_pad(resize(image, self.input_size), self.context)], None, image.shape[:2]
        # Tiles at native scale; an image smaller than a tile in a dimension is padded by reflection.
        height, width = tile
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
            return to_shape(maps[0], shape)
        height = max(y + h for _, y, _, h in boxes)
        width = max(x + w for x, _, w, _ in boxes)
        total = np.zeros((height, width), np.float32)
        weight = np.zeros((height, width), np.float32)
        for amap, (x, y, w, h) in zip(maps, boxes):
            window = self._window if (h, w) == self._window.shape else blend_window(h, w)
            total[y : y + h, x : x + w] += to_shape(amap, (h, w)) * window
            weight[y : y + h, x : x + w] += window
        return (total / weight)[: shape[0], : shape[1]]

    def predict(self, images: list[np.ndarray], regions: bool = True) -> list[Result]:
        """Inspect several RGB images (any size; gray, RGB, RGBA, 8 or 16 bit)."""
        started = time.perf_counter()
        rgb = [to_rgb_uint8(np.asarray(img), order="rgb") for img in images]
        alignments = [self.texture.align(img) if self.texture is not None else IDENTITY for img in rgb]
        plans = [self._plan(a.apply(img)) for a, img in zip(alignments, rgb)]
        maps = self._run([crops for crops, _, _ in plans])
        elapsed_ms = (time.perf_counter() - started) * 1000 / max(len(images), 1)
        results = []
        for (_, boxes, shape), image_maps, alignment, image in zip(plans, maps, alignments, rgb):
            amap = alignment.undo(self._assemble(image_maps, boxes, shape))
            background, empty = self._not_fabric(image)
            result = self._judge(amap, background, empty, alignment, elapsed_ms, regions)
            self.name_types(image, result.regions)
            results.append(result)
        return results

    def name_types(self, image: np.ndarray, regions: list[Region]) -> None:
        """Give each region of `image` its defect type, by the classifier or the geometry rules."""
        if self.types is None:
            for r in regions:
                r.type = geometry_type(r.width, r.height).type
            return
        for r, verdict in zip(regions, self.types.classify(image, [(r.x, r.y, r.width, r.height) for r in regions])):
            r.type, r.type_confidence = verdict.type, verdict.confidence

    def predict_windows(self, sources: list[tuple[np.ndarray, list[tuple[int, int, int, int]]]],
                        regions: bool = True) -> list[list[Result]]:
        """Inspect given windows (x, y, width, height) of each source image, each window a result
        of its own: how evaluation and calibration score the tiles of a scan, through the very
        steps `predict` takes (alignment, the network at the trained scale, the fabric edges and
        ROI of the whole source). A window is cut from the source with its real neighbours as
        context; on a scan that needs aligning, the whole aligned scan is scored, its map moved
        back, and the windows cut from that map."""
        started = time.perf_counter()
        rgb = [to_rgb_uint8(np.asarray(img), order="rgb") for img, _ in sources]
        alignments = [self.texture.align(img) if self.texture is not None else IDENTITY for img in rgb]
        plans = []
        for image, alignment, (_, windows) in zip(rgb, alignments, sources):
            if alignment.identity:
                plans.append(([cut_window(image, box, self.input_size, self.context) for box in windows], None, None))
            else:
                height, width = windows[0][3], windows[0][2]
                plans.append(self._plan(alignment.apply(image), (height, width)))
        maps = self._run([crops for crops, _, _ in plans])
        elapsed_ms = (time.perf_counter() - started) * 1000 / max(sum(len(w) for _, w in sources), 1)
        results = []
        for (_, boxes, shape), image_maps, alignment, image, (_, windows) in zip(plans, maps, alignments, rgb, sources):
            if shape is None:  # each window scored on its own
                window_maps = [to_shape(m, (h, w)) for m, (_, _, w, h) in zip(image_maps, windows)]
            else:
                whole = alignment.undo(self._assemble(image_maps, boxes, shape))
                window_maps = [whole[y : y + h, x : x + w] for x, y, w, h in windows]
            background, empty = self._not_fabric(image)
            results.append([self._judge(m.copy(), None if background is None else background[x : x + w], empty,
                                        alignment, elapsed_ms, regions)
                            for m, (x, _, w, _) in zip(window_maps, windows)])
        return results

    def _run(self, crop_lists: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        """The backend's maps of every crop, batched across images; grouped as given."""
        crops = [c for crops in crop_lists for c in crops]
        maps: list[np.ndarray] = []
        for start in range(0, len(crops), self.batch_size):
            batch = np.ascontiguousarray(np.stack(crops[start : start + self.batch_size]))
            batch_maps, _ = self.backend(batch)
            maps.extend(batch_maps)
        grouped, k = [], 0
        for crops in crop_lists:
            grouped.append(maps[k : k + len(crops)])
            k += len(crops)
        return grouped

    def _not_fabric(self, image: np.ndarray) -> tuple[np.ndarray | None, bool]:
        """The columns of `image` beyond its fabric edges (None when the model has no edges), and
        whether a model without the ROI sees nothing but bare background in it."""
        edges = bool(self.meta.model.get("fabric_edges"))  # absent from bundles exported before it
        roi = bool(self.meta.model.get("fabric_roi"))
        # A model without the ROI (its training images showed no background) still tells a
        # frame of bare background from fabric: a web break is not inspected cloth.
        return (background_columns(image) if edges else None), (not roi and only_background(image))

    def _judge(self, amap: np.ndarray, background: np.ndarray | None, empty: bool, alignment: Alignment,
               latency_ms: float, regions: bool) -> Result:
        """The verdict on a map on the image's own pixels: the background beyond the fabric
        edges (and a selvedge band an operating point leaves uninspected) and a frame without
        fabric score zero; the score is the map's maximum outside the operating point's selvedge
        band, whose own maximum is reported beside it."""
        op = self.operating_point
        band = None
        if background is not None:
            amap[:, background] = 0.0
            if op is not None and op.selvedge_mm:
                band = op.selvedge_columns(background)
                band = band if band.any() else None
        if empty:
            amap[:] = 0.0
        threshold = self._threshold.value
        rest = amap[:, ~band] if band is not None else amap
        score = float(rest.max()) if rest.size else 0.0
        normalized = T.normalise(score, threshold, self.meta.score_scale)
        selvedge_score = None
        if band is not None:
            selvedge_score = float(amap[:, band].max())
            if op.leaves_band_uninspected():
                amap[:, band] = 0.0
            else:  # how sure: the band's own score against its own threshold counts too
                normalized = max(normalized, T.normalise(selvedge_score, op.selvedge_threshold, self.meta.score_scale))
        if op is None:
            is_defect = score > threshold
            found = find_regions(amap, threshold) if is_defect and regions else []
        else:  # zones and region rules: the verdict is whether any region survives them
            found = regions_at(amap, threshold, op, band)
            is_defect = bool(found)
            found = found if regions else []
        edges_or_roi = background is not None or bool(self.meta.model.get("fabric_roi"))
        return Result(
            score=score,
            normalized_score=normalized,
            selvedge_score=selvedge_score,
            is_defect=is_defect,
            threshold=threshold,
            regions=found,
            anomaly_map=amap,
            latency_ms=latency_ms,
            alignment=alignment,
            # The ROI zeroes background exactly; a map of fabric is never zero everywhere.
            fabric_in_view=not empty and (not edges_or_roi or bool(np.any(amap))),
        )

    def inspect(self, image: np.ndarray) -> Result:
        return self.predict([image])[0]

    @property
    def description(self) -> dict:
        return {"backend": self.backend.name, "name": self.meta.name, "precision": self.meta.precision,
                "input": list(self.input_size), "mode": self.mode, "threshold": self._threshold.model_dump(),
                "texture_alignment": self.texture is not None}
