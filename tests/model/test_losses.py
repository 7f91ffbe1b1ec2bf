"""Losses: focal loss against torchvision, hand-computed criterion values, empty batches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from fcos.config import LossConfig
from fcos.model.assign import Assignment
from fcos.model.losses import FCOSCriterion, positive_stats, sigmoid_focal_loss_onehot
from fcos.structures import HeadOutputs


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.5, 1.5), (0.25, 0.0)])
def test_focal_matches_torchvision_values_and_gradients(alpha, gamma):
    gen = torch.Generator().manual_seed(1)
    logits = (torch.randn(3, 500, 7, generator=gen) * 4).requires_grad_(True)
    logits.data[0, 0] = torch.tensor([60.0, -60.0, 0.0, 30.0, -30.0, 1e-3, 88.0])  # extremes stay finite
    labels = torch.randint(-1, 7, (3, 500), generator=gen)
    labels[0, 0] = 1
    ours = sigmoid_focal_loss_onehot(logits, labels, alpha, gamma)
    (g_ours,) = torch.autograd.grad(ours, logits)
    onehot = F.one_hot(labels.clamp(min=0), 7).float() * (labels >= 0)[..., None]
    ref = sigmoid_focal_loss(logits, onehot, alpha=alpha, gamma=gamma, reduction="sum")
    (g_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-6)


def test_focal_hand_computed():
    # x = 0 -> p = 0.5, softplus(0) = ln 2.
    # positive: alpha (1-p)^2 ln2 = 0.25 * 0.25 * ln2; negative: (1-alpha) p^2 ln2 = 0.75 * 0.25 * ln2
    logits = torch.zeros(1, 2, 2)
    labels = torch.tensor([[1, -1]])  # point 0 is class 1; point 1 background
    expected = 0.25 * 0.25 * math.log(2) + 3 * (0.75 * 0.25 * math.log(2))
    assert sigmoid_focal_loss_onehot(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_focal_half_precision_input_reduces_in_float32():
    logits = torch.randn(2, 50, 3).to(torch.bfloat16).requires_grad_(True)
    labels = torch.randint(-1, 3, (2, 50))
    loss = sigmoid_focal_loss_onehot(logits, labels)
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad.dtype == torch.bfloat16 and torch.isfinite(logits.grad.float()).all()


def make_case():
    """Two images x 3 points, 2 classes. Image 0 has two positives, image 1 none."""
    cls = torch.zeros(2, 3, 2)
    box = torch.tensor([[[2.0, 2, 2, 2], [1, 1, 1, 1], [5, 5, 5, 5]], [[1.0, 1, 1, 1]] * 3])
    ctr = torch.zeros(2, 3)
    outputs = HeadOutputs(cls.requires_grad_(True), box.requires_grad_(True), ctr.requires_grad_(True), [(1, 3)])
    targets = Assignment(
        labels=torch.tensor([[0, 1, -1], [-1, -1, -1]]),
        box_targets=torch.tensor([[[2.0, 2, 2, 2], [2, 2, 2, 2], [0, 0, 0, 0]], [[0.0] * 4] * 3]),
        centerness=torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 0.0]]),
        matched_index=torch.tensor([[0, 1, -1], [-1, -1, -1]]),
        num_degenerate=0,
    )
    return outputs, targets


def test_criterion_official_hand_computed():
    outputs, targets = make_case()
    losses = FCOSCriterion(LossConfig())(outputs, targets)
    ln2 = math.log(2)
    # classification: 12 logits at 0; 2 positives pay 0.25*0.25*ln2, 10 negatives 0.75*0.25*ln2; / 2 positives
    cls = (2 * 0.25 * 0.25 * ln2 + 10 * 0.75 * 0.25 * ln2) / 2
    # box (official IOULoss, unit stride): point 0 exact (loss 0); point 1 pred 2x2 inside target 4x4:
    # IoU = (4 + 1) / (16 + 1), enclosing = union, so GIoU loss 12/17; weighted by centerness
    # targets 1.0 and 0.5, normalised by their sum 1.5
    box = (1.0 * 0.0 + 0.5 * 12 / 17) / 1.5
    # centerness BCE with logit 0: -(t ln .5 + (1-t) ln .5) = ln2 for both; / 2 positives
    ctr = (ln2 + ln2) / 2
    assert losses["classification"].item() == pytest.approx(cls, rel=1e-6)
    assert losses["bbox_regression"].item() == pytest.approx(box, rel=1e-6)
    assert losses["bbox_ctrness"].item() == pytest.approx(ctr, rel=1e-6)


def test_criterion_official_iou_smoothing_is_stride_squared():
    outputs, targets = make_case()
    strides = torch.tensor([8.0, 8.0, 16.0])  # [P]: both positives on a stride-8 level
    losses = FCOSCriterion(LossConfig())(outputs, targets, strides)
    # point 1 in pixels: I = 4, U = 16, + 8^2: IoU = 68 / 80 (the official code: distances / 8,
    # I = 1/16, U = 1/4, + 1); enclosing = union, so the GIoU term is 0
    assert losses["bbox_regression"].item() == pytest.approx(0.5 * (1 - 68 / 80) / 1.5, rel=1e-5)  # 1e-7: official eps
    # torchvision's box loss has no smoothing: the same case gives 1 - 4/16
    plain = FCOSCriterion(LossConfig(iou_smoothing=0.0))(outputs, targets, strides)
    assert plain["bbox_regression"].item() == pytest.approx(0.5 * 0.75 / 1.5, rel=1e-6)


def test_positive_stats_counts_dead_boxes_and_top_score():
    outputs, targets = make_case()
    outputs.box_ltrb.data[0, 1] = torch.tensor([0.0, 3.0, 0.0, 3.0])  # zero width: dead
    outputs.cls_logits.data[0, 0, 0] = 2.0  # point 0's own class (0)
    outputs.cls_logits.data[0, 1, 0] = 5.0  # point 1, another class than its own (1): not counted
    stats = positive_stats(outputs, targets)
    assert stats["dead_boxes"] == 1
    assert stats["top_score"] == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    empty = Assignment(labels=torch.full((2, 3), -1), box_targets=torch.zeros(2, 3, 4), centerness=torch.zeros(2, 3),
                       matched_index=torch.full((2, 3), -1), num_degenerate=0)
    assert {k: float(v) for k, v in positive_stats(outputs, empty).items()} == {
        "num_positive": 0.0, "dead_boxes": 0.0, "top_score": 0.0}


def test_criterion_torchvision_normalisation_hand_computed():
    outputs, targets = make_case()
    losses = FCOSCriterion(LossConfig(box_weight_by_centerness=False, box_loss="linear_iou", iou_smoothing=0.0))(outputs, targets)
    # unweighted, / num_pos = 2: (0 + 0.75) / 2
    assert losses["bbox_regression"].item() == pytest.approx(0.375, rel=1e-6)


def test_criterion_without_objects_is_finite_and_backpropagates():
    outputs, targets = make_case()
    empty = Assignment(
        labels=torch.full((2, 3), -1),
        box_targets=torch.zeros(2, 3, 4),
        centerness=torch.zeros(2, 3),
        matched_index=torch.full((2, 3), -1),
        num_degenerate=0,
    )
    for cfg in (LossConfig(), LossConfig(box_weight_by_centerness=False)):
        losses = FCOSCriterion(cfg)(outputs, empty)
        assert losses["bbox_regression"].item() == 0 and losses["bbox_ctrness"].item() == 0
        # 12 negatives at logit 0, normalised by max(1, 0) = 1
        assert losses["classification"].item() == pytest.approx(12 * 0.75 * 0.25 * math.log(2), rel=1e-6)
        total = sum(losses.values())
        grads = torch.autograd.grad(total, [outputs.cls_logits, outputs.box_ltrb, outputs.centerness])
        assert all(torch.isfinite(g).all() for g in grads)
        assert grads[1].abs().sum() == 0
