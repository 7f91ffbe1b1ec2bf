"""Images with boxes painted in a distinct colour per label, and the check that boxes still cover
exactly the pixels of their colour after a transform."""

from __future__ import annotations

import torch

# One saturated colour per label; the background is black, so a box's pixels are told apart by colour.
COLOURS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])


def painted(height: int, width: int, box: list[int], label: int, image_id: int = 0):
    """A black image with ``box`` (integer xyxy) painted in the label's colour, and its target."""
    image = torch.zeros(3, height, width)
    x0, y0, x1, y1 = box
    image[:, y0:y1, x0:x1] = COLOURS[label].view(3, 1, 1)
    target = {"boxes": torch.tensor([box], dtype=torch.float32), "labels": torch.tensor([label]),
              "image_id": torch.tensor(image_id), "orig_size": torch.tensor([height, width])}
    return image, target


def painted_extent(image: torch.Tensor, label: int) -> list[float] | None:
    """xyxy of the pixels mostly of the label's colour (each channel on the right side of one half)."""
    colour = COLOURS[label].view(3, 1, 1)
    mask = ((image > 0.5) == (colour > 0.5)).all(0)
    if not mask.any():
        return None
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def assert_boxes_match_pixels(image: torch.Tensor, target: dict, tol: float = 1.0) -> None:
    h, w = image.shape[-2:]
    boxes, labels = target["boxes"], target["labels"]
    assert len(boxes) == len(labels)
    assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= w).all()
    assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= h).all()
    assert ((boxes[:, 2:] - boxes[:, :2]) >= 1 - 1e-4).all()  # never degenerate
    for box, label in zip(boxes.tolist(), labels.tolist()):
        extent = painted_extent(image, label)
        assert extent is not None, f"box {box} of label {label} has no pixels of its colour"
        assert max(abs(a - b) for a, b in zip(extent, box)) <= tol, (extent, box)
