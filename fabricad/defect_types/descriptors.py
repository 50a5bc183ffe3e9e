"""A region of a frame as a fixed vector of numbers a classifier can learn types from.

Why from the image and not from the anomaly map or the network's features: the classifier then
survives a retrained or re-exported model (same camera, same fabric, same descriptors), runs on
the line PC without the network, and an operator's label on a stored frame is enough to make a
training example. The descriptors say what an inspector looks at: how big and how elongated the
defect is and which way it runs (a broken end runs along the roll, a broken pick across it),
whether it is darker or lighter than the cloth around it and by how much (a hole lets the
backlight through, a stain darkens), how sharp its edges are, and whether it touches the
selvage. Sizes are in pixels: a classifier belongs to one camera set-up, as its bundle does.
"""

from __future__ import annotations

import cv2
import numpy as np

FEATURE_NAMES = (
    "log_width", "log_height", "log_area", "log_aspect",  # the box: size, and height over width
    "fill", "eccentricity", "orientation_cos", "orientation_sin",  # the deviating pixels' shape
    "contrast_mean", "contrast_abs", "contrast_peak", "dark_share",  # against the cloth around it
    "edge_x", "edge_y", "edge_ratio",  # gradient energy inside vs around, and its direction
    "row_profile", "column_profile",  # a line across or along: how much rows/columns differ
    "log_selvage_distance", "texture_ratio",
)
DEVIATION = 2.5
"""|pixel − cloth median| / cloth spread above which a pixel counts as part of the defect"""


def _gray(image: np.ndarray) -> np.ndarray:
    gray = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)
    return gray.astype(np.float32)


def describe(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The descriptor vector (in `FEATURE_NAMES` order) of the region `box` = (x, y, width,
    height) on `image` (RGB or gray, any size). The cloth around the box — a ring as wide as half
    the box, at least 8 px — is the reference every contrast is measured against."""
    height, width = image.shape[:2]
    x, y, w, h = (int(v) for v in box)
    x, y = min(max(x, 0), width - 1), min(max(y, 0), height - 1)
    w, h = max(1, min(w, width - x)), max(1, min(h, height - y))
    margin = max(8, (max(w, h) + 1) // 2)
    x0, y0, x1, y1 = max(0, x - margin), max(0, y - margin), min(width, x + w + margin), min(height, y + h + margin)
    crop = _gray(image[y0:y1, x0:x1])  # only the window: a scan holds many regions, each reads its own
    inside = np.zeros(crop.shape, bool)
    inside[y - y0:y - y0 + h, x - x0:x - x0 + w] = True
    ring = crop[~inside] if (~inside).any() else crop.ravel()
    median = float(np.median(ring))
    spread = float(np.median(np.abs(ring - median))) * 1.4826 + 1.0  # + 1 grey level: flat cloth is not infinitely contrasty
    deviation = (crop - median) / spread
    region = deviation[inside].reshape(h, w)
    marked = np.abs(region) > DEVIATION

    fill = float(marked.mean())
    ecc, cos2, sin2 = _shape(marked if marked.sum() >= 3 else np.ones_like(marked))
    dark = float((region[marked] < 0).mean()) if marked.any() else 0.5

    gx = cv2.Sobel(crop, cv2.CV_32F, 1, 0, ksize=3) / spread
    gy = cv2.Sobel(crop, cv2.CV_32F, 0, 1, ksize=3) / spread
    ex_in, ey_in = float(np.mean(gx[inside] ** 2)), float(np.mean(gy[inside] ** 2))
    ex_out = float(np.mean(gx[~inside] ** 2)) if (~inside).any() else ex_in
    ey_out = float(np.mean(gy[~inside] ** 2)) if (~inside).any() else ey_in
    rows, columns = region.mean(axis=1), region.mean(axis=0)
    texture_in = float(region.std())
    selvage = min(x, width - (x + w))
    return np.array([
        np.log(w), np.log(h), np.log(w * h), np.log(h / w),
        fill, ecc, cos2, sin2,
        float(region.mean()), float(np.abs(region).mean()), float(np.abs(region).max()), dark,
        np.log1p(ex_in) - np.log1p(ex_out), np.log1p(ey_in) - np.log1p(ey_out), np.log1p(ex_in) - np.log1p(ey_in),
        float(rows.std()) if h > 1 else 0.0, float(columns.std()) if w > 1 else 0.0,
        np.log1p(selvage), np.log1p(texture_in),
    ], dtype=np.float32)


def _shape(marked: np.ndarray) -> tuple[float, float, float]:
    """Eccentricity (0 round … 1 a line) and the doubled orientation angle of the marked pixels'
    second moments, as cos/sin so that 0° and 180° are the same direction."""
    m = cv2.moments(marked.astype(np.uint8), binaryImage=True)
    if m["m00"] == 0:
        return 0.0, 1.0, 0.0
    a, b, c = m["mu20"] / m["m00"], m["mu11"] / m["m00"], m["mu02"] / m["m00"]
    root = np.sqrt(((a - c) / 2) ** 2 + b ** 2)
    major, minor = (a + c) / 2 + root, max((a + c) / 2 - root, 0.0)
    ecc = float(np.sqrt(1 - minor / major)) if major > 1e-9 else 0.0
    angle = 0.5 * np.arctan2(2 * b, a - c)  # 0: along x (across the roll)
    return ecc, float(np.cos(2 * angle)), float(np.sin(2 * angle))
