"""Detection metrics as defined in METHOD.md.

AUROC comes from scikit-learn. AUPRO (MVTec AD's per-region overlap) has no maintained library
implementation without a heavy framework attached, so it is written here, vectorised: sort every
pixel once, give each defect pixel the weight 1 / (area of its region x number of regions) and
each normal pixel 1 / (number of normal pixels); cumulative sums in descending score order are
then PRO and FPR at every threshold at once.

scikit-learn is imported inside the functions that use it: the service imports this module for
threshold calibration, and two seconds of import at every start buys it nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import cv2
import numpy as np


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC, or None when only one class is present (the metric is undefined)."""
    labels = np.asarray(labels).ravel()
    if labels.min() == labels.max():
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, np.asarray(scores).ravel()))


def score_levels(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, keys): the score levels in ascending order and each pixel's level index. The
    pixel metrics then work on counts per level instead of sorting every pixel: AITEX fabric 02
    has 46 M test pixels, whose sorted float64 copies took `fabricad eval` to 4.3 GB. Float16
    maps (what evaluation keeps) have at most 65,536 levels, read from their bits without a
    sort; other maps are sorted once (np.unique). Exact either way: ties stay ties."""
    if maps.dtype == np.float16:
        bits = maps.view(np.uint16).astype(np.int32)
        bits[bits == 0x8000] = 0  # -0 is 0: one level
        keys = np.where(bits >= 0x8000, 0xFFFF - bits, bits + 0x8000)  # increasing with the value
        level = np.arange(0x10000, dtype=np.int32)
        values = np.where(level >= 0x8000, level - 0x8000, 0xFFFF - level).astype(np.uint16).view(np.float16)
        return values, keys
    values, keys = np.unique(maps, return_inverse=True)
    return values, keys.reshape(maps.shape)


def level_counts(masks: np.ndarray, keys: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Normal and defect pixels per score level."""
    masks = masks.astype(bool)
    return np.bincount(keys[~masks], minlength=levels), np.bincount(keys[masks], minlength=levels)


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float | None:
    """ROC AUC over every pixel, from scikit-learn on the pixels' counts per score level (the
    same curve, ties included, as on the pixels themselves)."""
    values, keys = score_levels(maps)
    normal, defect = level_counts(masks, keys, len(values))
    if not normal.any() or not defect.any():
        return None
    from sklearn.metrics import roc_auc_score

    seen_normal, seen_defect = normal > 0, defect > 0  # only the levels some pixel has
    labels = np.r_[np.zeros(seen_normal.sum()), np.ones(seen_defect.sum())]
    scores = np.r_[values[seen_normal], values[seen_defect]].astype(np.float64)
    weights = np.r_[normal[seen_normal], defect[seen_defect]].astype(np.float64)
    return float(roc_auc_score(labels, scores, sample_weight=weights))


