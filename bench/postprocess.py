"""postprocess: decoding + NMS on precomputed head outputs, ours vs torchvision's postprocess_detections.

The head outputs imitate a trained detector: background logits around -6 and a few dozen objects,
each lighting up a blob of neighbouring points in one class, so that a few thousand candidates pass
the threshold and NMS has real work. Both sides use torchvision's defaults (threshold 0.2 on
sqrt(cls * ctr), top 1000 per level, NMS 0.6, 100 detections) and must agree before timing.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.models.detection import fcos_resnet50_fpn
from torchvision.models.detection.image_list import ImageList

from bench.common import compare_ms, emit, level_shapes
from fcos.config import STRIDES, torchvision_preset
from fcos.model.decode import Decoder
from fcos.model.points import make_points
from fcos.structures import HeadOutputs

NUM_CLASSES = 80


def _head_outputs(batch: int, shapes: list[tuple[int, int]], objects: int) -> tuple[torch.Tensor, ...]:
    """Logits and stride-normalised ltrb like a trained model's: each object lights a 5x5 blob of
    points on every level, all regressing (noisily) the same box, so NMS collapses each blob."""
    gen = torch.Generator().manual_seed(0)
    num_points = sum(h * w for h, w in shapes)
    cls = torch.randn(batch, num_points, NUM_CLASSES, generator=gen) - 6.0
    ctr = torch.randn(batch, num_points, generator=gen)
    reg = torch.rand(batch, num_points, 4, generator=gen) * 3 + 0.5
    start = 0
    for h, w in shapes:
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        for b in range(batch):
            for _ in range(objects):
                cy, cx = int(torch.randint(0, h, (1,), generator=gen)), int(torch.randint(0, w, (1,), generator=gen))
                label = int(torch.randint(0, NUM_CLASSES, (1,), generator=gen))
                half = torch.rand(2, generator=gen) * 2 + 1.5  # box half-size in cells
                blob = ((ys - cy).abs() <= 2) & ((xs - cx).abs() <= 2)
                idx = start + torch.nonzero(blob.flatten()).squeeze(1)
                py, px = ys.flatten()[idx - start].float(), xs.flatten()[idx - start].float()
                ltrb = torch.stack([px - cx + half[0], py - cy + half[1], cx + half[0] - px, cy + half[1] - py], 1)
                reg[b, idx] = (ltrb + torch.randn(ltrb.shape, generator=gen) * 0.1).clamp(min=0.05)
                cls[b, idx, label] = torch.randn(len(idx), generator=gen) + 1.0
                ctr[b, idx] = torch.randn(len(idx), generator=gen) + 1.0
        start += h * w
    return cls, reg, ctr


def run(quick: bool = False) -> list[dict[str, Any]]:
    batch, (height, width) = 2, ((160, 224) if quick else (800, 1088))
    shapes = level_shapes(height, width)
    cls, reg, ctr = _head_outputs(batch, shapes, 5 if quick else 30)
    config = torchvision_preset(num_classes=NUM_CLASSES)
    points = make_points(shapes, STRIDES, (height, width), config.points)
    ours_outputs = HeadOutputs(cls, reg * points.strides[None, :, None], ctr, shapes)
    decoder = Decoder(config.decode)
    sizes = [(height, width), (height - 37, width - 53)]

    tv = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)
    features = [torch.empty(batch, 1, h, w) for h, w in shapes]
    anchors = tv.anchor_generator(ImageList(torch.empty(batch, 3, height, width), sizes), features)
    split = [h * w for h, w in shapes]
    tv_outputs = {"cls_logits": list(cls.split(split, 1)), "bbox_regression": list(reg.split(split, 1)),
                  "bbox_ctrness": list(ctr[..., None].split(split, 1))}
    tv_anchors = [list(a.split(split)) for a in anchors]

    def ours() -> list[dict[str, torch.Tensor]]:
        return decoder(ours_outputs, points, sizes)

    def reference() -> list[dict[str, torch.Tensor]]:
        with torch.no_grad():
            return tv.postprocess_detections(tv_outputs, tv_anchors, sizes)

    for a, b in zip(ours(), reference(), strict=True):
        if not torch.equal(a["labels"], b["labels"]) or not torch.allclose(a["boxes"], b["boxes"], atol=1e-3):
            raise AssertionError("postprocess outputs differ")
    candidates = int(((torch.sigmoid(cls) * torch.sigmoid(ctr)[..., None]).sqrt() > config.decode.score_thresh).sum())
    ours_ms, ref_ms = compare_ms(ours, reference, rounds=1 if quick else 3, warmup=1 if quick else 3, repeat=5 if quick else 15)
    params = {"batch": batch, "image": [height, width], "classes": NUM_CLASSES, "candidates_over_threshold": candidates}
    return [emit("postprocess", ours_ms, ref_ms, "ms", params)]


if __name__ == "__main__":
    run()
