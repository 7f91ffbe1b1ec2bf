"""Image files as people have them: the one place that opens and decodes an image, for datasets, predict
and serve alike, so training and inference see the same pixels.

Rules (each tested in ``tests/data/test_images.py``):

- formats: JPEG (and MPO, the multi-picture JPEG phones write), PNG, BMP, TIFF, WebP, GIF, identified by
  their content; the suffix only selects files in folders (:data:`IMAGE_SUFFIXES`, any case). A valid PNG
  named ``.jpg`` decodes; a text file named ``.jpg`` is :class:`NotAnImageError`. Pillow's other formats
  (EPS, PSD, TGA, ...) are not opened: garbage bytes would otherwise often "decode" as headerless TGA.
- decompression bombs are refused from the header, before a pixel is decoded (:func:`open_image`):
  width * height over ``max_pixels`` is :class:`ImageTooLargeError`.
- every image becomes 8-bit RGB: grayscale is replicated; alpha is dropped, so a pixel keeps its stored
  colour (as torchvision's ``decode_image(mode=RGB)``, OpenCV and ultralytics, so a model trained
  elsewhere sees the same pixels); palettes are expanded, transparency included; CMYK (Adobe's inverted
  JPEGs too) is converted by Pillow's rule; 16-bit samples keep their high byte (``v >> 8``: scaled,
  65535 -> 255, never clipped), the rule Pillow itself applies to 16-bit RGB. Embedded ICC profiles are
  not applied (neither torchvision, OpenCV nor ultralytics apply them).
- EXIF orientation is read from the header (a PNG's eXIf chunk counts when it comes before the pixels,
  as the PNG spec asks) and applied on request; an unreadable EXIF block counts as "no rotation", as
  browsers treat it. Datasets choose per image (:func:`fcos.data.dataset.decode_image`).
- the first frame of an animated GIF / WebP or a multi-page TIFF.

Errors: every failure is an :class:`ImageError` (a ``ValueError``) naming the file; its subclasses say
why: :class:`NotAnImageError`, :class:`ImageTooLargeError`, :class:`CorruptImageError` (empty, truncated,
corrupt). Nothing else escapes (``tests/data/test_image_fuzz.py`` checks it on thousands of damaged files).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "FORMATS",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "CorruptImageError",
    "ImageError",
    "ImageTooLargeError",
    "NotAnImageError",
    "decode",
    "exif_orientation",
    "is_image_file",
    "open_image",
    "oriented_size",
    "read_image",
]

IMAGE_SUFFIXES = (".bmp", ".gif", ".jfif", ".jpe", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")  # lower case
FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF")  # Pillow format names opened (JPEG includes MPO)
# Pillow's own refusal threshold (2 * Image.MAX_IMAGE_PIXELS, about 13,400 x 13,400): nothing Pillow
# accepted before is refused, and the check now happens here, by name, before decoding.
MAX_PIXELS = 178_956_970
ORIENTATION = 0x0112  # the EXIF tag
# EXIF orientation -> Pillow transpose (the table of ImageOps.exif_transpose); 5..8 swap width and height.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# What Pillow raises on damaged data while parsing or decoding (Pillow turns struct.error, IndexError and
# TypeError from its parsers into these; tests/data/test_image_fuzz.py checks nothing else escapes).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


class ImageError(ValueError):
    """An image that cannot be used, e.g. ``"photos/a.jpg: cannot decode the image: corrupt or truncated data (...)"``;
    the base class also means an unreadable file (a folder, no permission) or a colour mode without RGB."""

    def __init__(self, path: str | Path | None, problem: str = "") -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None and problem else (problem or str(path)))


class NotAnImageError(ImageError):
    """The bytes are not an image in a supported format (a web service answers 415)."""


class ImageTooLargeError(ImageError):
    """The header declares more pixels than allowed: refused before decoding (413)."""


class CorruptImageError(ImageError):
    """Empty, truncated or corrupt image data (400)."""


def is_image_file(path: str | Path) -> bool:
    """A file whose suffix, in any case, is one of :data:`IMAGE_SUFFIXES`."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def open_image(source: str | Path | bytes | BinaryIO, *, max_pixels: int = MAX_PIXELS, name: str | None = None) -> Image.Image:
    """Identify the image and read its header only: no pixel is decoded (Pillow opens lazily).

    Args:
        source: a path, the file's bytes, or a binary file object.
        max_pixels: the largest width * height accepted (checked on the header).
        name: how errors name the image (default: the path, or "image").

    Raises:
        NotAnImageError, ImageTooLargeError, CorruptImageError, or ImageError for a file that cannot be
        read at all (missing, a folder, no permission); each names the image.
    """
    where = name or (str(source) if isinstance(source, str | Path) else "image")
    if isinstance(source, bytes | bytearray):
        if not source:
            raise CorruptImageError(where, "empty file (0 bytes)")
        source = io.BytesIO(source)
    elif isinstance(source, str | Path):
        try:
            if Path(source).stat().st_size == 0:
                raise CorruptImageError(where, "empty file (0 bytes)")
        except FileNotFoundError:
            raise ImageError(where, "image file not found") from None
        except OSError as exc:
            raise ImageError(where, f"cannot read the file: {exc.strerror or exc}") from None
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > 2 * Image.MAX_IMAGE_PIXELS:
        # Pillow refuses (at open, and a TIFF's load) above twice its process-wide limit, before the check
        # by max_pixels below could speak: a caller allowing more (--max-pixels for a mosaic) raises it for
        # the process so that Pillow refuses just above max_pixels. Not higher: WebP allocates at open.
        Image.MAX_IMAGE_PIXELS = -(-max_pixels // 2)
    try:
        # Pillow may warn about damaged metadata (EXIF, DPI); the warnings are left alone: silencing
        # them would change process-wide filters, from threads (scan_images, serve) too.
        image = Image.open(source, formats=FORMATS)
    except Image.DecompressionBombError as exc:  # Pillow's own check: over twice the limit above
        declared = re.search(r"Image size \((\d+) pixels\)", str(exc))
        count = f"{int(declared.group(1)):,}" if declared else "too many"
        raise ImageTooLargeError(where, f"the header declares {count} pixels; the limit is {max_pixels:,}") from None
    except UnidentifiedImageError:
        raise NotAnImageError(where, "not an image in a supported format (JPEG, PNG, BMP, TIFF, WebP, GIF)") from None
    except (PermissionError, IsADirectoryError, FileNotFoundError) as exc:  # the file, not its content
        raise ImageError(where, f"cannot read the file: {exc.strerror or exc}") from None
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(where, f"cannot decode the image: corrupt or truncated header ({_describe(exc)})") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageTooLargeError(
            where, f"the header declares {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}"
        )
    if width < 1 or height < 1:
        image.close()
        raise CorruptImageError(where, f"the header declares a {width}x{height} image")
    return image


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8) of an opened image, from its header; 1 when absent or unreadable."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1  # Pillow would decode the whole PNG to look for an eXIf chunk after the pixels
    try:
        value = image.getexif().get(ORIENTATION, 1)
    except Exception:  # a damaged metadata block; browsers ignore it too  # noqa: BLE001
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def oriented_size(image: Image.Image, orientation: int | None = None) -> tuple[int, int]:
    """(width, height) after the EXIF rotation: the stored size with the sides swapped for 5..8."""
    orientation = exif_orientation(image) if orientation is None else orientation
    width, height = image.size
    return (height, width) if orientation >= 5 else (width, height)


