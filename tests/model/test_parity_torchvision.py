"""Exact parity with torchvision.models.detection.FCOS (the oracle) under the `torchvision` preset.

Each case converts a randomly initialised torchvision FCOS with from_torchvision(exact=True) and checks, on
the same images and targets: training losses within 1e-5 relative, the assignment (matched indices)
identical, gradients equal, and eval detections with identical labels and boxes within 1e-3 px.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18
from torchvision.models.detection import FCOS as TorchvisionFCOS
from torchvision.models.detection import fcos_resnet50_fpn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

import fcos.model.detector as detector_module
from fcos.weights import from_torchvision


def tv_resnet18(num_classes: int, channels: int, **kwargs) -> TorchvisionFCOS:
    backbone = BackboneWithFPN(
        resnet18(weights=None),
        return_layers={"layer2": "0", "layer3": "1", "layer4": "2"},
        in_channels_list=[128, 256, 512],
        out_channels=channels,
        extra_blocks=LastLevelP6P7(channels, channels),
    )
    return TorchvisionFCOS(backbone, num_classes, **kwargs)


def random_targets(gen, n, h, w, num_classes, kind):
    if n == 0:
        return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    if kind == "tiny":
        size = torch.rand(n, 2, generator=gen) * 6 + 1
    elif kind == "huge":
        size = torch.stack([torch.rand(n, generator=gen) * 0.3 * w + 0.7 * w, torch.rand(n, generator=gen) * 0.3 * h + 0.7 * h], 1)
    else:
        size = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.6 + 4
    centre = torch.rand(n, 2, generator=gen) * torch.tensor([w, h])
    if kind == "overlap":  # jittered copies of a few boxes
        base = torch.randint(0, min(3, n), (n,), generator=gen)
        centre = centre[base] + torch.randn(n, 2, generator=gen) * 3
        size = size[base] * (1 + torch.rand(n, 2, generator=gen) * 0.1)
    boxes = torch.cat([centre - size / 2, centre + size / 2], 1)
    if kind != "outside":
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w - 1)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h - 1)
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 0.5)
    return {"boxes": boxes, "labels": torch.randint(0, num_classes, (n,), generator=gen)}


# (model, min_size, max_size, image sizes (h, w), boxes per image, box kind)
CASES = [
    ("r50", 256, 400, [(200, 300)], [3], "normal"),
    ("r50", 192, 320, [(240, 180), (160, 220)], [5, 0], "normal"),
    ("r50", 224, 352, [(300, 300)], [200], "normal"),
    ("r18", 320, 512, [(480, 640)], [0], "normal"),
    ("r18", 320, 512, [(480, 640), (400, 300)], [0, 0], "normal"),
    ("r18", 256, 400, [(256, 256)], [10], "tiny"),
    ("r18", 256, 400, [(300, 400)], [3], "huge"),
    ("r18", 256, 448, [(250, 410), (333, 222), (180, 400)], [4, 7, 1], "normal"),
    ("r18", 288, 480, [(288, 288)], [200], "normal"),
    ("r18", 256, 400, [(256, 384)], [30], "overlap"),
    ("r18", 256, 400, [(256, 384), (300, 300)], [50, 12], "overlap"),
    ("r18", 224, 360, [(224, 300)], [8], "outside"),
    ("r18", 160, 256, [(170, 130)], [2], "normal"),
    ("r18", 800, 1088, [(800, 1088)], [20], "normal"),
    ("r18", 256, 512, [(150, 500)], [6], "normal"),
    ("r18", 256, 400, [(512, 512)], [1], "huge"),
    ("r18", 256, 400, [(300, 280), (290, 310)], [200, 150], "normal"),
    ("r18", 192, 320, [(192, 256)], [15], "tiny"),
    ("r18", 352, 352, [(352, 352)], [40], "outside"),
    ("r18", 224, 400, [(224, 224), (224, 400), (300, 224)], [1, 2, 3], "overlap"),
    ("r18", 256, 400, [(222, 333)], [100], "overlap"),
]


@pytest.fixture(scope="module")
def tv_models():
    torch.manual_seed(123)
    r50 = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=11, score_thresh=0.05)
    r18 = tv_resnet18(num_classes=7, channels=64, score_thresh=0.05, topk_candidates=300, detections_per_img=50)
    # Spread the classification scores so thresholds, top-k and NMS all have work to do.
    for m in (r50, r18):
        with torch.no_grad():
            m.head.classification_head.cls_logits.bias.uniform_(-4.0, -1.0)
    return {"r50": r50, "r18": r18}


@pytest.mark.parametrize("case", range(len(CASES)))
def test_losses_assignment_and_detections_match_torchvision(case, tv_models, monkeypatch):
    name, min_size, max_size, sizes, counts, kind = CASES[case]
    tv = tv_models[name]
    tv.transform.min_size, tv.transform.max_size = (min_size,), max_size
    gen = torch.Generator().manual_seed(case)
    num_classes = tv.head.classification_head.num_classes
    images = [torch.rand(3, h, w, generator=gen) for h, w in sizes]
    targets = [random_targets(gen, n, h, w, num_classes, kind) for (h, w), n in zip(sizes, counts)]

    ours = from_torchvision(tv.train(), exact=True)  # bit-exact execution (the default runs NHWC + Winograd)
    assert ours.config.preset == "torchvision" and ours.training

    captured = {}
    original_head_loss = tv.head.compute_loss

    def capture_head_loss(targets_, head_outputs, anchors, matched_idxs):
        captured["tv"] = torch.stack(matched_idxs)
        return original_head_loss(targets_, head_outputs, anchors, matched_idxs)

    original_assign = detector_module.assign_targets

    def capture_assign(*args, **kwargs):
        captured["ours"] = original_assign(*args, **kwargs)
        return captured["ours"]

    monkeypatch.setattr(tv.head, "compute_loss", capture_head_loss)
    monkeypatch.setattr(detector_module, "assign_targets", capture_assign)

    tv_losses = tv(images, [dict(t) for t in targets])
    our_losses = ours(images, [dict(t) for t in targets])
    assert set(our_losses) == set(tv_losses)
    for key in tv_losses:
        torch.testing.assert_close(our_losses[key], tv_losses[key], rtol=1e-5, atol=1e-7, msg=key)
    assert torch.equal(captured["ours"].matched_index, captured["tv"])
    if case in (0, 9):  # gradients agree too
        tv.zero_grad()
        ours.zero_grad()
        sum(tv_losses.values()).backward()
        sum(our_losses.values()).backward()
        pairs = [
            (tv.head.classification_head.cls_logits.weight, ours.head.cls_logits.weight),
            (tv.head.regression_head.bbox_reg.weight, ours.head.box_pred.weight),
            (tv.head.regression_head.bbox_ctrness.weight, ours.head.centerness.weight),
            (tv.backbone.fpn.inner_blocks[0][0].weight, ours.fpn.lateral[0].weight),
            (tv.backbone.body.conv1.weight, ours.backbone.trunk.conv1.weight),
        ]
        for a, b in pairs:
            # Deep in the backbone, float32 summation order leaves ~1e-6 of the gradient's scale.
            assert (b.grad - a.grad).norm() <= 1e-4 * a.grad.norm(), (b.grad - a.grad).norm() / a.grad.norm()

    tv.eval()
    ours.eval()
    with torch.no_grad():
        tv_dets = tv(images)
        our_dets = ours(images)
    for t, o in zip(tv_dets, our_dets):
        assert torch.equal(o["labels"], t["labels"])
        torch.testing.assert_close(o["boxes"], t["boxes"], rtol=0, atol=1e-3)
        torch.testing.assert_close(o["scores"], t["scores"], rtol=1e-5, atol=1e-6)
    assert sum(len(d["boxes"]) for d in tv_dets) > 0
