"""The defect-type classifier as data: a multinomial logistic regression over standardised
descriptors, stored as JSON beside the model in its bundle (`defect_types.json`) and applied with
NumPy, so the line PC needs neither PyTorch nor scikit-learn and a bundle never carries pickle.

The file also keeps the examples it was fitted on (their descriptors and labels, no pixels), so
the service can refit it with its operators' labels added without the datasets at hand.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from fabricad.defect_types.descriptors import FEATURE_NAMES, describe
from fabricad.errors import FabricadError

TYPES_FILE = "defect_types.json"
UNKNOWN = "unknown"
GEOMETRY_TYPES = ("spot", "line_along", "line_across")
LINE_ELONGATION = 3.0
"""a box at least this many times longer than wide is a line (geometry rules)"""


@dataclass(frozen=True)
class TypeVerdict:
    type: str
    confidence: float | None
    """the classifier's probability of `type`; None for a geometry rule"""
    source: str
    """"classifier" or "geometry\""""


def geometry_type(width: float, height: float) -> TypeVerdict:
    """The rule with no training: a line along the roll (image rows run along it: a broken end, a
    warp streak), a line across it (a broken pick, a weft bar) or a spot (a hole, a knot, a nep)."""
    small, large = sorted((max(width, 1e-9), max(height, 1e-9)))
    if large / small < LINE_ELONGATION:
        return TypeVerdict(GEOMETRY_TYPES[0], None, "geometry")
    return TypeVerdict(GEOMETRY_TYPES[1] if height > width else GEOMETRY_TYPES[2], None, "geometry")


class Example(BaseModel):
    features: list[float]
    label: str
    source: str = Field(description="where the label came from: a dataset's name, or `service` for an operator's")
    group: str = Field("", description="the image it is from (leave-one-image-out evaluation keeps its defects together)")


class TypeClassifier(BaseModel):
    classes: list[str]
    feature_names: list[str] = Field(default_factory=lambda: list(FEATURE_NAMES))
    mean: list[float]
    scale: list[float]
    coef: list[list[float]] = Field(description="one row of weights per class, on standardised descriptors")
    intercept: list[float]
    unknown_below: float = Field(0.5, ge=0, le=1, description="a top probability below this answers `unknown`")
    trained_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    examples: list[Example] = Field(default_factory=list)
    validation: dict | None = Field(None, description="leave-one-image-out figures of the fit (`fit.leave_one_image_out`)")

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities for descriptor rows (n × features)."""
        x = (np.atleast_2d(features) - np.asarray(self.mean)) / np.asarray(self.scale)
        logits = x @ np.asarray(self.coef).T + np.asarray(self.intercept)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def judge(self, features: np.ndarray) -> list[TypeVerdict]:
        out = []
        for row in self.probabilities(features):
            k = int(row.argmax())
            kind = self.classes[k] if row[k] >= self.unknown_below else UNKNOWN
            out.append(TypeVerdict(kind, round(float(row[k]), 4), "classifier"))
        return out

    def classify(self, image: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[TypeVerdict]:
        if not boxes:
            return []
        return self.judge(np.stack([describe(image, box) for box in boxes]))

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(example.label for example in self.examples))

    def save(self, folder: Path) -> Path:
        path = Path(folder) / TYPES_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=1))
        tmp.replace(path)  # the service's models-folder watcher never reads half a file
        return path


def load_types(folder: str | Path) -> TypeClassifier | None:
    """The bundle's classifier, or None where it has none. A file that does not fit its own
    descriptors (another fabricad's, edited by hand) is an error, not a silent fallback."""
    path = Path(folder) / TYPES_FILE
    if not path.is_file():
        return None
    try:
        model = TypeClassifier.model_validate_json(path.read_text())
    except (ValidationError, ValueError) as exc:
        raise FabricadError(f"{path}: not a defect-type classifier ({str(exc).splitlines()[0]})") from None
    n = len(FEATURE_NAMES)
    if (model.feature_names != list(FEATURE_NAMES) or len(model.mean) != n or len(model.scale) != n
            or len(model.coef) != len(model.classes) or any(len(row) != n for row in model.coef)):
        raise FabricadError(f"{path}: made for other descriptors than this fabricad's ({n}: {', '.join(FEATURE_NAMES)})")
    return model
