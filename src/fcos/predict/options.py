"""How images are predicted, one option set for ``fcos predict``, ``eval``, ``serve``, ``benchmark`` and
:class:`~fcos.predict.Predictor`: whole (the default for models trained on whole images), sliced into
tiles (the default for models trained on tiles: ``--slice auto``), with test-time augmentation.

A tile-trained checkpoint (``fcos train --tile SIZE [--tile-scale S]``) records its tile size and scale;
``--slice auto`` then cuts ``SIZE / S`` px tiles of the original image, which the model's input rule
brings to ``SIZE`` px: objects at the scale training showed them. Why the defaults are what they are
(the merger, the whole-image pass, the overlap, the TTA scales) is measured in docs/small-objects.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fcos.data.images import MAX_PIXELS
from fcos.utils.flags import AT_LEAST_1, Bound, check_bounds, option, parse_fraction

__all__ = ["INFERENCE", "InferenceOptions", "TileInfo", "parse_slice"]

INFERENCE = "inference (sliced prediction, test-time augmentation)"


def parse_slice(values: Sequence[str] | str | int | None) -> tuple[int, int] | str | None:
    """``--slice`` values: ``auto`` (the checkpoint's own tiles, if it was trained on tiles), ``none`` (the
    whole image), ``SIZE`` (square tiles) or ``H W``."""
    if values is None or values == "auto":
        return values
    if isinstance(values, int):
        values = [values]
    if isinstance(values, str):
        values = values.split()
    values = [str(v).strip().lower() for v in values]
    if values in (["auto"], ["none"]):
        return None if values == ["none"] else "auto"
    try:
        sizes = [int(v) for v in values]
    except ValueError:
        raise ValueError(f"--slice takes auto, none, SIZE or H W (pixels), got {' '.join(values)!r}") from None
    if len(sizes) not in (1, 2) or min(sizes) < 32:
        raise ValueError(f"--slice takes SIZE or H W, each at least 32 px, got {' '.join(values)!r}")
    return (sizes[0], sizes[-1])


def _parse_scales(values: Sequence[str]) -> tuple[float, ...]:
    scales = tuple(float(v) for v in values)
    if not scales or min(scales) <= 0:
        raise ValueError(f"--tta-scales are positive factors of the input size, got {' '.join(map(str, values))}")
    return scales


@dataclass(frozen=True)
class TileInfo:
    """What a tile-trained model was trained on: ``size`` (h, w) px crops of the image scaled by ``scale``,
    i.e. windows of ``size / scale`` original pixels."""

    size: tuple[int, int]
    scale: float = 1.0

    @property
    def window(self) -> tuple[int, int]:
        return round(self.size[0] / self.scale), round(self.size[1] / self.scale)

    @classmethod
    def from_record(cls, record: Any) -> TileInfo | None:
        """From a checkpoint's or an exported file's ``tile`` record (``{"size": [h, w], "scale": s}``)."""
        if not record:
            return None
        return cls((int(record["size"][0]), int(record["size"][1])), float(record.get("scale", 1.0)))

    def to_record(self) -> dict[str, Any]:
        return {"size": list(self.size), "scale": self.scale}


@dataclass(frozen=True)
class InferenceOptions:
    """How :class:`~fcos.predict.Predictor` looks at an image. Every field is a flag of ``fcos predict``,
    ``eval``, ``serve`` and ``benchmark`` (``--slice-overlap`` for ``slice_overlap``)."""

    slice: tuple[int, int] | str | None = option(
        "auto", "cut the image into tiles of SIZE (or H W) px, predict each at the model's input size and merge: "
        "small objects keep their pixels. auto (default): the tiles a checkpoint trained with --tile was trained on, "
        "else the whole image; none: the whole image", group=INFERENCE, parse=parse_slice, nargs="+", metavar="SIZE")
    # at most 0.9: beyond, every pixel is predicted over 100 times (0.99 cut a 256-px image into 37k tiles)
    slice_overlap: float = option(0.2, "fraction of a tile shared with its neighbour (at most 0.9)", group=INFERENCE,
                                  parse=parse_fraction, metavar="R", bound=Bound(0, 0.9))
    full_image: bool | None = option(
        None, "with slicing, also predict the whole image as one more view (default: yes for --slice SIZE, no for "
        "--slice auto: a tile-trained model sees large objects in its tiles)", group=INFERENCE)
    merge: Literal["nms", "nmm", "wbf"] = option(
        "nms", "merge the views' detections: class-wise NMS; nmm (greedy non-maximum merging: boxes of one "
        "object cut by a tile border become their union); wbf (weighted box fusion, the ensemble-boxes package)",
        group=INFERENCE)
    merge_iou: float = option(0.5, "overlap at which the merger suppresses or merges (nmm: intersection over "
                              "the smaller box)", group=INFERENCE, parse=parse_fraction, metavar="X",
                              bound=Bound(0, 1, low_open=True))
    slice_batch: int = option(4, "tiles per forward pass", group=INFERENCE, bound=AT_LEAST_1)
    tta: bool = option(False, "test-time augmentation: each view also mirrored, at each --tta-scales factor",
                       group=INFERENCE)
    # Measured (docs/small-objects.md): flip at 0.83, 1 and 1.2 beat flip alone on all four small-object runs.
    tta_scales: tuple[float, ...] = option((0.83, 1.0, 1.2), "input-size factors of test-time augmentation",
                                           group=INFERENCE,
                                           parse=_parse_scales, nargs="+", metavar="S")
    half: bool = option(
        False, "half precision for PyTorch models: bf16 on CPUs that compute it natively (AVX512-BF16, AMX; else fp32 "
        "with a warning), fp16 on CUDA. Exported models keep the precision they were exported in",
        group=INFERENCE)
    compile: bool = option(
        False, "torch.compile the PyTorch model's network (input sizes padded to one of 8 per octave so a few "
        "shapes compile; CUDA graphs on a GPU); the first images pay the compilation", group=INFERENCE)
    max_pixels: int = option(MAX_PIXELS, "largest image accepted (width x height, checked from the header: the "
                             "decompression-bomb guard); raise it for gigapixel mosaics predicted sliced",
                             group=INFERENCE, metavar="N", bound=AT_LEAST_1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slice", parse_slice(self.slice))
        object.__setattr__(self, "tta_scales", tuple(float(s) for s in self.tta_scales))
        check_bounds(self)

    def tiles(self, tile_info: TileInfo | None) -> tuple[int, int] | None:
        """The tile windows (h, w) in original pixels: ``slice`` as given, the model's own with ``auto``,
        None for the whole image."""
        if self.slice == "auto":
            return tile_info.window if tile_info else None
        return self.slice  # type: ignore[return-value]

    def with_full_image(self) -> bool:
        """Whether slicing adds the whole image as a view (``full_image``, or its default)."""
        if self.full_image is not None:
            return self.full_image
        return self.slice != "auto"

    def describe(self, tile_info: TileInfo | None = None) -> str:
        """The views in words: "whole image", "tiles 512x512 (overlap 0.2) + whole image, nms 0.5", ..."""
        tiles = self.tiles(tile_info)
        if tiles is None:
            text = "whole image"
        else:
            text = f"tiles {tiles[0]}x{tiles[1]} (overlap {self.slice_overlap:g})"
            text += " + whole image" if self.with_full_image() else ""
        if self.tta:
            text += f", TTA flip x scales {' '.join(f'{s:g}' for s in self.tta_scales)}"
        if tiles is not None or self.tta:
            text += f", {self.merge} {self.merge_iou:g}"
        return text

    @property
    def plain(self) -> bool:
        """Neither slicing nor test-time augmentation can apply: one view, the whole image."""
        return self.slice is None and not self.tta