def label_regions(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected ground-truth regions (8-connectivity) numbered 1..R across all images."""
    regions = np.zeros(masks.shape, dtype=np.int32)
    count = 0
    for i, mask in enumerate(masks):
        n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        regions[i] = np.where(labels > 0, labels + count, 0)
        count += n - 1
    return regions, count


@dataclass
class ProCurve:
    fpr: np.ndarray
    pro: np.ndarray


def pro_curve(masks: np.ndarray, maps: np.ndarray) -> ProCurve:
    """PRO and FPR at every distinct threshold, from the highest score down: each defect pixel
    weighs 1 / (its region's area x number of regions), each normal pixel 1 / (number of normal
    pixels), summed per score level (`score_levels`) and accumulated from the top level."""
    masks = masks.astype(bool)
    regions, count = label_regions(masks)
    values, keys = score_levels(maps)
    normal, _ = level_counts(masks, keys, len(values))
    if count == 0 or not normal.any():
        raise ValueError("AUPRO needs both defect regions and normal pixels")
    areas = np.bincount(regions.ravel(), minlength=count + 1).astype(np.float64)
    inside = regions[masks]
    overlap = np.bincount(keys[masks], weights=1.0 / (areas[inside] * count), minlength=len(values))
    present = (normal > 0) | (overlap > 0)
    descending = slice(None, None, -1)  # pixels at one level switch together: one point per level
    fpr = np.cumsum(normal[descending] / normal.sum())[present[descending]]
    pro = np.cumsum(overlap[descending])[present[descending]]
    return ProCurve(np.r_[0.0, fpr], np.r_[0.0, pro])


def aupro(masks: np.ndarray, maps: np.ndarray, max_fpr: float = 0.3) -> float | None:
    """Area under the PRO curve for FPR in [0, max_fpr], divided by max_fpr."""
    if not masks.any() or masks.all():
        return None
    curve = pro_curve(masks, maps)
    fpr, pro = curve.fpr, curve.pro
    keep = fpr <= max_fpr
    x, y = fpr[keep], pro[keep]
    if x[-1] < max_fpr and keep.sum() < fpr.size:  # close the area exactly at max_fpr
        j = keep.sum()
        t = (max_fpr - fpr[j - 1]) / (fpr[j] - fpr[j - 1])
        x = np.r_[x, max_fpr]
        y = np.r_[y, pro[j - 1] + t * (pro[j] - pro[j - 1])]
    return float(np.trapezoid(y, x) / max_fpr)


def f1_max(labels: np.ndarray, scores: np.ndarray) -> tuple[float | None, float | None]:
    """Best F1 over thresholds and the threshold reaching it."""
    labels = np.asarray(labels)
    if labels.min() == labels.max():
        return None, None
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
    best = int(np.argmax(f1[:-1]))  # the last point has no threshold
    return float(f1[best]), float(thresholds[best])


def threshold_for_fpr(normal_scores: np.ndarray, fpr: float) -> float:
    """Threshold above which `fpr` of normal images would lie, from normal images only.

    With at least 1/fpr scores, their empirical quantile. With fewer, that quantile is simply
    their maximum, and the maximum of n scores sits at about the n/(n+1) quantile of the
    distribution (97 % for the 32 held-out tiles of an AITEX fabric): a threshold for about
    3 % false alarms, not 1 %. So the quantile of a normal distribution fitted to all of them
    is used when it is higher. On AITEX-256 (BENCHMARKS.md, "calibrating the threshold") that
    took the test's false-alarm rate from 13.9 % to 8.2 % at a recall of 0.62 instead of 0.67."""
    normal_scores = np.asarray(normal_scores, dtype=np.float64)
    if normal_scores.size == 0:
        raise ValueError("no normal scores to calibrate from")
    empirical = float(np.quantile(normal_scores, 1.0 - fpr, method="higher"))
    spread = float(normal_scores.std(ddof=1)) if normal_scores.size > 1 else 0.0
    if normal_scores.size * fpr >= 1 or spread == 0:
        return empirical
    return max(empirical, NormalDist(float(normal_scores.mean()), spread).inv_cdf(1.0 - fpr))


def rates_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float | None, float | None]:
    """(recall on defective, false-alarm rate on normal) when flagging scores > threshold."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    flagged = scores > threshold
    recall = float(flagged[labels == 1].mean()) if (labels == 1).any() else None
    false_alarms = float(flagged[labels == 0].mean()) if (labels == 0).any() else None
    return recall, false_alarms


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr


def group_max(groups: list[str], labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full-image labels and scores: an image is defective if any of its tiles' `labels` is (pass
    each tile's `Sample.full_image_label`); its score is the max."""
    index: dict[str, int] = {}
    for g in groups:
        index.setdefault(g, len(index))
    ids = np.array([index[g] for g in groups])
    image_scores = np.full(len(index), -np.inf)
    np.maximum.at(image_scores, ids, scores)
    image_labels = np.zeros(len(index), dtype=int)
    np.maximum.at(image_labels, ids, np.asarray(labels, dtype=int))
    return image_labels, image_scores
