"""The FCOS detector: transform -> backbone -> fpn -> head; training: assigner + criterion; eval: decoder."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from fcos.config import STRIDES, FCOSConfig
from fcos.model.assign import assign_targets, stack_targets
from fcos.model.backbones import build_backbone
from fcos.model.backbones.custom import CUSTOM_PREFIX, ModuleBackbone
from fcos.model.compiled import CompileOptions, bucket_pad, compiled
from fcos.model.decode import Decoder
from fcos.model.fpn import FPN
from fcos.model.head import FCOSHead
from fcos.model.losses import FCOSCriterion, positive_stats
from fcos.model.points import make_points
from fcos.model.transform import InputTransform
from fcos.ops.sizing import check_resized_size
from fcos.structures import HeadOutputs, ImageBatch, Points

__all__ = ["FCOS"]


class FCOS(nn.Module):
    """FCOS with torchvision's detector interface.

    ``model(images, targets)`` in training mode returns ``{"classification", "bbox_regression",
    "bbox_ctrness"}``; in eval mode ``model(images)`` returns one ``{"boxes", "scores", "labels"}``
    per image, boxes xyxy in that image's own pixel coordinates. ``sizes=(min_size, max_size)`` resizes by
    the input rule at other sizes than the config's (test-time augmentation's scales).

    Args:
        images: list of [3, H_i, W_i] float tensors in [0, 1] (uint8 in [0, 255] is accepted too).
        targets: list of {"boxes": [N_i, 4] xyxy float, "labels": [N_i] int64 in [0, num_classes)}.

    ``FCOS(config)`` builds ``config.backbone`` (:mod:`fcos.model.backbones`); ``FCOS(config,
    backbone=module)`` uses a ready module returning [C3, C4, C5] at strides 8, 16, 32 instead
    (:class:`~fcos.model.backbones.custom.ModuleBackbone`), recorded as ``custom:<class name>``.
    """

    def __init__(self, config: FCOSConfig, *, backbone: nn.Module | None = None) -> None:
        super().__init__()
        if backbone is not None:
            named = dataclasses.replace(config.backbone, name=CUSTOM_PREFIX + type(backbone).__name__, weights=None)
            config = dataclasses.replace(config, backbone=named)
        self.config = config
        self.strides = STRIDES
        self.transform = InputTransform(config.input)
        self.backbone = build_backbone(config.backbone) if backbone is None else ModuleBackbone(backbone)
        self.fpn = FPN(self.backbone.out_channels, config.fpn, config.conv3x3)
        self.head = FCOSHead(config.fpn.channels, config.num_classes, config.head, self.strides, config.conv3x3)
        self.criterion = FCOSCriterion(config.loss)
        self.decoder = Decoder(config.decode)
        # From the latest training forward, for logging and health checks: 0-dim tensors on the model's
        # device (positive_stats), read when logged so the step itself never waits for the device.
        self.last_stats: dict[str, Tensor] = {}
        self.compile_options: CompileOptions | None = None  # set by compile()
        if config.channels_last:
            self.to(memory_format=torch.channels_last)

    @classmethod
    def from_torchvision(cls, tv_model: nn.Module, *, exact: bool = False, **changes: Any) -> FCOS:
        """Deprecated in 0.2, removed in 0.3: use :func:`fcos.weights.from_torchvision`."""
        warnings.warn("FCOS.from_torchvision is deprecated: use fcos.weights.from_torchvision", DeprecationWarning,
                      stacklevel=2)
        from fcos.weights.torchvision import from_torchvision

        return from_torchvision(tv_model, exact=exact, **changes)

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None, *,
        sizes: tuple[float, float] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        images = _check_images(images)
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode (call model.eval() for inference)")
            targets = _check_targets(targets, len(images), self.config.num_classes)
        batch, targets = self.transform(images, targets, sizes=sizes)
        _check_batch(batch, max(self.strides), self.config.input.size_divisible)
        options = self.compile_options
        tensor = batch.tensor if options is None else bucket_pad(batch.tensor, options.buckets)
        if self.training:
            assert targets is not None
            boxes, labels, valid = stack_targets(targets, tensor.device)
            run = FCOS.train_forward if options is None else compiled(FCOS.train_forward, options)
            losses, self.last_stats = run(self, tensor, boxes, labels, valid)
            return losses
        run = FCOS.network if options is None else compiled(FCOS.network, options)
        outputs = run(self, tensor)
        points = self.points(outputs, tensor.shape[-2:])
        detections = self.decoder(outputs, points, batch.image_sizes)
        return self.transform.postprocess(detections, batch.image_sizes, batch.original_sizes)

    def compile(self, options: CompileOptions | None = None, **changes: Any) -> FCOS:  # type: ignore[override]
        """Compile the detector's tensor work with ``torch.compile`` (:mod:`fcos.model.compiled`): the
        network for inference, network + assignment + losses for training; the host-side resizing and the
        decoding stay eager. ``changes`` override fields of ``options`` (``model.compile(mode="max-autotune")``).
        Returns the model itself; ``model.compile_options = None`` turns it off again."""
        self.compile_options = dataclasses.replace(options or CompileOptions(), **changes)
        return self

    def forward_batch(self, batch: ImageBatch) -> HeadOutputs:
        """Raw head outputs for an already transformed batch (benchmarks)."""
        return self.network(batch.tensor)

    def network(self, tensor: Tensor) -> HeadOutputs:
        """:meth:`head_outputs` in the model's memory format (channels_last where configured)."""
        if self.config.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return self.head_outputs(tensor)

    def head_outputs(self, tensor: Tensor) -> HeadOutputs:
        """backbone -> fpn -> head on a normalised, padded [B, 3, H, W] tensor (also traced for export)."""
        return self.head(self.fpn(self.backbone(tensor)))

    def train_forward(
        self, tensor: Tensor, boxes: Tensor, labels: Tensor, valid: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Network + assignment + losses on a padded batch: (losses, :func:`positive_stats`). Fixed shapes
        and no host sync (what ``torch.compile`` traces without a graph break).

        Args:
            tensor: [B, 3, H, W] normalised, padded. boxes: [B, M, 4] xyxy in its pixels. labels: [B, M]
                int64. valid: [B, M] bool (:func:`fcos.model.assign.stack_targets`).
        """
        outputs = self.network(tensor)
        points = self.points(outputs, tensor.shape[-2:])
        assignment = assign_targets(points, boxes, labels, valid, self.config.assign)
        stats = {**positive_stats(outputs, assignment), "num_degenerate": assignment.num_degenerate}
        return self.criterion(outputs, assignment, points.strides), stats

    def points(self, outputs: HeadOutputs, padded_size: Sequence[int]) -> Points:
        """Points of ``outputs`` for a padded input of ``padded_size`` (H, W): ints, or traced sizes."""
        return make_points(outputs.level_shapes, self.strides, padded_size, self.config.points, outputs.cls_logits.device)

    def loss(self, outputs: HeadOutputs, points: Points, targets: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
        boxes, labels, valid = stack_targets(targets, outputs.cls_logits.device)
        assignment = assign_targets(points, boxes, labels, valid, self.config.assign)
        self.last_stats = {**positive_stats(outputs, assignment), "num_degenerate": assignment.num_degenerate}
        return self.criterion(outputs, assignment, points.strides)


def _check_images(images: Any) -> list[Tensor]:
    if isinstance(images, Tensor):
        if images.dim() != 4:
            raise ValueError(f"images must be a list of [3, H, W] tensors or a [B, 3, H, W] tensor, got shape {tuple(images.shape)}")
        images = list(images)
    if not isinstance(images, list | tuple) or len(images) == 0:
        raise ValueError("images must be a non-empty list of [3, H, W] tensors")
    checked = []
    for i, image in enumerate(images):
        if not isinstance(image, Tensor):
            raise ValueError(f"images[{i}] is a {type(image).__name__}, expected a torch.Tensor")
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"images[{i}] must have shape [3, H, W] (RGB), got {tuple(image.shape)}")
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
        elif not image.is_floating_point():
            raise ValueError(f"images[{i}] has dtype {image.dtype}; expected a float tensor in [0, 1] or uint8")
        if image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError(f"images[{i}] is empty: shape {tuple(image.shape)}")
        checked.append(image)
    return checked


def _check_targets(targets: Any, num_images: int, num_classes: int) -> list[dict[str, Tensor]]:
    if not isinstance(targets, list | tuple) or len(targets) != num_images:
        got = len(targets) if isinstance(targets, list | tuple) else type(targets).__name__
        raise ValueError(f"expected one target dict per image ({num_images}), got {got}")
    checked = []
    for i, target in enumerate(targets):
        if not isinstance(target, dict) or "boxes" not in target or "labels" not in target:
            raise ValueError(f"targets[{i}] must be a dict with 'boxes' and 'labels'")
        boxes, labels = torch.as_tensor(target["boxes"]), torch.as_tensor(target["labels"])
        if boxes.numel() == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(f"targets[{i}]['boxes'] must have shape [N, 4], got {tuple(boxes.shape)}")
        if labels.dim() != 1 or labels.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"targets[{i}] has {boxes.shape[0]} boxes but labels of shape {tuple(labels.shape)}"
            )
        if not boxes.is_floating_point():
            boxes = boxes.float()
        if labels.numel() == 0:
            labels = labels.reshape(0).long()  # torch.tensor([]) is float32: harmless when empty
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"targets[{i}]['labels'] must be integers, got {labels.dtype}")
        if not torch.isfinite(boxes).all():
            raise ValueError(f"targets[{i}]['boxes'] contains NaN or infinite coordinates")
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"targets[{i}]['labels'] must lie in [0, {num_classes}), got min {int(labels.min())} max {int(labels.max())}"
            )
        checked.append({**target, "boxes": boxes, "labels": labels.long()})
    return checked


def _check_batch(batch: ImageBatch, largest_stride: int, size_divisible: int) -> None:
    for i, (size, original) in enumerate(zip(batch.image_sizes, batch.original_sizes, strict=True)):
        check_resized_size(size, original, largest_stride, size_divisible, index=i)
