"""Choosing the defect threshold.

On a line, defects are rare and unlabelled at first, so the default comes from normal images
alone: the score above which only `target_fpr` of them lie. Once operators have labelled
defects, the F1-optimal threshold on that labelled set is the alternative.
"""

from __future__ import annotations

import math

import numpy as np

from fabricad.inference.bundle import Threshold
from fabricad.inference.metrics import f1_max, threshold_for_fpr

DEFAULT_TARGET_FPR = 0.01

FEW_CALIBRATION_IMAGES = 10
"""Below this many held-out normal images (or tiles) the calibrated threshold is a guess: the
maximum of n scores sits near the n/(n+1) quantile, so 10 cannot tell 1 % from 9 %, and AITEX's
32 held-out tiles already gave 8 % false alarms where 1 % was asked (BENCHMARKS.md)."""


def from_normal_scores(scores: list[float] | np.ndarray, target_fpr: float = DEFAULT_TARGET_FPR) -> Threshold:
    scores = np.asarray(scores, dtype=np.float64)
    return Threshold(
        value=threshold_for_fpr(scores, target_fpr), method="normal-quantile", target_fpr=target_fpr,
        calibration_count=int(scores.size),
    )


def from_labelled(labels: np.ndarray, scores: np.ndarray) -> Threshold:
    _, threshold = f1_max(np.asarray(labels), np.asarray(scores))
    if threshold is None:
        raise ValueError("F1 calibration needs both normal and defective examples")
    return Threshold(value=threshold, method="f1", calibration_count=len(scores))


def score_scale(normal_scores: list[float] | np.ndarray) -> float:
    """Spread used by the normalised score; never zero."""
    scores = np.asarray(normal_scores, dtype=np.float64)
    spread = float(scores.std()) if scores.size > 1 else 0.0
    return max(spread, 1e-3 * max(float(np.abs(scores).mean()) if scores.size else 1.0, 1e-6))


def normalise(score: float, threshold: float, scale: float) -> float:
    """Score in 0..1 with the threshold at exactly 0.5."""
    z = (score - threshold) / scale
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))
