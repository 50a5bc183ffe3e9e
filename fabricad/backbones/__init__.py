from fabricad.backbones.teacher import (
    TeacherEncoder,
    feature_strides,
    pick_layers,
    state_hash,
)
from fabricad.backbones.weights import PACKAGED_WEIGHTS, LoadedWeights, resolve_weights

__all__ = [
    "PACKAGED_WEIGHTS",
    "LoadedWeights",
    "TeacherEncoder",
    "feature_strides",
    "pick_layers",
    "resolve_weights",
    "state_hash",
]
