"""Texture alignment: undo a scan's shear or mirror against the training scans' weave geometry.

A line-scan camera sees the same fabric at another angle when the web drifts sideways (the rows
of the scan slide against each other: a shear) and the twill's other face when the fabric runs
face down (a mirror image). A one-class model trained on one geometry flags every tile of such a
scan. The weave's geometry is in the 2-D amplitude spectrum, whose peaks are its waves and which does
not depend on where the scan starts, so the training scans' mean spectrum is a reference: before
scoring, the scan is mirrored and/or sheared back to the transform whose spectrum matches it
best, and the anomaly map is mapped back onto the scan's own pixels. A texture without a clear
weave matches as it is, and nothing changes. numpy and OpenCV only: the service uses it too.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import cv2
import numpy as np

from fabricad.errors import CheckpointError

WINDOW = 256
"""Side of the square windows whose spectra are averaged (smaller images use what they have)."""
WINDOWS = 4
"""Windows per image, spread across its width (Welch's averaging: a steadier spectrum)."""
COARSE_SHEARS = np.round(np.arange(-0.6, 0.6001, 0.1), 3)
FINE_STEP = 0.025
MIN_GAIN = 0.01
"""Relative gain in spectral similarity a transform must bring to be used: as-trained scans
gain nothing (0), sheared and mirrored AITEX scans 0.02–0.06."""


def shear(image: np.ndarray, k: float) -> np.ndarray:
    """Rows moved sideways in proportion to their distance from the middle row (x + k·(y − h/2)),
    so a twill's diagonals change angle, as when the web drifts sideways under a line-scan
    camera. The same size; what comes in from beyond the sides is reflected."""
    h, w = image.shape[:2]
    matrix = np.float32([[1, k, -k * h / 2], [0, 1, 0]])
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def to_gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


@dataclass(frozen=True)
class Alignment:
    """What was done to a scan before scoring: mirrored left-right, then rows sheared by `shear`."""

    mirror: bool = False
    shear: float = 0.0
    gain: float = 0.0
    """Relative gain in spectral similarity to the training scans that chose it."""

    @property
    def identity(self) -> bool:
        return not self.mirror and self.shear == 0.0

    def apply(self, image: np.ndarray) -> np.ndarray:
        out = cv2.flip(image, 1) if self.mirror else image
        return shear(out, self.shear) if self.shear else out

    def undo(self, amap: np.ndarray) -> np.ndarray:
        """An anomaly map of the aligned scan, moved back onto the original scan's pixels."""
        out = shear(amap, -self.shear) if self.shear else amap
        return cv2.flip(out, 1) if self.mirror else out

    def as_dict(self) -> dict:
        return {"mirror": self.mirror, "shear": self.shear, "gain": round(self.gain, 4)}

    def describe(self) -> str:
        """For people and CSV files: "mirrored, sheared -0.30", or "" when nothing was done."""
        parts = (["mirrored"] if self.mirror else []) + ([f"sheared {self.shear:.2f}"] if self.shear else [])
        return ", ".join(parts)


IDENTITY = Alignment()


def amplitude_spectrum(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Mean amplitude spectrum (square root, zero frequency in the middle row) of up to WINDOWS
    windows of `size` spread across `gray`: (h, w // 2 + 1), the half a real image needs."""
    h, w = size
    height, width = gray.shape
    centres = np.linspace(w / 2, width - w / 2, min(WINDOWS, max(1, width // w))).round().astype(int)
    top = (height - h) // 2
    hann = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    total = np.zeros((h, w // 2 + 1), np.float32)
    for c in centres:
        region = gray[top : top + h, c - w // 2 : c - w // 2 + w].astype(np.float32)
        dft = cv2.dft((region - region.mean()) * hann, flags=cv2.DFT_COMPLEX_OUTPUT)[:, : w // 2 + 1]
        total += np.sqrt(cv2.magnitude(np.ascontiguousarray(dft[..., 0]), np.ascontiguousarray(dft[..., 1])))
    return np.fft.fftshift(total, axes=0)


def transformed(amplitude: np.ndarray, width: int, k: float = 0.0, mirror: bool = False) -> np.ndarray:
    """The spectrum `amplitude` would have after the image is mirrored, then sheared by `k`,
    unit norm, the slowest waves (shading, not weave) left out. A shear x + k·y moves the wave
    (fy, fx) to (fy − k·fx, fx) and a mirror to (−fy, fx), so both are a resampling of rows per
    column: the search never warps or transforms the image again."""
    h, half = amplitude.shape
    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(half, dtype=np.float32)[None, :]
    source = rows + k * cols * h / width
    if mirror:  # row i holds fy = (i − h/2)/h; its mirror is row h − i
        source = (h - source) % h
    map_y = np.ascontiguousarray(np.broadcast_to(source, (h, half)), np.float32)
    map_x = np.ascontiguousarray(np.broadcast_to(cols, (h, half)), np.float32)
    out = cv2.remap(amplitude, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    out[h // 2 - 3 : h // 2 + 4, :9] = 0
    norm = float(np.linalg.norm(out))
    return out / norm if norm > 0 else out


@dataclass(frozen=True)
class TextureReference:
    """The training scans' mean spectrum, and the search that aligns a new scan to it."""

    spectrum: np.ndarray
    """(h, w // 2 + 1) float32, unit norm, for windows of (h, w) = `size`."""
    size: tuple[int, int]

    @classmethod
    def from_images(cls, images: list[np.ndarray]) -> TextureReference | None:
        """From the training images; None when they are too few or too small to have a weave
        spectrum (under 32 pixels a side)."""
        grays = [to_gray(i) for i in images]
        if not grays:
            return None
        size = tuple(min(WINDOW, *(g.shape[d] for g in grays)) for d in (0, 1))
        if min(size) < 32:
            return None
        mean = np.mean([transformed(amplitude_spectrum(g, size), size[1]) for g in grays], axis=0)
        return cls((mean / np.linalg.norm(mean)).astype(np.float32), size)

    def align(self, image: np.ndarray, min_gain: float = MIN_GAIN) -> Alignment:
        """The mirror and shear that make `image`'s weave look most like the training scans'.
        Coarse steps of 0.1 in shear, then 0.025 around the best, with and without a mirror; the
        mirror only when it adds half of `min_gain`, and the result only when the similarity gains
        `min_gain` (relative) over the image as it is."""
        gray = to_gray(image)
        if gray.shape[0] < self.size[0] or gray.shape[1] < self.size[1]:
            return IDENTITY
        amplitude = amplitude_spectrum(gray, self.size)

        def similarity(k: float, mirror: bool) -> float:
            return float(np.sum(self.spectrum * transformed(amplitude, self.size[1], k, mirror)))

        def best_shear(mirror: bool) -> tuple[float, float]:
            coarse = max((similarity(float(k), mirror), float(k)) for k in COARSE_SHEARS)
            fine = np.round(coarse[1] + FINE_STEP * np.array([-3, -2, -1, 1, 2, 3]), 3)
            return max(coarse, *((similarity(float(k), mirror), float(k)) for k in fine))

        as_is = similarity(0.0, False)
        plain, mirrored = best_shear(False), best_shear(True)
        # A symmetric weave (plain) matches mirrored as well as not: mirror only when it adds.
        best = (*mirrored, True) if mirrored[0] > plain[0] * (1 + min_gain / 2) else (*plain, False)
        gain = best[0] / as_is - 1 if as_is > 0 else 0.0
        _, k, mirror = best
        if gain < min_gain:
            return IDENTITY
        return Alignment(mirror, k + 0.0, gain)

    # --- storage: beside a checkpoint's weights and in a bundle's model.json ---------------------
    def encode(self) -> dict:
        data = base64.b64encode(self.spectrum.astype(np.float16).tobytes()).decode("ascii")
        return {"size": list(self.size), "spectrum_f16": data}

    @classmethod
    def decode(cls, stored: dict | None) -> TextureReference | None:
        if not stored:
            return None
        try:
            size = tuple(int(v) for v in stored["size"])
            raw = np.frombuffer(base64.b64decode(stored["spectrum_f16"], validate=True), np.float16)
            return cls(raw.astype(np.float32).reshape(size[0], size[1] // 2 + 1), size)
        except (KeyError, TypeError, ValueError, IndexError) as exc:  # binascii.Error is a ValueError
            raise CheckpointError(f"the model's texture reference is damaged ({type(exc).__name__}: {exc}); "
                                  "re-export the bundle or retrain") from None
