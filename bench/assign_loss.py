"""assign_loss: target assignment + losses vs torchvision's FCOS.compute_loss on identical head outputs."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torchvision.models.detection import fcos_resnet50_fpn
from torchvision.models.detection.image_list import ImageList

from bench.common import compare_ms, emit, level_shapes, peak_memory_mb
from fcos.config import STRIDES, torchvision_preset
from fcos.model.assign import assign_targets, stack_targets
from fcos.model.losses import FCOSCriterion
from fcos.model.points import make_points
from fcos.structures import HeadOutputs

NUM_CLASSES = 80


def random_targets(gen: torch.Generator, batch: int, boxes: int, height: int, width: int) -> list[dict[str, torch.Tensor]]:
    out = []
    for _ in range(batch):
        size = torch.rand(boxes, 2, generator=gen) * torch.tensor([0.6 * width, 0.6 * height]) + 8
        centre = torch.rand(boxes, 2, generator=gen) * torch.tensor([width, height])
        xyxy = torch.cat([centre - size / 2, centre + size / 2], 1)
        xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width - 2)
        xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height - 2)
        xyxy[:, 2:] = torch.maximum(xyxy[:, 2:], xyxy[:, :2] + 1)
        out.append({"boxes": xyxy, "labels": torch.randint(0, NUM_CLASSES, (boxes,), generator=gen)})
    return out


class Case:
    """Identical inputs for both implementations: head outputs, points/anchors, targets."""

    def __init__(self, batch: int, height: int, width: int, boxes: int, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        shapes = level_shapes(height, width)
        self.config = torchvision_preset(num_classes=NUM_CLASSES)
        self.points = make_points(shapes, STRIDES, (height, width), self.config.points)
        num_points = self.points.num_points
        self.cls = torch.randn(batch, num_points, NUM_CLASSES, generator=gen) - 4.6
        self.reg = torch.rand(batch, num_points, 4, generator=gen) * 4  # torchvision's normalised ltrb
        self.ctr = torch.randn(batch, num_points, 1, generator=gen)
        self.targets = random_targets(gen, batch, boxes, height, width)
        self.criterion = FCOSCriterion(self.config.loss)
        tv = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)
        images = ImageList(torch.empty(batch, 3, height, width), [(height, width)] * batch)
        features = [torch.empty(batch, 1, sh, sw) for sh, sw in shapes]
        self.anchors = tv.anchor_generator(images, features)
        self.num_per_level = [sh * sw for sh, sw in shapes]
        self.tv = tv

    def ours(self, train: bool = False) -> torch.Tensor:
        cls = self.cls.requires_grad_(train)
        reg = self.reg.requires_grad_(train)
        ctr = self.ctr.requires_grad_(train)
        ltrb = reg * self.points.strides[None, :, None]
        outputs = HeadOutputs(cls, ltrb, ctr.squeeze(-1), [])
        boxes, labels, valid = stack_targets(self.targets)
        losses = self.criterion(outputs, assign_targets(self.points, boxes, labels, valid, self.config.assign))
        total = sum(losses.values())
        if train:
            total.backward()
        return total.detach()

    def reference(self, train: bool = False) -> torch.Tensor:
        head = {
            "cls_logits": self.cls.requires_grad_(train),
            "bbox_regression": self.reg.requires_grad_(train),
            "bbox_ctrness": self.ctr.requires_grad_(train),
        }
        losses = self.tv.compute_loss(self.targets, head, self.anchors, self.num_per_level)
        total = sum(losses.values())
        if train:
            total.backward()
        return total.detach()


def run(quick: bool = False) -> list[dict[str, Any]]:
    records = []
    batch, height, width = (1, 256, 320) if quick else (4, 800, 1088)
    counts = (5, 50) if quick else (5, 50, 200, 1000)
    for boxes in counts:
        case = Case(batch, height, width, boxes)
        ours_value, ref_value = case.ours(), case.reference()
        if not torch.allclose(ours_value, ref_value, rtol=1e-5):
            raise AssertionError(f"assign_loss outputs differ: {ours_value} vs {ref_value}")
        repeat = 3
        for train in (False, True):
            ours, ref = partial(case.ours, train), partial(case.reference, train)
            ours_ms, ref_ms = compare_ms(ours, ref, rounds=1 if quick else 3, warmup=1 if quick else 2,
                                         repeat=repeat if boxes < 1000 else 1)
            ours_mb, ref_mb = peak_memory_mb(ours), peak_memory_mb(ref)
            records.append(
                emit(
                    "assign_loss" + ("_backward" if train else ""),
                    ours_ms,
                    ref_ms,
                    "ms",
                    {"batch": batch, "image": [height, width], "boxes_per_image": boxes, "classes": NUM_CLASSES},
                    ours_peak_mb=ours_mb,
                    reference_peak_mb=ref_mb,
                    memory_ratio=None if not ours_mb or ref_mb is None else round(ref_mb / ours_mb, 3),
                )
            )
    return records


if __name__ == "__main__":
    run()
