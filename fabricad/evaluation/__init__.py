from fabricad.evaluation.evaluate import Predictions, compute_metrics, predict, write_report

__all__ = ["Predictions", "compute_metrics", "predict", "write_report"]
