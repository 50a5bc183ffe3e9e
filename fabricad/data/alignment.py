"""Texture alignment: undo a scan's shear, mirror or row spacing against the training scans' weave.

A line-scan camera sees the same fabric at another angle when the web drifts sideways (the rows
of the scan slide against each other: a shear), the twill's other face when the fabric runs
face down (a mirror image), and its rows closer together when the web runs faster than the
camera's line rate was set for (a vertical squeeze). A one-class model trained on one geometry
flags every tile of such a scan. The weave's geometry is in the 2-D amplitude spectrum, whose
peaks are its waves and which does not depend on where the scan starts, so the training scans'
mean spectrum is a reference: before scoring, the scan is stretched, mirrored and/or sheared back
to the transform whose spectrum matches it best, and the anomaly map is mapped back onto the
scan's own pixels. A texture without a clear weave matches as it is, and nothing changes. numpy
and OpenCV only: the service uses it too.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from fabricad.errors import CheckpointError

WINDOW = 256
"""Side of the square windows whose spectra are averaged (smaller images use what they have)."""
WINDOWS = 4
"""Windows per image, spread across its width (Welch's averaging: a steadier spectrum)."""
COARSE_SHEARS = np.round(np.arange(-0.6, 0.6001, 0.1), 3)
STRETCH_SHEARS = np.round(np.arange(-0.6, 0.6001, 0.05), 3)
"""Shears searched alongside each stretch: finer than the coarse steps, or a sheared scan whose
shear falls between them would be matched better by a stretch than by its own shear."""
STRETCH_PEAKS = 64
"""How many of a scan's (and the reference's) strongest peak frequencies the stretch search moves."""
FINE_STEP = 0.025
STRETCHES = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
"""Vertical stretches tried: a scan whose rows lie up to 3× closer than the training scans' is
stretched back. Only stretches: squeezing a scan back would leave it lower than a tile."""
PEAK_SIGMA = 3.0
"""Spread, in frequency bins, of the smooth background taken off a spectrum to leave its peaks."""
MIN_STRETCH_GAIN = 2.0
"""Relative gain in peak match (`find_stretch`) a stretch must bring over the best unstretched
one. On AITEX-256, fabric 00's three scans at twice the row density gain 4.9–6.0, every other
scan of the six fabrics, training or test, at most 0.16 (sheared ones included) but for one
defective scan of fabric 01 at 1.43, which scored worse stretched. So only a clear change of
row spacing is undone: a synthetic two-wave twill is found squeezed 2× or more (gains near 100)
but not 1.25–1.5× (0.4–0.5), where its best shear still matches its stronger wave, and the
synthetic plain weave (6 px pitch) squeezed 2× gains 1.85, just short."""
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
    """What was done to a scan before scoring: stretched vertically by `stretch` (rows resampled
    to a height `stretch` times the scan's), mirrored left-right, then rows sheared by `shear`."""

    mirror: bool = False
    shear: float = 0.0
    stretch: float = 1.0
    gain: float = 0.0
    """Relative gain in spectral similarity to the training scans that chose it."""

    @property
    def identity(self) -> bool:
        return not self.mirror and self.shear == 0.0 and self.stretch == 1.0

    def apply(self, image: np.ndarray) -> np.ndarray:
        out = image
        if self.stretch != 1.0:
            height, width = image.shape[:2]
            out = cv2.resize(out, (width, round(height * self.stretch)), interpolation=cv2.INTER_LINEAR)
        out = cv2.flip(out, 1) if self.mirror else out
        return shear(out, self.shear) if self.shear else out

    def undo(self, amap: np.ndarray) -> np.ndarray:
        """An anomaly map of the aligned scan, moved back onto the original scan's pixels. A
        stretch of at least 1 rounds back to the scan's own height: round(round(h·s)/s) = h."""
        out = shear(amap, -self.shear) if self.shear else amap
        out = cv2.flip(out, 1) if self.mirror else out
        if self.stretch != 1.0:
            height, width = out.shape[:2]
            out = cv2.resize(out, (width, round(height / self.stretch)), interpolation=cv2.INTER_AREA)
        return out

    def as_dict(self) -> dict:
        return {"mirror": self.mirror, "shear": self.shear, "stretch": self.stretch, "gain": round(self.gain, 4)}

    def describe(self) -> str:
        """For people and CSV files: "stretched 2.00, mirrored, sheared -0.30", or "" when nothing
        was done."""
        parts = ([f"stretched {self.stretch:.2f}"] if self.stretch != 1.0 else []) + (["mirrored"] if self.mirror else [])
        parts += [f"sheared {self.shear:.2f}"] if self.shear else []
        return ", ".join(parts)


IDENTITY = Alignment()


def window_lefts(width: int, window: int) -> np.ndarray:
    """Left edges of up to WINDOWS windows of `window` px spread evenly across `width` (edges,
    not centres: a centre of an odd-sized window rounds half a pixel out of the image)."""
    return np.linspace(0, width - window, min(WINDOWS, max(1, width // window))).round().astype(int)


def amplitude_spectrum(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Mean amplitude spectrum (square root, zero frequency in the middle row) of up to WINDOWS
    windows of `size` spread across `gray`: (h, w // 2 + 1), the half a real image needs."""
    h, w = size
    height, width = gray.shape
    top = (height - h) // 2
    hann = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    total = np.zeros((h, w // 2 + 1), np.float32)
    for left in window_lefts(width, w):
        region = gray[top : top + h, left : left + w].astype(np.float32)
        dft = cv2.dft((region - region.mean()) * hann, flags=cv2.DFT_COMPLEX_OUTPUT)[:, : w // 2 + 1]
        total += np.sqrt(cv2.magnitude(np.ascontiguousarray(dft[..., 0]), np.ascontiguousarray(dft[..., 1])))
    return np.fft.fftshift(total, axes=0)


PERIODIC = 0.3
"""Smallest `periodicity` of a texture whose weave alignment can find: AITEX's six fabrics
measure 0.52–0.84 (04 and 06, the faintest weaves, lowest), the generator's woven and knitted
fabrics 0.85–0.92; its nonwoven felt 0.07, white noise 0.02, smoothed noise 0.12."""


def periodicity(image: np.ndarray, side: int = 128) -> float:
    """How strongly a texture repeats: the highest autocorrelation (1 at zero shift) beyond twice
    the central lobe's radius, median over up to WINDOWS windows of `side` px. A weave repeats
    every few yarns, so some shift brings it back onto itself (0.5–0.9); fibres laid at random,
    stone or noise never do (under 0.15). Shading is taken off first: a lighting slope repeats
    nothing but correlates with itself everywhere."""
    gray = to_gray(image).astype(np.float32)
    height, width = gray.shape
    s = min(side, height, width)
    if s < 16:
        return 0.0
    yy, xx = np.mgrid[-(s // 2) : s - s // 2, -(s // 2) : s - s // 2]
    radius = np.hypot(yy, xx)
    rings = np.minimum(radius.astype(int), s // 2)
    values = []
    for left in window_lefts(width, s):
        region = gray[(height - s) // 2 : (height - s) // 2 + s, left : left + s]
        region = region - cv2.GaussianBlur(region, (0, 0), s / 8)
        if float(region.std()) < 0.5:
            continue  # flat (under half a grey level): nothing to repeat
        power = np.abs(np.fft.rfft2(region, s=(2 * s, 2 * s))) ** 2
        acf = np.fft.fftshift(np.fft.irfft2(power, s=(2 * s, 2 * s)))
        acf = acf[s - s // 2 : 2 * s - s // 2, s - s // 2 : 2 * s - s // 2] / acf[s, s]
        ring_means = np.bincount(rings.ravel(), acf.ravel()) / np.maximum(np.bincount(rings.ravel()), 1)
        lobe = next((k for k, v in enumerate(ring_means) if v < 0.2), s // 4)
        outside = radius > 2 * lobe + 1
        values.append(float(acf[outside].max()) if outside.any() else 0.0)
    return float(np.median(values)) if values else 0.0


def weave_peaks(amplitude: np.ndarray) -> np.ndarray:
    """The spectrum's peaks above its smooth background: the weave's waves, without the broad
    fall-off of noise and shading. Compared whole, that background outweighs the peaks and a
    stretch reshapes it: with it, fabric 00's scans at twice the row density matched their
    training weave worse stretched back (0.79) than as they were (0.91)."""
    background = cv2.GaussianBlur(amplitude, (0, 0), PEAK_SIGMA, borderType=cv2.BORDER_REFLECT)
    return np.maximum(amplitude - background, 0)


def stretched(amplitude: np.ndarray, stretch: float) -> np.ndarray:
    """The spectrum `amplitude` would have after the image is stretched vertically by `stretch`:
    a wave (fy, fx) moves to (fy / stretch, fx), so row i (fy = (i − h/2)/h) holds what the scan
    had at fy·stretch, and nothing is left beyond the scan's own highest frequency."""
    if stretch == 1.0:
        return amplitude
    h, half = amplitude.shape
    source = h / 2 + (np.arange(h, dtype=np.float32) - h / 2) * stretch
    map_y = np.ascontiguousarray(np.broadcast_to(source[:, None], (h, half)), np.float32)
    map_x = np.ascontiguousarray(np.broadcast_to(np.arange(half, dtype=np.float32), (h, half)))
    return cv2.remap(amplitude, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def transformed(amplitude: np.ndarray, width: int, k: float = 0.0, mirror: bool = False) -> np.ndarray:
    """The spectrum `amplitude` would have after the image is mirrored, then sheared by `k`,
    unit norm, the slowest waves (shading, not weave) left out. A shear x + k·y moves the wave
    (fy, fx) to (fy − k·fx, fx) and a mirror to (−fy, fx), so both are a resampling of rows per
    column: the search never warps or transforms the image again."""
    h, half = amplitude.shape
    cols = np.arange(half, dtype=np.float32)
    source = np.arange(h, dtype=np.float32)[:, None] + np.float32(k * h / width) * cols
    if mirror:  # row i holds fy = (i − h/2)/h; its mirror is row h − i (wrapped by the remap)
        source = h - source
    map_x = np.ascontiguousarray(np.broadcast_to(cols, (h, half)))
    out = cv2.remap(amplitude, map_x, source, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
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
        """The stretch, mirror and shear that make `image`'s weave look most like the training
        scans'. First the stretch, on the spectra's peaks (`weave_peaks`, `find_stretch`): one of
        STRETCHES only when, at its best shear and mirror, it matches `MIN_STRETCH_GAIN` better
        than the scan unstretched at its own. Then, on the (stretched) spectrum, coarse steps of 0.1 in shear and
        0.025 around the best, with and without a mirror; the mirror only when it adds half of
        `min_gain`, and the shear and mirror only when they gain `min_gain` (relative) over the
        scan without them. `gain` is the product of both stages' relative gains, less 1."""
        gray = to_gray(image)
        if gray.shape[0] < self.size[0] or gray.shape[1] < self.size[1]:
            return IDENTITY
        amplitude = amplitude_spectrum(gray, self.size)
        stretch, stretch_gain = self.find_stretch(weave_peaks(amplitude))
        amplitude = stretched(amplitude, stretch)

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
        if gain < min_gain:  # the shear and mirror do not earn their place
            if stretch == 1.0:
                return IDENTITY
            best, gain = (as_is, 0.0, False), 0.0
        _, k, mirror = best
        return Alignment(mirror, k + 0.0, stretch, (1 + stretch_gain) * (1 + gain) - 1)

    def find_stretch(self, peaks: np.ndarray) -> tuple[float, float]:
        """The vertical stretch of STRETCHES that brings a scan's weave peaks onto the reference's,
        and its relative gain; (1, 0) unless it gains `MIN_STRETCH_GAIN`. For every stretch,
        mirror and shear of STRETCH_SHEARS at once, the scan's strongest STRETCH_PEAKS
        frequencies are moved to where that transform puts them and weighted by the reference's
        peaks there, and the reference's strongest moved back and weighted by the scan's: both
        ways, so that squeezing many peaks onto a few strong ones does not pass for a match. A
        few thousand look-ups instead of hundreds of resampled spectra. The shear is searched
        alongside because it too moves peaks up and down: a stretch must beat the scan's best
        shear, not only the scan as it is."""
        h = peaks.shape[0]
        stretches = np.asarray(STRETCHES, np.float32)[:, None, None, None]
        mirrors = np.array([1.0, -1.0], np.float32)[None, :, None, None]
        shears = STRETCH_SHEARS.astype(np.float32)[None, None, :, None]

        def strongest(spectrum: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            top = np.argsort(spectrum, axis=None)[-STRETCH_PEAKS:]
            rows, cols = np.unravel_index(top, spectrum.shape)
            weights = spectrum.ravel()[top]
            return rows.astype(np.float32), cols, weights / max(float(np.linalg.norm(weights)), 1e-12)

        def look_up(spectrum: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
            """`spectrum` at fractional `rows` (linear; outside [0, h - 1]: nothing)."""
            below = np.floor(rows).astype(np.int64)
            frac = rows - below

            def at(r: np.ndarray) -> np.ndarray:
                return np.where((r >= 0) & (r < h), spectrum[np.clip(r, 0, h - 1), cols], 0.0)

            return (1 - frac) * at(below) + frac * at(below + 1)

        # Row i holds fy = (i − h/2)/h: a stretch divides fy, a mirror negates it, a shear
        # subtracts k·fx (what `stretched` and `transformed` do), wrapped around like the DFT.
        peaks = peaks / max(float(np.linalg.norm(peaks)), 1e-12)
        rows, cols, weights = strongest(peaks)
        moved = (h / 2 + mirrors * (rows - h / 2) / stretches - shears * cols * h / self.size[1]) % h
        forward = look_up(self.peaks, moved, cols) @ weights
        rows, cols, weights = strongest(self.peaks)
        back = h / 2 + mirrors * stretches * ((rows + shears * cols * h / self.size[1]) % h - h / 2)
        backward = look_up(peaks, back, cols) @ weights
        best = np.sqrt(np.maximum(forward, 0) * np.maximum(backward, 0)).max(axis=(1, 2))  # per stretch
        unstretched, (match, stretch) = best[0], max(zip(best[1:], STRETCHES[1:]))
        if unstretched <= 0 or match < unstretched * (1 + MIN_STRETCH_GAIN):
            return 1.0, 0.0
        return stretch, float(match / unstretched - 1)

    @cached_property
    def peaks(self) -> np.ndarray:
        """The reference's weave peaks, unit norm (what `find_stretch` compares scans with)."""
        peaks = weave_peaks(self.spectrum)
        norm = float(np.linalg.norm(peaks))
        return peaks / norm if norm > 0 else peaks

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
