"""The exported detector as one traceable module: normalisation, network, points, dense decoding and
(optionally) class-aware NMS, from (images, image_sizes) to fixed-size detection tensors.

Not tied to a file format: :mod:`fcos.export.onnx` traces it into ONNX, and any later format
(OpenVINO, int8) reuses it with the host side in :mod:`fcos.export.host`. Everything here is the
PyTorch model's own code: the network (:meth:`fcos.FCOS.head_outputs`), point placement
(:func:`fcos.model.points.make_points`) and decoding (:func:`fcos.model.decode.decode_dense`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops import nms as _nms

from fcos.config import FCOSConfig
from fcos.model.conv import Conv3x3
from fcos.model.decode import INVALID_SCORE, decode_dense

__all__ = ["DetectorGraph", "fold_backbone_convs", "nms_dense"]

# Backbone 3x3 convolutions with fewer input channels stay direct in exported graphs: measured in ONNX
# Runtime on R50 at 800x1088, Winograd takes ResNet stage 3's (256 channels, 50x68) from 8.3 to 5.5 ms
# each, but stage 2's (128 channels, 100x136) from 8.5 to ~9.5 ms: the transforms outweigh the products.
FOLD_MIN_CHANNELS = 256


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (opset >= 10); the eager forward has the same semantics.

    boxes [B, N, 4] xyxy, scores [B, C, N] -> selected [K, 3] int64 (image, class, box), per image and
    class in descending score order, at most ``max_per_class`` each; only scores > ``score_threshold``.
    """

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_per_class: int, iou_threshold: float, score_threshold: float) -> Tensor:
        selected = []
        for b in range(boxes.shape[0]):  # eager only (tracing, tests); the graph holds one ONNX op
            for c in range(scores.shape[1]):
                idx = torch.nonzero(scores[b, c] > score_threshold).squeeze(1)
                keep = idx[_nms(boxes[b, idx], scores[b, c, idx], iou_threshold)[:max_per_class]]
                selected.append(torch.stack((torch.full_like(keep, b), torch.full_like(keep, c), keep), 1))
        return torch.cat(selected) if selected else torch.zeros((0, 3), dtype=torch.long)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):
        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            g.op("Constant", value_t=torch.tensor([max_per_class], dtype=torch.long)),
            g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)),
            center_point_box_i=0,
        )


