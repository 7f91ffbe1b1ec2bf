"""Decoding: hand-computed cases and equality with the reference per-image, per-level loop."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import batched_nms, clip_boxes_to_image

from fcos.config import STRIDES, DecodeConfig, PointsConfig
from fcos.model.decode import Decoder
from fcos.model.points import make_points
from fcos.structures import HeadOutputs


def logit(p):
    return math.log(p / (1 - p))


def small_points():
    # padded 64x64 input: P3 8x8, P4 4x4, P5 2x2, P6 1x1, P7 1x1 = 86 points
    shapes = [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    return make_points(shapes, STRIDES, (64, 64), PointsConfig()), shapes


def outputs_for(points, shapes, num_classes=2, batch=1):
    P = points.num_points
    cls = torch.full((batch, P, num_classes), -20.0)
    box = torch.full((batch, P, 4), 4.0)
    ctr = torch.full((batch, P), 20.0)  # sigmoid ~ 1
    return HeadOutputs(cls, box, ctr, shapes)


def index_of(points, x, y):
    return int(((points.xy[:, 0] == x) & (points.xy[:, 1] == y)).nonzero())


def test_hand_computed_scores_boxes_and_nms():
    points, shapes = small_points()
    out = outputs_for(points, shapes)
    a, b, c = index_of(points, 20, 20), index_of(points, 28, 20), index_of(points, 60, 60)
    out.cls_logits[0, a, 0] = logit(0.9)
    out.centerness[0, a] = logit(0.4)  # score sqrt(0.9 * 0.4) = 0.6
    out.cls_logits[0, b, 0] = logit(0.3)  # same class, score sqrt(0.3 * ~1) = 0.548 < 0.6
    out.box_ltrb[0, b] = torch.tensor([10.0, 4, 10, 4])  # [18,16,38,24] overlaps a's [16,16,24,24]: IoU = 48/176
    out.cls_logits[0, c, 1] = logit(0.8)
    out.box_ltrb[0, c] = torch.tensor([4.0, 4, 30, 30])  # [56,56,90,90] is clipped to the 64x64 image
    dets = Decoder(DecodeConfig(score_thresh=0.05, threshold_on="cls", nms_thresh=0.2))(out, points, [(64, 64)])[0]
    # b overlaps a with IoU 48/176 = 0.27 > 0.2 and lower score -> suppressed; c is another class.
    assert dets["labels"].tolist() == [1, 0]
    assert dets["scores"].tolist() == pytest.approx([math.sqrt(0.8 * torch.sigmoid(torch.tensor(20.0)).item()), 0.6], rel=1e-5)
    assert dets["boxes"].tolist() == [[56.0, 56.0, 64.0, 64.0], [16.0, 16.0, 24.0, 24.0]]
    # With a looser NMS threshold b survives.
    dets = Decoder(DecodeConfig(score_thresh=0.05, nms_thresh=0.5))(out, points, [(64, 64)])[0]
    assert len(dets["boxes"]) == 3


def test_threshold_modes_topk_max_detections_and_min_size():
    points, shapes = small_points()
    out = outputs_for(points, shapes)
    p3 = torch.arange(64)
    out.cls_logits[0, p3, 0] = torch.linspace(-1, 3, 64)  # 64 P3 candidates, far apart (no NMS overlap)
    out.box_ltrb[0, p3] = 1.0
    out.centerness[0] = logit(0.25)
    # threshold on cls: all 64 pass 0.05; on score sqrt(cls * 0.25) > 0.45 needs cls > 0.81
    n_cls = len(Decoder(DecodeConfig(score_thresh=0.05, max_detections=1000))(out, points, [(64, 64)])[0]["scores"])
    dets = Decoder(DecodeConfig(score_thresh=0.45, threshold_on="score", max_detections=1000))(out, points, [(64, 64)])[0]
    expected = int((torch.sigmoid(torch.linspace(-1, 3, 64)) * 0.25).sqrt().gt(0.45).sum())
    assert n_cls == 64 and len(dets["scores"]) == expected > 0
    dets = Decoder(DecodeConfig(score_thresh=0.05, topk_per_level=10))(out, points, [(64, 64)])[0]
    assert len(dets["scores"]) == 10 and dets["scores"].min() >= torch.sigmoid(torch.tensor(3 - 9 * 4 / 63)).mul(0.25).sqrt() - 1e-6
    assert len(Decoder(DecodeConfig(score_thresh=0.05, max_detections=7))(out, points, [(64, 64)])[0]["scores"]) == 7
    assert len(Decoder(DecodeConfig(score_thresh=0.05, min_box_size=3.0))(out, points, [(64, 64)])[0]["scores"]) == 0


def reference_decode(out, points, image_sizes, cfg: DecodeConfig):
    """Transcription of torchvision's FCOS.postprocess_detections (per image, per level)."""
    results = []
    sizes = points.level_sizes
    for i, size in enumerate(image_sizes):
        boxes_all, scores_all, labels_all = [], [], []
        for cls, box, ctr, pts in zip(out.cls_logits[i].split(sizes), out.box_ltrb[i].split(sizes),
                                      out.centerness[i].split(sizes), points.xy.split(sizes)):
            C = cls.shape[-1]
            prob = torch.sigmoid(cls)
            scores = torch.sqrt(prob * torch.sigmoid(ctr)[:, None]).flatten()
            gate = prob.flatten() if cfg.threshold_on == "cls" else scores
            keep = gate > cfg.score_thresh
            idx = torch.where(keep)[0]
            scores = scores[keep]
            scores, order = scores.topk(min(len(idx), cfg.topk_per_level))
            idx = idx[order]
            p, label = idx // C, idx % C
            b = torch.cat([pts[p] - box[p, :2], pts[p] + box[p, 2:]], 1)
            boxes_all.append(clip_boxes_to_image(b, size))
            scores_all.append(scores)
            labels_all.append(label)
        b, s, lab = torch.cat(boxes_all), torch.cat(scores_all), torch.cat(labels_all)
        keep = batched_nms(b, s, lab, cfg.nms_thresh)[: cfg.max_detections]
        results.append({"boxes": b[keep], "scores": s[keep], "labels": lab[keep]})
    return results


