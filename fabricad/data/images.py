"""Reading any image a mill may hand us into one canonical form: uint8 RGB, HxWx3.

Fabric cameras produce 8- and 16-bit grayscale, RGB and RGBA (AITEX's fabric 04 is RGBA with
equal colour channels). Everything is converted here, once, so that models and metrics never see
a second layout.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fabricad.errors import ImageReadError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
MIN_SIDE = 8
"""Smallest frame side worth inspecting: below it no weave is visible, and a network-sized view
of it is one pixel's colour stretched, whose verdict would mean nothing (a camera set to a tiny
region of interest must hear so, not get OK)."""


def check_inspectable(height: int, width: int, source: str = "image") -> None:
    if height < MIN_SIDE or width < MIN_SIDE:
        raise ImageReadError(f"{source}: {width}x{height} is too small to inspect (at least {MIN_SIDE}x{MIN_SIDE})")


def to_rgb_uint8(image: np.ndarray, source: str = "image", order: str = "bgr") -> np.ndarray:
    """Normalise an array to uint8 RGB. `order` is the channel order of 3/4-channel input:
    "bgr" for arrays decoded by OpenCV, "rgb" for arrays from anywhere else (PIL, numpy, us)."""
    if image.dtype == np.uint16:
        image = (image / 257.0).round().astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * 255.0 if image.max() <= 1.0 else image, 0, 255).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageReadError(f"{source}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim != 3:
        raise ImageReadError(f"{source}: expected a 2-D image, got an array of shape {image.shape}")
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if order == "bgr" else image
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if order == "bgr" else cv2.COLOR_RGBA2RGB)
    raise ImageReadError(f"{source}: unsupported channel count {channels}")


def decode_image(data: bytes, source: str = "image") -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, ...) to uint8 RGB."""
    if not data:
        raise ImageReadError(f"{source}: empty file")
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageReadError(f"{source}: not a readable image (corrupt or unsupported format)")
    return to_rgb_uint8(image, source)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` at (height, width) = `size`: area averaging to shrink, bilinear to enlarge. Training,
    evaluation and the inference engine all resize through here, so they see the same pixels."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrinking = image.shape[0] >= height and image.shape[1] >= width
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def read_image(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image(data, str(path))


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels; a full decode only
    where Pillow cannot read the header."""
    from PIL import Image

    try:
        with Image.open(path) as header:
            width, height = header.size
        return height, width
    except Exception:  # unknown to Pillow or too large for its header check: let OpenCV decide
        return read_image(path).shape[:2]


def read_mask(paths: list[Path] | tuple[Path, ...], shape: tuple[int, int]) -> np.ndarray:
    """Union of binary masks as a bool array of `shape`; no paths → all normal."""
    mask = np.zeros(shape, dtype=bool)
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ImageReadError(f"{path}: not a readable mask")
        if image.ndim == 3:  # RGBA or RGB masks: any channel set counts (alpha excluded)
            image = image[:, :, :3].max(axis=2)
        if image.shape != shape:
            raise ImageReadError(f"{path}: mask is {image.shape}, image is {shape}")
        mask |= image > 0
    return mask


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
