"""``fcos data show``: a grid of training samples with their boxes and class names, augmented exactly
as training augments them, to look at before training (mmdetection's browse_dataset, ultralytics'
train_batch images)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from fcos.config import InputConfig
from fcos.data.dataset import DetectionDataset
from fcos.data.layouts import load_annotations
from fcos.data.pipeline import Augmentation, training_pipeline
from fcos.data.records import DetectionData
from fcos.data.sampling import ResumableSampler, SeededSamples
from fcos.utils.draw import draw_detections, image_grid
from fcos.utils.files import save_image

__all__ = ["ShowReport", "show_samples"]


@dataclass(frozen=True)
class ShowReport:
    """What the grid shows: samples, their boxes, and the boxes augmentation dropped."""

    out: Path
    samples: int
    boxes: int
    dropped: int

    def summary(self) -> str:
        dropped = f", {self.dropped} dropped by augmentation" if self.dropped else ""
        return f"wrote {self.out}: {self.samples} samples, {self.boxes} boxes{dropped}"


def show_samples(
    data: str | Path | DetectionData,
    out: str | Path,
    *,
    split: str = "train",
    augment: bool = False,
    count: int = 16,
    augmentation: Augmentation | None = None,
    seed: int = 0,
    input_config: InputConfig | None = None,
    transforms: Any = None,
    cell: int = 360,
) -> ShowReport:
    """Draw the first ``count`` samples of training's first epoch (the order ``seed`` gives, so the grid
    shows what the first updates of a run with that seed see) into a PNG grid.

    Args:
        data: a dataset folder / file (read with ``split``) or loaded :class:`DetectionData`.
        augment: apply the training pipeline (sizing, then ``augmentation``, or ``transforms`` in its
            place) with training's per-sample seeds; without it, the images as annotated.
        augmentation: what the pipeline applies (``fcos train``'s augmentation flags; default
            :class:`~fcos.data.pipeline.Augmentation`'s); seed: training's ``--seed``.
        input_config: the model's input sizes (default: the preset's 800/1333).
        cell: the longer side of each drawn sample, in pixels.
    """
    if not isinstance(data, DetectionData):
        data = load_annotations(data, split)
    if count < 1 or not data.records:
        raise ValueError(f"nothing to show: count {count}, {len(data.records)} images")
    pipeline = None
    if augment:
        pipeline = training_pipeline(input_config or InputConfig(), augmentation or Augmentation(), records=data.records,
                                     custom=transforms)
    samples = SeededSamples(DetectionDataset(data, pipeline), seed)
    codes = list(ResumableSampler(len(data.records), seed=seed))[:count]
    tiles, boxes, dropped = [], 0, 0
    for code in codes:
        image, target = samples[code]
        boxes += len(target["boxes"])
        dropped += int(target.get("boxes_dropped", 0))
        tiles.append(_tile(image, target, data.class_names, cell))
    grid = image_grid(tiles, cols=math.ceil(math.sqrt(len(tiles))))
    return ShowReport(save_image(grid, out), len(tiles), boxes, dropped)


def _tile(image: Any, target: dict[str, Any], class_names: list[str], cell: int) -> Image.Image:
    """One sample scaled so its longer side is ``cell`` px, boxes and class names drawn, and a caption
    with the image id, the size the network sees and the box counts."""
    h, w = image.shape[-2:]
    pil = Image.fromarray((image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype("uint8"))
    scale = cell / max(h, w)
    pil = pil.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    drawn = draw_detections(pil, target["boxes"] * scale, target["labels"], class_names=class_names)
    n = len(target["boxes"])
    caption = f"image {int(target['image_id'])}  {w}x{h}  {n} box{'es' if n != 1 else ''}"
    if int(target.get("boxes_dropped", 0)):
        caption += f" ({int(target['boxes_dropped'])} dropped)"
    return _with_caption(drawn, caption)


def _with_caption(image: Image.Image, text: str) -> Image.Image:
    font = _font(14)
    left, top, right, bottom = ImageDraw.Draw(image).textbbox((0, 0), text, font=font)
    strip = bottom - top + 8
    out = Image.new("RGB", (max(image.width, right - left + 8), image.height + strip), (20, 20, 20))
    out.paste(image, (0, 0))
    ImageDraw.Draw(out).text((4 - left, image.height + 4 - top), text, fill=(235, 235, 235), font=font)
    return out


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
