"""Evaluation: `fabricad eval`'s loop over a dataset (training side: it scores checkpoints with
torch). The metrics and pictures it reports are runtime code in `fabricad.inference`."""

from fabricad.evaluation.evaluate import (
    Predictions,
    compute_metrics,
    evaluate_checkpoint,
    format_metrics,
    predict,
    texture_of,
    write_report,
)

__all__ = ["Predictions", "compute_metrics", "evaluate_checkpoint", "format_metrics", "predict", "texture_of",
           "write_report"]
