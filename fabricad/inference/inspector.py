"""`Inspector`: an exported bundle behind three lines of Python, for notebooks and integrators.

    from fabricad import Inspector
    inspector = Inspector("models/denim")
    inspection = inspector.inspect("scan.png")      # a path or an RGB array
    inspection.verdict, inspection.regions           # "DEFECT", [Region(x=…, …)]
    inspection.save("scan-overlay.png")              # the captioned heatmap overlay
    inspection.plot()                                # in a notebook (matplotlib); it also shows by itself

It is the engine the service and `fabricad predict` run (`InferenceEngine`, ONNX Runtime, no
PyTorch), with the bundle's calibrated threshold; nothing here scores differently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fabricad.data.images import check_inspectable, read_image, to_rgb_uint8
from fabricad.errors import FabricadError
from fabricad.inference.engine import InferenceEngine, Region, Result
from fabricad.inference.visualize import _pyplot, caption, overlay


def verdict_of(result: Result) -> str:
    """OK, DEFECT, or NO FABRIC (nothing but background in view: not a pass)."""
    return "DEFECT" if result.is_defect else ("OK" if result.fabric_in_view else "NO FABRIC")


def captioned_overlay(image: np.ndarray, result: Result) -> np.ndarray:
    """The heatmap over the image with the verdict, score and threshold written above it: what
    a person opens to see why a scan was called what it was."""
    picture = overlay(image, result.anomaly_map, result.threshold)
    return caption(picture, f"{verdict_of(result)}  score {result.score:.3f} / threshold {result.threshold:.3f}",
                   alarm=result.is_defect)


@dataclass
class Inspection:
    """One inspected image: the engine's `result` and the image it was made from."""

    result: Result
    image: np.ndarray = field(repr=False)
    source: str | None = None

    @property
    def verdict(self) -> str:
        return verdict_of(self.result)

    @property
    def is_defect(self) -> bool:
        return self.result.is_defect

    @property
    def score(self) -> float:
        return self.result.score

    @property
    def threshold(self) -> float:
        return self.result.threshold

    @property
    def regions(self) -> list[Region]:
        return self.result.regions

    @property
    def anomaly_map(self) -> np.ndarray:
        return self.result.anomaly_map

    def overlay(self) -> np.ndarray:
        """The captioned overlay, RGB uint8."""
        return captioned_overlay(self.image, self.result)

    def save(self, path: str | Path) -> Path:
        """Write the captioned overlay (PNG, JPEG, … by the suffix); `.json` writes the result instead."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps({"source": self.source, **self.as_dict()}, indent=2))
        elif not cv2.imwrite(str(path), cv2.cvtColor(self.overlay(), cv2.COLOR_RGB2BGR)):
            raise FabricadError(f"{path}: cannot write an image there (unknown suffix or unwritable folder)")
        return path

    def plot(self, ax=None):
        """Draw the overlay on a matplotlib axes (a new figure when none); returns the axes."""
        plt = _pyplot()
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 8 * self.image.shape[0] / max(self.image.shape[1], 1) + 0.5))
        ax.imshow(overlay(self.image, self.result.anomaly_map, self.result.threshold))
        ax.set_title(f"{self.verdict}: score {self.score:.3f} / threshold {self.threshold:.3f}, {self._regions_text}")
        ax.axis("off")
        return ax

    def as_dict(self) -> dict:
        return self.result.as_dict() | {"verdict": self.verdict}

    def _repr_png_(self) -> bytes:
        """Jupyter shows an inspection as its overlay."""
        ok, data = cv2.imencode(".png", cv2.cvtColor(self.overlay(), cv2.COLOR_RGB2BGR))
        return data.tobytes() if ok else b""

    def __repr__(self) -> str:
        where = f" {self.source}" if self.source else ""
        return f"<Inspection{where}: {self.verdict}, score {self.score:.4f} / threshold {self.threshold:.4f}, {self._regions_text}>"

    @property
    def _regions_text(self) -> str:
        return f"{len(self.regions)} region{'s' * (len(self.regions) != 1)}"


class Inspector:
    """An exported bundle (`fabricad export --out DIR`), loaded once, inspecting any number of images.

    `threshold`: a value to use instead of the bundle's calibrated one (read and set it later as
    `inspector.threshold`). `providers` and `threads` go to ONNX Runtime, as the service's settings do."""

    def __init__(self, bundle: str | Path, *, threshold: float | None = None, providers: list[str] | None = None,
                 threads: int | None = None, align: bool = True, batch_size: int = 16):
        self.engine = InferenceEngine.load(bundle, providers=providers, threads=threads, align=align, batch_size=batch_size)
        self.path = Path(bundle)
        if threshold is not None:
            self.threshold = threshold

    @classmethod
    def from_engine(cls, engine: InferenceEngine) -> Inspector:
        """Around an engine made elsewhere, e.g. a checkpoint on PyTorch
        (`fabricad.training.torch_backend.load_engine`)."""
        inspector = cls.__new__(cls)
        inspector.engine, inspector.path = engine, None
        return inspector

    @property
    def name(self) -> str:
        return self.engine.meta.name

    @property
    def threshold(self) -> float:
        return self.engine.threshold.value

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.engine.set_threshold(float(value))

    def inspect(self, image: np.ndarray | str | Path) -> Inspection:
        return self.inspect_many([image])[0]

    def inspect_many(self, images: list[np.ndarray | str | Path]) -> list[Inspection]:
        """Several images at once (tiles of all of them are batched together)."""
        loaded = [self._load(image) for image in images]
        results = self.engine.predict([image for image, _ in loaded])
        return [Inspection(result, image, source) for result, (image, source) in zip(results, loaded, strict=True)]

    @staticmethod
    def _load(image: np.ndarray | str | Path) -> tuple[np.ndarray, str | None]:
        if isinstance(image, (str, Path)):
            array, source = read_image(image), str(image)
        elif isinstance(image, np.ndarray):
            array, source = to_rgb_uint8(image, "image", order="rgb"), None
        else:
            raise FabricadError(f"inspect takes a path or an RGB numpy array, not {type(image).__name__}")
        check_inspectable(*array.shape[:2], source=source or "image")
        return array, source

    def __repr__(self) -> str:
        return f"<Inspector {self.name}: threshold {self.threshold:.4f}, {self.engine.backend.name}>"
