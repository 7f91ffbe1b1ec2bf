"""FCOS losses: sigmoid focal loss, IoU-family box loss, centerness BCE, and the combining criterion.

All reductions run in float32 (also under autocast). The criterion normalises by the number of
positives summed over all processes and divided by the world size (official FCOS), clamped to >= 1,
so a batch without objects gives a finite classification loss and zero box/centerness losses.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from fcos.config import LossConfig
from fcos.model.assign import Assignment
from fcos.ops.boxes import ltrb_iou_loss
from fcos.structures import HeadOutputs

__all__ = ["FCOSCriterion", "positive_stats", "reduce_mean", "sigmoid_focal_loss_onehot"]


class _OneHotFocalLossSum(torch.autograd.Function):
    """sum over [N, C] of the sigmoid focal loss against one-hot targets, with a closed-form gradient.

    Every element pays the background term (1 - a) p^g softplus(x); the few positive entries swap it
    for a (1 - p)^g softplus(-x). This touches the dense logits in four passes and stores two tensors
    for backward, where the generic formula materialises the target tensor and ~10 temporaries.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, positive: Tensor, alpha: float, gamma: float) -> Tensor:  # type: ignore[override]
        x = logits.float().reshape(-1)
        p = torch.sigmoid(x)
        softplus = _softplus(x)  # -log(1 - p)
        weight = p * p if gamma == 2.0 else p.pow(gamma)
        # torch.sum's cascade summation: a BLAS dot drifts by ~1e-4 over millions of terms.
        background = weight.mul_(softplus).sum() * (1.0 - alpha)
        xp = x[positive]
        fg, bg = _positive_terms(xp, alpha, gamma)
        ctx.save_for_backward(p, softplus, positive, xp)
        ctx.alpha, ctx.gamma, ctx.shape, ctx.dtype = alpha, gamma, logits.shape, logits.dtype
        return background + (fg - bg).sum()

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        p, softplus, positive, xp = ctx.saved_tensors
        alpha, gamma = ctx.alpha, ctx.gamma
        # d/dx (1-a) p^g sp(x) = (1-a) p^g (g (1-p) sp(x) + p)
        grad = torch.sub(1.0, p).mul_(softplus).mul_(gamma).add_(p)
        grad.mul_(p * p if gamma == 2.0 else p.pow(gamma)).mul_((1.0 - alpha) * grad_output)
        with torch.enable_grad():  # the K positive entries: let autograd differentiate the swap
            xp = xp.detach().requires_grad_(True)
            fg, bg = _positive_terms(xp, alpha, gamma)
            (swap,) = torch.autograd.grad((fg - bg).sum(), xp)
        grad.index_add_(0, positive, swap * grad_output)
        return grad.view(ctx.shape).to(ctx.dtype), None, None, None


def _softplus(x: Tensor) -> Tensor:
    """log(1 + e^x) = -log(sigmoid(-x)), within 1e-6 absolute of F.softplus.

    Built from the vectorised sigmoid and log kernels: ~5x faster than F.softplus (log1p) on CPU for
    the dense [B, P, C] logits, which dominate the loss's cost. Above x = 15, softplus(x) equals x in
    float32 while sigmoid(-x) heads for underflow, so those entries are taken as x.
    """
    out = torch.sigmoid(x.neg()).log_().neg_()
    if x.numel() and bool(x.max() > 15):
        out = torch.where(x > 15, x, out)
    return out


def _positive_terms(x: Tensor, alpha: float, gamma: float) -> tuple[Tensor, Tensor]:
    """Foreground loss and the background term it replaces, per positive logit [K]."""
    p = torch.sigmoid(x)
    fg = alpha * (1.0 - p).pow(gamma) * F.softplus(-x)
    bg = (1.0 - alpha) * p.pow(gamma) * F.softplus(x)
    return fg, bg