def decode(image: Image.Image, *, orientation: int = 1, name: str | None = None) -> Image.Image:
    """Decode an opened image (:func:`open_image`) to 8-bit RGB, then apply an EXIF ``orientation``.

    Raises:
        CorruptImageError: truncated or corrupt data; ImageError: a colour mode with no RGB meaning.
    """
    where = name or str(getattr(image, "filename", "") or "image")
    try:
        image.load()
        rgb = _to_rgb(image, where)
    except Image.DecompressionBombError as exc:  # a frame larger than the header said
        raise ImageTooLargeError(where, f"a frame has too many pixels to decode safely ({exc})") from None
    except ImageError:
        raise
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(where, f"cannot decode the image: corrupt or truncated data ({_describe(exc)})") from None
    return rgb.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else rgb


def read_image(
    source: str | Path | bytes | BinaryIO, *, exif: bool = True, max_pixels: int = MAX_PIXELS, name: str | None = None
) -> Image.Image:
    """Open, check and decode an image to RGB; with ``exif`` its EXIF orientation is applied (as viewers show it)."""
    where = name or (str(source) if isinstance(source, str | Path) else "image")
    with open_image(source, max_pixels=max_pixels, name=where) as image:
        return decode(image, orientation=exif_orientation(image) if exif else 1, name=where)


def _to_rgb(image: Image.Image, where: str) -> Image.Image:
    mode = image.mode  # every branch returns a new image: the caller may close the file's image
    if mode in _SIXTEEN_BIT:
        # Pillow's convert() clips 16-bit values at 255 (a mostly white image); keep the high byte instead.
        high = (np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(high).convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # expands the palette with its transparency; the alpha is dropped next
    try:
        return image.convert("RGB")
    except ValueError as exc:  # e.g. LAB or an exotic TIFF mode: no RGB conversion in Pillow
        raise ImageError(where, f"unsupported colour mode {mode!r} ({exc})") from None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
