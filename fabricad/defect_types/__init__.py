"""Defect types: what kind of defect a region is (hole, broken end, nep, …).

Runs beside the anomaly model, not inside it: a region's box on the image it was found in is
described by a few dozen numbers (`descriptors`), which a small classifier stored as JSON in the
bundle turns into a type with a confidence (`classifier`). Without a trained classifier, geometry
rules that need no training say whether a region runs along the roll, across it or is a spot.
Nothing here imports PyTorch; fitting a classifier needs scikit-learn (`fit`), applying one does not.
"""

from fabricad.defect_types.classifier import (
    TYPES_FILE,
    TypeClassifier,
    TypeVerdict,
    geometry_type,
    load_types,
)
from fabricad.defect_types.descriptors import FEATURE_NAMES, describe

__all__ = ["FEATURE_NAMES", "TYPES_FILE", "TypeClassifier", "TypeVerdict", "describe", "geometry_type", "load_types"]