def sigmoid_focal_loss_onehot(
    logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Summed sigmoid focal loss (Lin et al. 2017) with one-hot targets.

    Args:
        logits: [..., C] classification logits.
        labels: [...] int64 class index per row, -1 = background (all-zero target).
    Returns:
        scalar float32, equal to ``torchvision.ops.sigmoid_focal_loss(logits, one_hot, reduction="sum")``.
    """
    num_classes = logits.shape[-1]
    flat_labels = labels.reshape(-1)
    rows = torch.nonzero(flat_labels >= 0).squeeze(1)
    positive = rows * num_classes + flat_labels[rows]
    return _OneHotFocalLossSum.apply(logits, positive, alpha, gamma)


def reduce_mean(value: Tensor) -> Tensor:
    """All-reduce a float tensor and divide by the world size (identity without torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


class FCOSCriterion(nn.Module):
    """(head outputs, assignment) -> {"classification", "bbox_regression", "bbox_ctrness"} losses."""

    def __init__(self, config: LossConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, outputs: HeadOutputs, targets: Assignment, strides: Tensor | None = None) -> dict[str, Tensor]:
        """``strides``: [P] each point's level stride (:attr:`fcos.structures.Points.strides`), the unit of
        the official IoU smoothing (``LossConfig.iou_smoothing``); None = 1."""
        cfg = self.config
        positive = targets.positive
        num_pos = reduce_mean(positive.sum().float()).clamp(min=1.0)
        cls_loss = sigmoid_focal_loss_onehot(outputs.cls_logits, targets.labels, cfg.focal_alpha, cfg.focal_gamma)

        index = torch.nonzero(positive.reshape(-1)).squeeze(1)
        pred_ltrb = outputs.box_ltrb.reshape(-1, 4)[index].float()
        target_ltrb = targets.box_targets.reshape(-1, 4)[index]
        target_ctr = targets.centerness.reshape(-1)[index]
        unit = None if strides is None else strides.expand(positive.shape).reshape(-1)[index].float()
        box_losses = ltrb_iou_loss(pred_ltrb, target_ltrb, cfg.box_loss, smoothing=cfg.iou_smoothing, unit=unit)
        if cfg.box_weight_by_centerness:
            # Official: sum(ctr * loss) / sum(ctr), the sum averaged over processes like num_pos.
            box_loss = (box_losses * target_ctr).sum() / reduce_mean(target_ctr.sum()).clamp(min=1e-6)
        else:
            box_loss = box_losses.sum() / num_pos
        pred_ctr = outputs.centerness.reshape(-1)[index].float()
        ctr_loss = F.binary_cross_entropy_with_logits(pred_ctr, target_ctr, reduction="sum") / num_pos
        return {
            "classification": cls_loss / num_pos * cfg.cls_weight,
            "bbox_regression": box_loss * cfg.box_weight,
            "bbox_ctrness": ctr_loss * cfg.centerness_weight,
        }


@torch.no_grad()
def positive_stats(outputs: HeadOutputs, targets: Assignment) -> dict[str, float]:
    """How the two branches do on this batch's positives (the health signals of training):

    ``dead_boxes``: positives whose predicted box has zero width or height. The IoU family has no
    gradient there, and a relu regression at zero has none either: if every positive is dead the box
    branch has collapsed and cannot recover by itself. ``top_score``: the highest class probability a
    positive point gives its own class (0 without positives).
    """
    positive = targets.positive.reshape(-1)
    index = torch.nonzero(positive).squeeze(1)
    ltrb = outputs.box_ltrb.reshape(-1, 4)[index].float()
    dead = ((ltrb[:, 0] + ltrb[:, 2]) <= 0) | ((ltrb[:, 1] + ltrb[:, 3]) <= 0)
    logits = outputs.cls_logits.reshape(-1, outputs.cls_logits.shape[-1])[index]
    own = logits.gather(1, targets.labels.reshape(-1)[index, None]).float()
    top = torch.sigmoid(own).max() if len(index) else own.new_zeros(())
    dead_boxes, top_score = torch.stack((dead.sum().float(), top)).tolist()  # one sync
    return {"dead_boxes": int(dead_boxes), "top_score": top_score}
