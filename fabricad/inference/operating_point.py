"""The operating point: how an anomaly map becomes an alarm, beyond one threshold.

A threshold alone raises an alarm for any pixel above it. A mill pays for every stop, so a line
also asks that a region be big enough to be a defect a customer would see (`min_area_mm2`,
`min_length_mm`, in fabric millimetres through the camera's calibration), and that each band
across the width be judged against its own normal: selvedges, a scanner's vignetting or a
reed mark raise the map in some columns of every frame, and a single threshold high enough for
those is blind in the middle. The bands' thresholds come from a teach-in on the line's own good
fabric (`teach_zones`). A selvedge moves across the frame from scan to scan and roll to roll,
so no zone holds it: `selvedge_mm` marks a band beside each fabric edge the scan shows, left
uninspected (as mills inspect selvedges by rules of their own) or judged against a threshold of
its own (`selvedge_threshold`, from a teach-in), so that a hole in the selvedge still raises an
alarm while the selvedge's own weave does not. What each rule gains is measured
on the line benchmark (`fabricad.evaluation.line`, BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from fabricad.inference.metrics import threshold_for_fpr


class OperatingPoint(BaseModel):
    """Saved with a model's threshold; `mm_per_px` is the camera's calibration."""

    mm_per_px: float = Field(1.0, gt=0, le=100, description="fabric millimetres per image pixel")
    min_area_mm2: float = Field(0.0, ge=0, description="regions smaller than this raise no alarm")
    min_length_mm: float = Field(0.0, ge=0, description="regions whose larger extent is shorter raise no alarm")
    zone_thresholds: list[float] | None = Field(
        None, min_length=1, max_length=256,
        description="a threshold per band of equal width across the image (from a teach-in); None: the one threshold")
    selvedge_mm: float = Field(
        0.0, ge=0, le=10_000, description="a band beside each fabric edge the frame shows (where the machine bed is seen), "
                                          "left uninspected (selvedges raise no alarm, nor do defects in them) unless "
                                          "`selvedge_threshold` is set")
    selvedge_threshold: float | None = Field(
        None, gt=0, description="with `selvedge_mm`: the band is judged against this threshold (a teach-in's: the "
                                "highest the band's good fabric scores) instead of being left uninspected; None: uninspected")
    persistence_frames: int = Field(
        1, ge=1, le=10, description="a camera's region raises an alarm only once this many of its frames in a row showed "
                                    "it at the same place (on the roll where one runs); 1: at once. Uploads: at once")

    def column_thresholds(self, width: int, threshold: float, band: np.ndarray | None = None) -> float | np.ndarray:
        """The threshold each image column is judged against: one value, or one per column.
        `band`: the frame's selvedge columns (`selvedge_columns`), judged against
        `selvedge_threshold` where the column's own threshold is lower."""
        judged_apart = band is not None and self.selvedge_threshold is not None and bool(np.any(band))
        if not self.zone_thresholds and not judged_apart:
            return threshold
        if self.zone_thresholds:
            zones = np.asarray(self.zone_thresholds, np.float32)
            columns = zones[np.minimum(np.arange(width) * len(zones) // max(width, 1), len(zones) - 1)]
        else:
            columns = np.full(width, threshold, np.float32)
        if judged_apart:
            columns[band] = np.maximum(columns[band], self.selvedge_threshold)
        return columns

    def leaves_band_uninspected(self) -> bool:
        """Whether the selvedge band's pixels are zeroed (no threshold of its own)."""
        return bool(self.selvedge_mm) and self.selvedge_threshold is None

    def describe(self) -> str:
        rules = [f"regions ≥ {self.min_area_mm2:g} mm²" if self.min_area_mm2 else "",
                 f"≥ {self.min_length_mm:g} mm long" if self.min_length_mm else "",
                 f"{len(self.zone_thresholds)} zone thresholds" if self.zone_thresholds else "",
                 (f"selvedges ({self.selvedge_mm:g} mm) uninspected" if self.selvedge_threshold is None
                  else f"selvedges ({self.selvedge_mm:g} mm) at {self.selvedge_threshold:.4g}") if self.selvedge_mm else "",
                 f"seen in {self.persistence_frames} frames in a row" if self.persistence_frames > 1 else ""]
        return f"{', '.join(r for r in rules if r) or 'no rules'} at {self.mm_per_px:g} mm/px"

    def selvedge_columns(self, background: np.ndarray) -> np.ndarray:
        """(W,) bool: the fabric columns within `selvedge_mm` of a fabric edge, given the
        columns beyond the edges (`fabricad.data.fabric_edges.background_columns`)."""
        background = np.asarray(background, bool)
        band = np.zeros_like(background)
        width = round(self.selvedge_mm / self.mm_per_px)
        if width <= 0:
            return band
        for edge in np.flatnonzero(background[1:] != background[:-1]) + 1:
            if background[edge]:  # the fabric ends at edge - 1
                band[max(edge - width, 0):edge] = True
            else:  # the fabric starts at edge
                band[edge:edge + width] = True
        return band & ~background

    def keeps(self, width_px: int, height_px: int, area_px: int) -> bool:
        s = self.mm_per_px
        return area_px * s * s >= self.min_area_mm2 and max(width_px, height_px) * s >= self.min_length_mm


def zone_scores(anomaly_map: np.ndarray, zones: int) -> np.ndarray:
    """Each band's maximum: a frame's score per zone."""
    width = anomaly_map.shape[1]
    edges = [round(k * width / zones) for k in range(zones + 1)]
    return np.array([float(anomaly_map[:, a:b].max()) if b > a else 0.0 for a, b in zip(edges, edges[1:])])


def teach_zones(maps: list[np.ndarray], zones: int, target_fpr: float) -> list[float]:
    """Per-band thresholds from the maps of good frames: each band's threshold is the score only
    `target_fpr` of good frames exceed there (training's rule, `threshold_for_fpr`)."""
    if not maps:
        raise ValueError("a teach-in needs at least one good frame")
    scores = np.stack([zone_scores(m, zones) for m in maps])
    return [threshold_for_fpr(scores[:, k], target_fpr) for k in range(zones)]


def teach_selvedge_threshold(band_maxima: list[float], target_fpr: float, threshold: float) -> float | None:
    """The selvedge band's threshold from good frames' band maxima: what only `target_fpr` of
    them exceed (training's rule), and never below the rest of the fabric's `threshold` — the
    band is judged apart to be spared the selvedge's own weave, not to be judged more strictly.
    None without a frame that showed the band."""
    if not band_maxima:
        return None
    return max(threshold_for_fpr(np.asarray(band_maxima, np.float64), target_fpr), threshold)


def per_frame_target(alarms_per_100_m: float, frame_length_m: float) -> float:
    """The per-frame false-alarm rate that gives `alarms_per_100_m` on frames of `frame_length_m`:
    a mill states the first, a threshold is set for the second."""
    return min(max(alarms_per_100_m * frame_length_m / 100.0, 1e-6), 0.5)
