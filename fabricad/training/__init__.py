from fabricad.training.checkpoint import (
    Checkpoint,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from fabricad.training.trainer import TrainResult, train

__all__ = ["Checkpoint", "TrainResult", "load_model", "read_checkpoint", "save_checkpoint", "train"]
