"""Uploads checked before they cost anything, each refusal a JSON ``{"detail": message}``:

- the request body is capped while it streams in (declared Content-Length checked first, then the bytes
  actually received), so an oversized upload is refused with 413 without being read into memory;
- the image header is read before any pixel is decoded: too many pixels -> 413, sides shorter than
  ``min_side`` -> 422; Pillow's decompression-bomb guard becomes the same 413;
- not an image -> 415; empty, truncated or corrupt image -> 400 (found while decoding, in the worker
  that runs the request's batch: it fails that request alone);
- images are opened and decoded by :mod:`fcos.data.images`, as in datasets and ``fcos predict``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from PIL import Image

from fcos.data.images import (
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    decode,
    exif_orientation,
    open_image,
    oriented_size,
)

__all__ = ["MiB", "FORM_OVERHEAD", "Upload", "UploadLimit", "decode_upload", "open_upload", "parse_conf"]

MiB = 1024 * 1024
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, part headers and the small `conf` field


class UploadLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` while they stream in."""

    def __init__(self, app: Callable, max_bytes: int, message: str) -> None:
        self.app, self.max_bytes, self.message = app, max_bytes, message

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await JSONResponse({"detail": self.message}, status_code=413)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self.message)
            return message

        await self.app(scope, limited_receive, send)


@dataclass
class Upload:
    """An upload whose header passed the checks; its pixels are not decoded yet (a queued request holds
    only its compressed bytes)."""

    image: Image.Image
    orientation: int
    conf: float


def http_error(exc: ImageError) -> HTTPException:
    """fcos.data.images' errors -> the status each deserves."""
    if isinstance(exc, NotAnImageError):
        return HTTPException(415, f"not an image: {exc.problem}")
    if isinstance(exc, ImageTooLargeError):
        return HTTPException(413, f"image has too many pixels: {exc.problem}")
    if isinstance(exc, CorruptImageError):
        return HTTPException(400, f"corrupt or truncated image: {exc.problem}")
    return HTTPException(422, f"unusable image: {exc.problem}")


def open_upload(data: bytes, conf: float, max_pixels: int, min_side: int) -> Upload:
    """Parse the header only and check the size before any pixel is decoded."""
    if not data:
        raise HTTPException(400, "empty upload: the 'file' part has no bytes")
    try:
        image = open_image(data, max_pixels=max_pixels, name="upload")
    except ImageError as exc:
        raise http_error(exc) from None
    orientation = exif_orientation(image)
    width, height = oriented_size(image, orientation)
    if min(width, height) < min_side:
        raise HTTPException(422, f"image is {width}x{height}; both sides must be at least {min_side} px")
    return Upload(image, orientation, conf)


def decode_upload(upload: Upload) -> Image.Image:
    try:
        return decode(upload.image, orientation=upload.orientation, name="upload")
    except ImageError as exc:
        raise http_error(exc) from None


def parse_conf(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        conf = float(value)
    except (TypeError, ValueError):
        raise HTTPException(422, f"conf must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= conf <= 1.0:
        raise HTTPException(422, f"conf must be in [0, 1], got {conf}")
    return conf
