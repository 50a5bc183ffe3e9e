"""Model registry: a name in the config → a model family."""

from __future__ import annotations

from fabricad.backbones import TeacherEncoder, pick_layers
from fabricad.config import ModelConfig
from fabricad.models.base import DistillationModel
from fabricad.models.dbfad import DBFAD
from fabricad.models.dbfad.torch_model import DEFAULT_STRIDES as DBFAD_STRIDES
from fabricad.models.rd import ReverseDistillation
from fabricad.models.rd.torch_model import DEFAULT_STRIDES as RD_STRIDES

MODELS: dict[str, tuple[type[DistillationModel], tuple[int, ...]]] = {
    "rd": (ReverseDistillation, RD_STRIDES),
    "dbfad": (DBFAD, DBFAD_STRIDES),
}


def create_model(config: ModelConfig) -> DistillationModel:
    """Build the teacher (loading its weights) and the model family named in `config`."""
    family, strides = MODELS[config.name]
    layers = config.teacher.layers or pick_layers(config.teacher.name, tuple(config.strides or strides))
    model = family(TeacherEncoder(config.teacher, layers), config)
    model.map_scales()  # a map_max_stride that leaves no scale fails here, not at the first image
    return model


__all__ = ["MODELS", "DistillationModel", "create_model"]
