"""Metrics against hand-built cases with known answers and brute-force references."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fabricad.inference import metrics as M


def test_auroc_and_undefined_cases():
    assert M.auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert M.auroc(np.array([0, 0, 1, 1]), np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert M.auroc(np.array([0, 0]), np.array([0.1, 0.2])) is None


def test_aupro_perfect_detection():
    masks = np.zeros((1, 10, 10), bool)
    masks[0, 2:4, 2:4] = True
    assert M.aupro(masks, masks.astype(float)) == pytest.approx(1.0)


def test_aupro_known_values():
    # 10 % of the normal pixels fire first, the region only at the lowest threshold:
    # PRO reaches 0.2/0.9 at FPR 0.3, so the area is 0.5*0.2*(0.2/0.9) / 0.3.
    masks = np.zeros((1, 10, 10), bool)
    masks[0, 0, 0:4] = True
    maps = np.zeros((1, 10, 10))
    normal_pixels = np.flatnonzero(~masks.ravel())
    maps.ravel()[normal_pixels[: round(0.1 * normal_pixels.size)]] = 1.0
    fpr_first = round(0.1 * normal_pixels.size) / normal_pixels.size
    expected_pro_at_03 = (0.3 - fpr_first) / (1 - fpr_first)
    expected = 0.5 * (0.3 - fpr_first) * expected_pro_at_03 / 0.3
    assert M.aupro(masks, maps) == pytest.approx(expected, abs=1e-9)

    # Two regions, one found at the top threshold and one never: PRO jumps to 0.5 at FPR 0,
    # then rises linearly to 1 at FPR 1.
    masks = np.zeros((1, 10, 10), bool)
    masks[0, 0, 0:2] = True
    masks[0, 9, 8:10] = True
    maps = np.zeros((1, 10, 10))
    maps[0, 0, 0:2] = 1.0
    assert M.aupro(masks, maps) == pytest.approx(0.3 * (0.5 + 0.65) / 2 / 0.3)


def brute_force_aupro(masks: np.ndarray, maps: np.ndarray, max_fpr: float = 0.3) -> float:
    """Direct definition: threshold at every distinct score, loop over regions explicitly."""
    import cv2

    regions = []
    for i, mask in enumerate(masks):
        n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        regions += [(i, labels == k) for k in range(1, n)]
    points = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:
        predicted = maps >= t
        fpr = (predicted & ~masks).sum() / (~masks).sum()
        pro = np.mean([(predicted[i] & region).sum() / region.sum() for i, region in regions])
        points.append((fpr, pro))
    fpr, pro = map(np.array, zip(*points))
    grid_pro = np.interp(max_fpr, fpr, pro)
    keep = fpr <= max_fpr
    x, y = np.r_[fpr[keep], max_fpr], np.r_[pro[keep], grid_pro]
    return float(np.trapezoid(y, x) / max_fpr)


@pytest.mark.parametrize("seed", range(6))
def test_aupro_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, 12, 12), bool)
    for _ in range(4):
        i, y, x = rng.integers(0, 3), rng.integers(0, 10), rng.integers(0, 10)
        masks[i, y : y + rng.integers(1, 3), x : x + rng.integers(1, 4)] = True
    maps = rng.random((3, 12, 12)).round(2) + masks * rng.random() * 0.5  # ties included
    assert M.aupro(masks, maps) == pytest.approx(brute_force_aupro(masks, maps), abs=1e-9)


def test_pixel_auroc_matches_sklearn():
    rng = np.random.default_rng(0)
    masks = rng.random((2, 8, 8)) > 0.8
    maps = rng.random((2, 8, 8)) + masks
    assert M.pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))


@pytest.mark.parametrize("seed", range(4))
def test_float16_maps_are_scored_exactly_from_their_levels(seed):
    """Evaluation keeps maps in float16 and the pixel metrics count pixels per float16 level
    instead of sorting them; negative scores, zeros of both signs and ties included, the figures
    must be those of the pixels themselves (sklearn on every pixel, the brute-force AUPRO)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((4, 16, 16), bool)
    for _ in range(5):
        i, y, x = rng.integers(0, 4), rng.integers(0, 13), rng.integers(0, 13)
        masks[i, y : y + rng.integers(1, 4), x : x + rng.integers(1, 4)] = True
    masks[0, 0, :2] = masks[1, 0, :1] = True  # defect pixels at both zeros
    maps = (rng.normal(0, 1, masks.shape) + 1.5 * masks).astype(np.float16)
    maps[0, 0, :4] = -0.0
    maps[1, 0, :4] = 0.0
    reference = maps.astype(np.float64)
    assert M.pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), reference.ravel()), abs=1e-12)
    assert M.aupro(masks, maps) == pytest.approx(brute_force_aupro(masks, reference), abs=1e-9)
    assert M.aupro(masks, maps) == pytest.approx(M.aupro(masks, reference), abs=1e-12)  # float16 levels vs np.unique


