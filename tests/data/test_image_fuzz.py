"""Damaged image files (truncations and byte flips of valid JPEG, PNG and WebP files): decoding either
gives an RGB image or raises one of fcos.data.images' documented errors; nothing else escapes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from image_files import encode, jpeg_with_orientation
from PIL import Image

from fcos.data.images import CorruptImageError, ImageError, ImageTooLargeError, NotAnImageError, read_image

DOCUMENTED = (NotAnImageError, ImageTooLargeError, CorruptImageError, ImageError)
# FCOS_FUZZ_EXAMPLES=100000 for a long, randomised run; the default is a reproducible 5,000-case run.
_EXAMPLES = int(os.environ.get("FCOS_FUZZ_EXAMPLES", "0"))
CASES = _EXAMPLES or 5000

_PIXELS = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
_IMAGE = Image.fromarray(_PIXELS)
SEEDS = {  # tiny files: a case decodes in well under a millisecond
    "jpeg_exif": jpeg_with_orientation(_IMAGE, 6, quality=90),
    "jpeg_progressive": encode(_IMAGE, "JPEG", quality=75, progressive=True),
    "png_rgb": encode(_IMAGE, "PNG"),
    "png_palette_transparency": encode(_IMAGE.quantize(8), "PNG", transparency=0),
    "webp_lossy": encode(_IMAGE, "WEBP", quality=80),
    "webp_lossless": encode(_IMAGE.convert("RGBA"), "WEBP", lossless=True),
}


@st.composite
def damaged(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data) - 1))]
    flips = draw(st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=8))
    for position, value in flips:
        if data:
            data[position % len(data)] = value
    return name, bytes(data)


@pytest.mark.filterwarnings("ignore")  # Pillow's notes on damaged EXIF blocks, thousands of them
def test_damaged_files_raise_only_documented_errors():
    outcomes = {"decoded": 0, **{cls.__name__: 0 for cls in DOCUMENTED}}

    @settings(max_examples=CASES, deadline=None, derandomize=not _EXAMPLES, database=None)
    @given(case=damaged())
    def decode(case):
        name, data = case
        try:
            image = read_image(data, name=name)
        except DOCUMENTED as exc:
            outcomes[type(exc).__name__] += 1
            assert str(exc).startswith(f"{name}: ")
        except BaseException as exc:  # the point of the test: name what escaped
            raise AssertionError(f"{type(exc).__name__} escaped from {name} ({len(data)} bytes): {exc}") from exc
        else:
            outcomes["decoded"] += 1
            assert image.mode == "RGB" and min(image.size) >= 1

    decode()
    assert sum(outcomes.values()) >= CASES, outcomes
    # The cases reach every outcome: some damage is harmless, some is caught at each stage.
    assert min(outcomes[k] for k in ("decoded", "NotAnImageError", "CorruptImageError")) > CASES // 50, outcomes
