"""Turning untrusted request bytes into an image, or a 4xx with the reason."""

from __future__ import annotations

import io

import numpy as np
from fastapi import HTTPException, Request
from PIL import Image, UnidentifiedImageError

from fabricad.data.images import check_inspectable, decode_image
from fabricad.errors import ImageReadError

# The formats the service decodes (OpenCV reads them all). Naming them also stops PIL from
# probing every plugin it has on bytes from the network.
UPLOAD_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"upload of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"upload exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_upload(data: bytes, max_pixels: int, name: str = "upload") -> np.ndarray:
    """Check the header's dimensions before decoding (a 100k x 100k PNG is a few KB of
    bytes but gigabytes of pixels), then decode to uint8 RGB."""
    if not data:
        raise HTTPException(400, f"{name}: empty body: send an image file")
    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as header:
            width, height = header.size
    except UnidentifiedImageError:
        raise HTTPException(415, f"{name}: not a supported image format (PNG, JPEG, BMP, TIFF, WebP)") from None
    except Image.DecompressionBombError:
        raise HTTPException(413, f"{name}: image dimensions exceed the pixel limit of {max_pixels}") from None
    except Exception as exc:  # PIL raises assorted errors on damaged headers
        raise HTTPException(400, f"{name}: damaged image header ({type(exc).__name__})") from None
    if width * height > max_pixels:
        raise HTTPException(413, f"{name}: {width}x{height} pixels exceeds the limit of {max_pixels}")
    try:
        check_inspectable(height, width, name)
    except ImageReadError as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        return decode_image(data, name)
    except ImageReadError as exc:
        raise HTTPException(400, str(exc)) from None