def test_f1_max_and_calibrated_recall():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.5, 0.9])
    f1, threshold = M.f1_max(labels, scores)
    assert f1 == pytest.approx(0.8) and threshold == pytest.approx(0.5)
    normal_calibration = np.linspace(0, 1, 101)  # 1 % above 0.99
    t = M.threshold_for_fpr(normal_calibration, 0.01)
    assert t == pytest.approx(0.99)
    recall, fpr = M.rates_at(labels, scores, 0.55)
    assert recall == 0.5 and fpr == pytest.approx(1 / 3)


def test_group_max_for_full_images():
    labels, scores = M.group_max(["a", "a", "b", "b"], np.array([0, 1, 0, 0]), np.array([0.1, 0.7, 0.9, 0.2]))
    assert labels.tolist() == [1, 0] and scores.tolist() == [0.7, 0.9]


def test_greedy_coreset_covers_the_clusters():
    """Three tight clusters, one far away: a 3-point k-center coreset takes one from each."""
    import torch

    from fabricad.baselines.patchcore import greedy_coreset

    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 50.0]])
    points = torch.cat([c + 0.1 * torch.randn(100, 2, generator=generator) for c in centres])
    chosen = greedy_coreset(points, ratio=0.01, projection_dim=64)
    assert len(chosen) == 3
    assert sorted((int(i) // 100) for i in chosen) == [0, 1, 2]


def test_threshold_from_few_normal_scores_is_not_just_their_maximum():
    """Under 1/fpr normal scores, the empirical 99 % quantile is their maximum, which n scores put
    at about 1/(n+1) false alarms (3 % for 32). The calibrated threshold must come much nearer
    the 1 % asked for, and never below a normal score already seen."""
    rng = np.random.default_rng(0)
    exceed_max, exceed = [], []
    for _ in range(400):
        scores = rng.normal(0.5, 0.1, 32)
        t = M.threshold_for_fpr(scores, 0.01)
        assert t >= scores.max()
        exceed_max.append(norm_sf(scores.max(), 0.5, 0.1))
        exceed.append(norm_sf(t, 0.5, 0.1))
    assert np.mean(exceed_max) == pytest.approx(1 / 33, rel=0.15)  # the old rule, for comparison
    assert 0.005 < np.mean(exceed) < 0.015
    # with enough scores, the empirical quantile itself; one score or no spread: that score
    assert M.threshold_for_fpr(np.linspace(0, 1, 101), 0.01) == pytest.approx(0.99)
    assert M.threshold_for_fpr(np.array([0.3]), 0.01) == 0.3
    assert M.threshold_for_fpr(np.full(10, 0.4), 0.01) == 0.4


def norm_sf(x: float, mean: float, sd: float) -> float:
    from statistics import NormalDist

    return 1.0 - NormalDist(mean, sd).cdf(x)
