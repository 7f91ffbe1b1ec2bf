"""Image files as people have them, made byte by byte where Pillow cannot write them: 16-bit PNGs,
EXIF-rotated JPEGs, and headers that declare far more pixels than the file holds (decompression bombs)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

BOMB_SIDE = 40_000  # 40000 x 40000 = 1.6 G pixels: 4.8 GB as RGB if anything decoded it


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_bytes(array: np.ndarray, bit_depth: int = 8) -> bytes:
    """A PNG of ``array`` ([H, W] gray, [H, W, 2] gray+alpha, [H, W, 3] RGB, [H, W, 4] RGBA) at 8 or 16 bits."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    height, width, channels = array.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\0" + array[y].astype(dtype).tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def jpeg_with_orientation(image: Image.Image, orientation: int, **params) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif.tobytes(), **params)


def bomb(fmt: str, side: int = BOMB_SIDE) -> bytes:
    """A small file of ``fmt`` whose header declares side x side pixels (WebP: its largest, 16384)."""
    small = Image.new("RGB", (16, 8), (90, 120, 150))
    if fmt == "png":
        header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit gray: 200 MB raw, compresses to kB
        rows = zlib.compress(b"".join(b"\0" + bytes((side + 7) // 8) for _ in range(64)))
        return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")
    if fmt == "jpeg":
        data = bytearray(encode(small, "JPEG"))
        sof = data.find(b"\xff\xc0")
        data[sof + 5: sof + 9] = struct.pack(">HH", side, side)
        return bytes(data)
    if fmt == "gif":
        data = bytearray(encode(small.convert("P"), "GIF"))
        data[6:10] = struct.pack("<HH", side, side)
        return bytes(data)
    if fmt == "bmp":
        data = bytearray(encode(small, "BMP"))
        data[18:26] = struct.pack("<ii", side, side)
        return bytes(data)
    if fmt == "webp":
        data = bytearray(encode(small, "WEBP", lossless=True))
        at = data.find(b"VP8L") + 9  # after the chunk size and the 0x2f signature
        bits = struct.unpack("<I", data[at: at + 4])[0] & ~0x0FFFFFFF
        data[at: at + 4] = struct.pack("<I", bits | 16383 | 16383 << 14)
        return bytes(data)
    raise ValueError(fmt)