@pytest.mark.parametrize("cfg", [DecodeConfig(), DecodeConfig(score_thresh=0.2, threshold_on="score", topk_per_level=50)])
def test_batched_decoding_equals_reference_loop(cfg):
    gen = torch.Generator().manual_seed(0)
    shapes = [(40, 52), (20, 26), (10, 13), (5, 7), (3, 4)]
    points = make_points(shapes, STRIDES, (320, 416), PointsConfig())
    B, P, C = 3, points.num_points, 5
    out = HeadOutputs(
        torch.randn(B, P, C, generator=gen) * 2 - 3,
        torch.rand(B, P, 4, generator=gen) * 60,
        torch.randn(B, P, generator=gen),
        shapes,
    )
    sizes = [(320, 416), (300, 200), (256, 410)]
    ours = Decoder(cfg)(out, points, sizes)
    ref = reference_decode(out, points, sizes, cfg)
    for o, r in zip(ours, ref):
        assert len(o["boxes"]) > 20
        assert torch.equal(o["labels"], r["labels"])
        torch.testing.assert_close(o["scores"], r["scores"])
        torch.testing.assert_close(o["boxes"], r["boxes"])
    # one image at a time gives the same as the batch
    single = Decoder(cfg)(HeadOutputs(out.cls_logits[1:2], out.box_ltrb[1:2], out.centerness[1:2], shapes), points, sizes[1:2])
    assert torch.equal(single[0]["boxes"], ours[1]["boxes"])


def test_no_candidates_gives_empty_tensors():
    points, shapes = small_points()
    dets = Decoder(DecodeConfig())(outputs_for(points, shapes, batch=2), points, [(64, 64), (50, 60)])
    assert len(dets) == 2
    for d in dets:
        assert d["boxes"].shape == (0, 4) and d["scores"].shape == (0,) and d["labels"].dtype == torch.int64


@pytest.mark.parametrize("n,classes", [(50, 3), (900, 80), (3000, 80), (5000, 2), (4000, 1)])
def test_class_aware_nms_equals_torchvision_batched_nms(n, classes):
    from torchvision.ops import batched_nms as tv_batched_nms

    from fcos.model.decode import class_aware_nms

    gen = torch.Generator().manual_seed(n)
    centres = torch.rand(n // 10 + 1, 2, generator=gen) * 500
    pick = torch.randint(0, len(centres), (n,), generator=gen)
    xy = centres[pick] + torch.randn(n, 2, generator=gen) * 8
    wh = torch.rand(n, 2, generator=gen) * 60 + 10
    boxes = torch.cat([xy, xy + wh], 1).clamp(min=0)
    scores = torch.rand(n, generator=gen)
    labels = torch.randint(0, classes, (n,), generator=gen)
    ours = class_aware_nms(boxes, scores, labels, 0.5, group_size=256)
    ref = tv_batched_nms(boxes, scores, labels, 0.5)
    assert torch.equal(ours, ref)
    assert len(ref) < n  # suppression happened