def nms_dense(
    boxes: Tensor, scores: Tensor, labels: Tensor, num_classes: int, keep_max: int, nms_thresh: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Class-aware NMS on :func:`fcos.model.decode.decode_dense` output [B, N, ...], then the best
    ``keep_max`` (<= N) per image.

    Returns boxes [B, D, 4], scores [B, D], labels [B, D], num_detections [B], unused rows zeroed / -1.
    """
    classes = torch.arange(num_classes, device=labels.device)
    per_class = torch.where(labels[:, None, :] == classes[None, :, None], scores[:, None, :], INVALID_SCORE)  # [B, C, N]
    selected = _NonMaxSuppression.apply(boxes, per_class, keep_max, nms_thresh, INVALID_SCORE / 2)  # [K, 3]
    image, index = selected[:, 0], selected[:, 2]
    kept = torch.full_like(scores, INVALID_SCORE).index_put((image, index), scores[image, index])
    top_scores, top_idx = kept.topk(keep_max, dim=1)  # [B, D]
    valid = top_scores >= 0
    out_boxes = torch.gather(boxes, 1, top_idx[..., None].expand(-1, -1, 4)) * valid[..., None]
    out_labels = torch.where(valid, torch.gather(labels, 1, top_idx), -1)
    return out_boxes, torch.where(valid, top_scores, 0.0), out_labels, valid.sum(1)


def fold_backbone_convs(module: nn.Module, algorithm: str, min_channels: int = FOLD_MIN_CHANNELS) -> int:
    """Fold each 3x3 stride-1 convolution of torchvision's ResNet blocks (BasicBlock, Bottleneck; ResNeXt
    and wide ResNets too, ungrouped ones only) with >= ``min_channels`` inputs into one :class:`Conv3x3`
    running ``algorithm``, together with the BatchNorm that follows it (``convN`` -> ``bnN``, eval-mode
    BatchNorm2d or FrozenBatchNorm2d), which becomes Identity: bn(conv(x)) as one convolution with bias,
    which an exported graph can then write as Winograd operators (a runtime folds a BatchNorm into a
    Conv node itself, but cannot into the Winograd operators). Other backbones keep their layers: only
    those blocks are known to apply ``bnN`` right after ``convN`` and nothing else in between. For export
    only: the module is changed in place. Returns how many convolutions were folded."""
    folded = 0
    for block in list(module.modules()):
        if not isinstance(block, (BasicBlock, Bottleneck)):
            continue
        for name, conv in list(block.named_children()):
            norm_name = "bn" + name[len("conv"):]
            norm = getattr(block, norm_name, None) if name.startswith("conv") else None
            # Exact types: subclasses (timm's BatchNormAct2d) may do more than normalise.
            if not (type(conv) is nn.Conv2d and type(norm) in (nn.BatchNorm2d, FrozenBatchNorm2d)
                    and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
                    and conv.dilation == (1, 1) and conv.groups == 1 and conv.in_channels >= min_channels
                    and not norm.training):
                continue
            with torch.no_grad():
                scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
                shift = norm.bias - norm.running_mean * scale
                if conv.bias is not None:
                    shift = shift + conv.bias * scale
                fused = Conv3x3(conv.in_channels, conv.out_channels, algorithm).to(conv.weight)
                fused.weight.copy_(conv.weight * scale[:, None, None, None])
                fused.bias.copy_(shift)
            setattr(block, name, fused.eval())
            setattr(block, norm_name, nn.Identity())
            folded += 1
    return folded


class DetectorGraph(nn.Module):
    """(images [B, 3, H, W] in [0, 1], image_sizes [B, 2] float (h, w)) -> detections.

    With ``nms=True``: boxes [B, D, 4], scores [B, D], labels [B, D] int64, num_detections [B]
    (D = ``decode.max_detections``, sorted by descending score). With ``nms=False``: the
    ``topk_per_level`` candidates of each level, boxes [B, N, 4], scores [B, N], labels [B, N].
    Unused rows: label -1, score 0, zero box. Boxes are in resized-image pixels.
    """

    def __init__(self, model: nn.Module, nms: bool = True) -> None:
        super().__init__()
        self.model = model
        self.nms = nms
        cfg: FCOSConfig = model.config
        self.register_buffer("mean", torch.tensor(cfg.input.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.input.std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: Tensor, image_sizes: Tensor) -> Tensor:
        """(x - mean) / std inside each image and 0 outside it: :class:`~fcos.model.transform.InputTransform`'s
        zero padding, whatever the host put in the padding."""
        rows = torch.arange(images.shape[-2], device=images.device, dtype=torch.float32)
        cols = torch.arange(images.shape[-1], device=images.device, dtype=torch.float32)
        inside = (rows[None, :, None] < image_sizes[:, 0, None, None]) & (cols[None, None, :] < image_sizes[:, 1, None, None])
        return torch.where(inside[:, None], (images - self.mean) / self.std, 0.0)

    def forward(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, ...]:
        cfg: FCOSConfig = self.model.config
        outputs = self.model.head_outputs(self.normalize(images, image_sizes))
        points = self.model.points(outputs, images.shape[-2:])
        decoded = decode_dense(outputs, points, image_sizes, cfg.num_classes, cfg.decode)
        if self.nms:
            keep_max = min(cfg.decode.max_detections, len(points.levels) * cfg.decode.topk_per_level)
            return nms_dense(*decoded, cfg.num_classes, keep_max, cfg.decode.nms_thresh)
        boxes, scores, labels = decoded
        valid = labels >= 0
        return boxes * valid[..., None], torch.where(valid, scores, 0.0), labels
