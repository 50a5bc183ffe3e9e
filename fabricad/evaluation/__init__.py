from fabricad.evaluation.evaluate import (
    Predictions,
    compute_metrics,
    evaluate_checkpoint,
    format_metrics,
    predict,
    write_report,
)

__all__ = ["Predictions", "compute_metrics", "evaluate_checkpoint", "format_metrics", "predict", "write_report"]
