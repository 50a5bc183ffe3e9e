"""Evaluation: metrics, pictures and `fabricad eval`. The evaluation loop (torch) is imported on
first use, so that the service can draw overlays and the engine calibrate thresholds without it."""

__all__ = ["Predictions", "compute_metrics", "evaluate_checkpoint", "format_metrics", "predict", "texture_of",
           "write_report"]


def __getattr__(name: str):
    if name in __all__:
        from fabricad.evaluation import evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
