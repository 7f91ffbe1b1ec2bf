"""A deterministic synthetic detection dataset ("shapes") in COCO layout, for demos, tests and smoke runs.

Three classes (rectangle, ellipse, triangle) of saturated colours, 12 px to most of the image, on muted
textured backgrounds (smooth noise, gradients, stripes). Objects may overlap, but every object keeps at
least ``MIN_VISIBLE`` of its pixels and its full extent visible, so each box is the tight bound of what
is actually drawn and every object stays recognisable. Image ``i`` of a split depends only on
``(seed, split, i)``: the same seed gives byte-identical files, and a larger ``num_train`` only appends.

With ``occlusion`` > 0 that share of the images shows objects partly hidden, as in video: shapes may cover
each other's edges and a textured band (a post, a rail) may cross the image, leaving each object at least
``OCCLUDED_MIN_VISIBLE`` of its pixels. Boxes stay each object's full extent (amodal, as MOTChallenge's and
CrowdHuman's full-body boxes and the shapes video's ground truth), so a model learns to box the whole object
from the part it sees.
"""

from __future__ import annotations

import colorsys
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fcos.utils.flags import SettingError

__all__ = ["CLASSES", "generate_shapes"]

CLASSES = ("rectangle", "ellipse", "triangle")
MIN_VISIBLE = 0.6  # fraction of an object's pixels that later objects may not cover
OCCLUDED_MIN_VISIBLE = 0.35  # the same in the occluded images (``occlusion``), whose boxes are amodal
_BAND = (0.05, 0.10)  # an occluding band's width, fraction of the image side
_ATTEMPTS = 25  # placements tried per object before giving up on it (the image then has fewer objects)


@dataclass
class _Shape:
    label: int  # index into CLASSES
    y0: int
    x0: int
    mask: np.ndarray  # [h, w] bool, tight: touches all four sides
    colour: np.ndarray  # [3] float in [0, 1]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """xyxy pixel edges (x1, y1 exclusive)."""
        return self.x0, self.y0, self.x0 + self.mask.shape[1], self.y0 + self.mask.shape[0]


