"""Pictures a person looks at instead of numbers: overlays, ROC/PRO curves, score histograms."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np


@cache
def _pyplot():
    """matplotlib for the report's plots, imported on first use: the service draws overlays with
    OpenCV alone and need not load it."""
    import matplotlib

    matplotlib.use("Agg")  # headless: reports are rendered on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def heatmap(anomaly_map: np.ndarray, threshold: float) -> np.ndarray:
    """RGB colour map on a fixed scale [0, 2 x threshold]: the same colour means the same thing
    in every picture, and the threshold sits in the middle of the scale."""
    scaled = np.clip(anomaly_map / max(2 * threshold, 1e-12), 0, 1)
    return cv2.cvtColor(cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, anomaly_map: np.ndarray, threshold: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Heatmap blended over an RGB image, red contours where the map exceeds `threshold`,
    green contours of the ground truth when given (colours as in `heatmap`)."""
    height, width = image.shape[:2]
    amap = cv2.resize(anomaly_map.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    out = cv2.addWeighted(image, 0.6, heatmap(amap, threshold), 0.4, 0)
    if mask is not None and mask.any():
        gt = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(gt, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (0, 255, 0), 1)
    contours, _ = cv2.findContours((amap > threshold).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (255, 0, 0), 2)
    return out


def caption(image: np.ndarray, text: str, alarm: bool = False) -> np.ndarray:
    """`image` with a band above it saying `text` (red for an alarm, grey otherwise), so an
    overlay opened on its own still says what was decided about it."""
    width = max(image.shape[1], 8)
    scale = max(0.35, min(0.8, width / 700))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    if tw > width - 8:  # a narrow image: the smallest legible size, cut to what fits
        scale = 0.35
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    band = np.full((th + base + 8, width, 3), (200, 30, 30) if alarm else (60, 60, 60), np.uint8)
    cv2.putText(band, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    if image.shape[1] < width:
        image = cv2.copyMakeBorder(image, 0, 0, 0, width - image.shape[1], cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return np.vstack([band, image])


def save_rgb(path: Path, image: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def plot_roc(path: Path, fpr: np.ndarray, tpr: np.ndarray, auc: float | None, title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, lw=2, label=f"AUROC {auc:.3f}" if auc is not None else "ROC")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    ax.set(xlabel="false-alarm rate", ylabel="defect recall", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_pro(path: Path, fpr: np.ndarray, pro: np.ndarray, value: float | None, max_fpr: float = 0.3) -> None:
    plt = _pyplot()
    keep = fpr <= max_fpr * 1.2
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(fpr[keep], pro[keep], lw=2, label=f"AUPRO@{max_fpr:.0%} {value:.3f}" if value is not None else "PRO")
    ax.axvline(max_fpr, color="grey", ls="--", lw=1)
    ax.set(xlabel="pixel false-positive rate", ylabel="per-region overlap", title="PRO curve", ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_histogram(path: Path, normal: np.ndarray, defective: np.ndarray, threshold: float | None) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    values = np.r_[normal, defective]
    bins = np.linspace(values.min(), values.max(), 40) if values.size else 10
    ax.hist(normal, bins=bins, alpha=0.6, label=f"normal ({len(normal)})", color="tab:blue")
    ax.hist(defective, bins=bins, alpha=0.6, label=f"defective ({len(defective)})", color="tab:red")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="image score", ylabel="images", title="Score distribution")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overlay_grid(path: Path, rows: list[tuple[str, list[np.ndarray], list[str]]], cell: int = 192) -> None:
    """A labelled grid: one row per group (e.g. worst misses), tiles with captions."""
    plt = _pyplot()
    columns = max((len(images) for _, images, _ in rows), default=0)
    if columns == 0:
        return
    fig, axes = plt.subplots(len(rows), columns, figsize=(columns * cell / 80, len(rows) * (cell / 80 + 0.4)), squeeze=False)
    for r, (title, images, captions) in enumerate(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(images):
                ax.imshow(images[c])
                ax.set_title(captions[c], fontsize=7)
        axes[r][0].text(-0.05, 0.5, title, transform=axes[r][0].transAxes, rotation=90, va="center", ha="right", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