def generate_shapes(
    out_dir: str | Path,
    num_train: int = 600,
    num_val: int = 100,
    image_size: int = 256,
    seed: int = 0,
    *,
    min_object: int = 12,
    max_objects: int = 6,
    occlusion: float = 0.0,
) -> Path:
    """Write ``out_dir/images/{train,val}_NNNNN.jpg`` and ``out_dir/annotations/{train,val}.json``.

    Args:
        image_size: side of the square images, pixels.
        min_object: smallest box side, pixels; the largest is 90% of ``image_size``.
        max_objects: objects per image are drawn uniformly from 1..max_objects (fewer if they do not fit).
        occlusion: share of the images with partly hidden objects and amodal boxes (module doc); 0 keeps
            every image as without the option, byte for byte.

    Returns:
        ``out_dir``, ready for :func:`fcos.data.load_annotations`. Image and annotation ids are unique across
        both splits; categories are 1 rectangle, 2 ellipse, 3 triangle.
    """
    if image_size < 2 * min_object:
        raise SettingError(f"image_size {image_size} is too small for objects of {min_object} px")
    if not 0.0 <= occlusion <= 1.0:
        raise SettingError(f"occlusion is a share of the images, in [0, 1]; got {occlusion}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    image_id = annotation_id = 0
    for code, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        images, annotations = [], []
        for index in range(count):
            rng = np.random.default_rng([seed, code, index])
            pixels, shapes = _render(rng, image_size, min_object, max_objects, occlusion)
            name = f"{split}_{index:05d}.jpg"
            # JPEG: 5x faster to write and 8x smaller than PNG for noisy textures; boxes are geometric.
            Image.fromarray(pixels).save(out / "images" / name, quality=92)
            image_id += 1
            images.append({"id": image_id, "file_name": name, "width": image_size, "height": image_size})
            for shape in shapes:
                annotation_id += 1
                x1, y1, x2, y2 = shape.box
                annotations.append(
                    {
                        "id": annotation_id,
                        "image_id": image_id,
                        "category_id": shape.label + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": (x2 - x1) * (y2 - y1),
                        "iscrowd": 0,
                    }
                )
        doc = {"images": images, "annotations": annotations, "categories": categories}
        (out / "annotations" / f"{split}.json").write_text(json.dumps(doc))
    return out


def _render(
    rng: np.random.Generator, size: int, min_object: int, max_objects: int, occlusion: float = 0.0
) -> tuple[np.ndarray, list[_Shape]]:
    """-> pixels [size, size, 3] uint8, shapes in drawing order."""
    canvas = _background(rng, size)
    owner = np.full((size, size), -1, np.int16)  # index of the shape that owns each pixel
    shapes: list[_Shape] = []
    # Drawn only when asked, so that images without the option stay byte-identical.
    occluded = occlusion > 0 and rng.uniform() < occlusion
    min_visible = OCCLUDED_MIN_VISIBLE if occluded else MIN_VISIBLE
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _ in range(_ATTEMPTS):
            shape = _random_shape(rng, size, min_object)
            if shape is not None and _keeps_others_visible(owner, shapes, shape, min_visible, extent=not occluded):
                break
        else:
            continue
        shape.colour = _contrasting_colour(rng, canvas, shapes, shape)
        region = (
            slice(shape.y0, shape.y0 + shape.mask.shape[0]),
            slice(shape.x0, shape.x0 + shape.mask.shape[1]),
        )
        owner[region][shape.mask] = len(shapes)
        canvas[region][shape.mask] = shape.colour
        shapes.append(shape)
    if occluded and shapes:
        _occluding_band(rng, canvas, owner, shapes, min_visible)
    # Sensor-like noise over everything (background texture and flat fills alike).
    canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(rng.uniform(0.01, 0.04))
    return (canvas.clip(0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), shapes


def _random_shape(rng: np.random.Generator, size: int, min_object: int) -> _Shape | None:
    """A shape with a log-uniform size from min_object to 80% of the image, aspect 1:2 to 2:1."""
    side = math.exp(rng.uniform(math.log(min_object), math.log(0.8 * size)))
    aspect = math.exp(rng.uniform(-math.log(2.0), math.log(2.0)))
    w = int(np.clip(round(side * math.sqrt(aspect)), min_object, 0.9 * size))
    h = int(np.clip(round(side / math.sqrt(aspect)), min_object, 0.9 * size))
    label = int(rng.integers(len(CLASSES)))
    mask = _mask(label, h, w, rng)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    mask = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # tight
    if min(mask.shape) < min_object:
        return None
    y0 = int(rng.integers(0, size - mask.shape[0] + 1))
    x0 = int(rng.integers(0, size - mask.shape[1] + 1))
    return _Shape(label, y0, x0, mask, np.zeros(3, np.float32))


def _mask(label: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """[h, w] bool mask of the shape inscribed in an h x w box, sampled at pixel centres."""
    y = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    x = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
    if label == 0:  # rectangle
        return np.ones((h, w), bool)
    if label == 1:  # ellipse
        return ((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2 <= 1.0
    # Triangle: apex somewhere on one side, base the opposite side; orientation random.
    t = rng.uniform(0.0, 1.0)
    side = int(rng.integers(4))
    u, v = (x / w, y / h) if side < 2 else (y / h, x / w)  # u along the apex side, v across
    if side % 2:
        v = 1.0 - v
    # In (u, v) the apex is (t, 0) and the base runs from (0, 1) to (1, 1): inside = between the two edges.
    return (u >= t * (1.0 - v)) & (u <= t + (1.0 - t) * v)


def _keeps_others_visible(owner: np.ndarray, shapes: list[_Shape], new: _Shape, min_visible: float = MIN_VISIBLE,
                          extent: bool = True) -> bool:
    """True if drawing ``new`` on top leaves every earlier shape >= ``min_visible`` of its pixels visible
    (and, with ``extent``, a pixel on each side of its box, so the box stays the tight bound of what shows)."""
    nx1, ny1, nx2, ny2 = new.box
    for k, old in enumerate(shapes):
        x1, y1, x2, y2 = old.box
        if x1 >= nx2 or nx1 >= x2 or y1 >= ny2 or ny1 >= y2:
            continue
        visible = owner[y1:y2, x1:x2] == k
        covered = np.zeros_like(visible)
        oy1, oy2, ox1, ox2 = max(y1, ny1), min(y2, ny2), max(x1, nx1), min(x2, nx2)
        covered[oy1 - y1 : oy2 - y1, ox1 - x1 : ox2 - x1] = new.mask[
            oy1 - ny1 : oy2 - ny1, ox1 - nx1 : ox2 - nx1
        ]
        left = visible & ~covered
        if left.sum() < min_visible * old.mask.sum():
            return False
        # The box must stay the tight bound of the visible pixels: each border row/column keeps a pixel.
        if extent and not (left[0].any() and left[-1].any() and left[:, 0].any() and left[:, -1].any()):
            return False
    return True


def _occluding_band(rng: np.random.Generator, canvas: np.ndarray, owner: np.ndarray, shapes: list[_Shape],
                    min_visible: float) -> None:
    """Draw a textured band across the image over the shapes, where it leaves each shape >= ``min_visible``
    of its pixels (a few placements are tried; none fitting, no band)."""
    size = canvas.shape[0]
    texture = _background(rng, size)
    totals = np.array([s.mask.sum() for s in shapes])
    for _ in range(8):
        width = max(2, int(rng.uniform(*_BAND) * size))
        start = int(rng.integers(0, size - width + 1))
        band = np.zeros((size, size), bool)
        if rng.uniform() < 0.5:
            band[:, start : start + width] = True
        else:
            band[start : start + width, :] = True
        left = np.bincount(owner[~band & (owner >= 0)], minlength=len(shapes))
        if (left >= min_visible * totals).all():
            canvas[band] = texture[band]
            owner[band] = -1
            return


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32)


def _contrasting_colour(
    rng: np.random.Generator, canvas: np.ndarray, shapes: list[_Shape], new: _Shape
) -> np.ndarray:
    """A saturated colour far from what lies under the new shape (background and earlier shapes)."""
    x1, y1, x2, y2 = new.box
    under = canvas[y1:y2, x1:x2][new.mask].mean(0)
    others = [s.colour for s in shapes] + [under]
    best, best_distance = None, -1.0
    for _ in range(12):
        colour = _hsv(rng.uniform(), rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0))
        distance = min(float(np.linalg.norm(colour - other)) for other in others)
        if distance > best_distance:
            best, best_distance = colour, distance
        if distance >= 0.45:
            break
    assert best is not None
    return best


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """[size, size, 3] float32 in [0, 1]: muted, low-contrast texture so that objects stand out."""
    a = _hsv(rng.uniform(), rng.uniform(0.0, 0.35), rng.uniform(0.2, 0.75))
    b = np.clip(a + rng.uniform(-0.15, 0.15, 3).astype(np.float32), 0.0, 1.0)
    kind = int(rng.integers(3))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == 0:  # smooth noise: random coarse grid, bilinear upsampling
        cells = int(rng.integers(3, 17))
        coarse = (rng.uniform(0.0, 1.0, (cells, cells)) * 255).astype(np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR), np.float32) / 255.0
    elif kind == 1:  # linear gradient in a random direction
        angle = rng.uniform(0.0, 2 * math.pi)
        field = xx * math.cos(angle) + yy * math.sin(angle)
        field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
    else:  # stripes of random period and orientation
        angle, period = rng.uniform(0.0, math.pi), rng.uniform(4.0, 40.0) / size
        field = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)
    return (a + (b - a) * field[..., None]).astype(np.float32)
