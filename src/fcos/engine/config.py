"""Training configuration (typed, frozen) with named presets, and the model config a run builds."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from fcos import config as model_presets
from fcos.config import FCOSConfig

__all__ = ["TRAIN_PRESETS", "TrainConfig", "model_config_for"]


@dataclass(frozen=True)
class TrainConfig:
    # --- data and outputs
    data: str = ""  # dataset directory (COCO / VOC / YOLO layout) or data YAML
    train_split: str = "train"
    val_split: str | None = "val"  # None: no validation
    out: str = "runs/train"
    # --- length: epochs, or max_iters, capped by a wall-clock budget for the training loop
    epochs: int = 12
    max_iters: int | None = None  # optimizer updates; overrides epochs
    time_budget: float | None = None  # seconds; the schedule (warm-up, decay) is fitted to what fits
    # --- batch and optimisation
    batch_size: int = 8
    # Micro-batches per optimizer update. Equals one batch of accumulate * batch_size only when every
    # micro-batch has the same number of positives (each loss is normalised by its own micro-batch's
    # positives, so sparse micro-batches weigh more), BatchNorm is frozen and no image is padded differently.
    accumulate: int = 1
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float | None = None  # None: 0.01 * batch / 16 for SGD (official linear rule), 1e-3 for AdamW
    lr_scale: float = 1.0  # multiplies that default (lr None); the finetune recipe lowers it
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 500  # official: 500 iterations from 1/3 of the base rate
    warmup_factor: float = 1.0 / 3.0
    schedule: Literal["step", "cosine"] = "step"
    steps: tuple[float, ...] = (2 / 3, 8 / 9)  # official 60k and 80k of 90k iterations
    gamma: float = 0.1
    clip_grad: float | None = None  # max gradient norm
    ema: float | None = None  # EMA decay (e.g. 0.9998); evaluation then uses the averaged weights
    amp: bool = False  # CUDA: fp16 autocast + GradScaler; CPU: bf16 autocast
    # --- augmentation
    hflip: float = 0.5
    photometric: bool = True
    # --- runtime
    device: str = "cpu"
    workers: int = 2
    seed: int = 0
    resume: str | None = None  # checkpoint path, or "auto" for OUT/last.pt
    weights: str | None = None  # initialise the model from an fcos checkpoint (fine-tuning)
    eval_every: int = 1  # epochs between validations; 0: only at the end
    checkpoint_every: int = 0  # also write last.pt every N updates (0: at epoch ends only)
    checkpoint_interval: float = 30.0  # seconds: epoch-end checkpoints no more often than this
    log_every: int = 10
    on_nonfinite: Literal["stop", "skip"] = "stop"
    max_skips: int = 20  # consecutive skipped updates before "skip" gives up and stops
    val_images: int = 16  # validation images drawn into val_predictions.png
    progress: bool = True

    def base_lr(self, processes: int = 1) -> float:
        """``lr``, or the default: 0.01 per 16 images of the global batch for SGD (official linear rule,
        ``batch_size`` is per process), 1e-3 for AdamW; times ``lr_scale``."""
        if self.lr is not None:
            return self.lr
        default = 0.01 * self.batch_size * self.accumulate * processes / 16 if self.optimizer == "sgd" else 1e-3
        return default * self.lr_scale


def official_schedule(**changes: Any) -> TrainConfig:
    """The official FCOS 1x recipe (SGD, lr 0.01 per 16 images, warm-up 500, steps at 2/3 and 8/9)."""
    return dataclasses.replace(TrainConfig(), **changes)


def cpu_from_scratch(**changes: Any) -> TrainConfig:
    """Short runs from random init on a CPU: AdamW with cosine decay and a short warm-up."""
    base = TrainConfig(optimizer="adamw", lr=2e-3, weight_decay=0.05, warmup_iters=50, warmup_factor=0.1,
                       schedule="cosine", clip_grad=10.0, eval_every=0)
    return dataclasses.replace(base, **changes)


def finetune(**changes: Any) -> TrainConfig:
    """Fine-tuning pretrained weights (``--weights NAME`` or a checkpoint) on a new dataset: the official
    SGD recipe at a quarter of its rate (0.0025 per 16 images: the features are trained, only the new
    classification rows start from scratch), a short warm-up (100 updates from 1/10), steps at 2/3 and
    8/9 of 12 epochs. Backbone freezing is the model's: stem + stage 1 by default (``--freeze-stages``)."""
    base = TrainConfig(lr_scale=0.25, warmup_iters=100, warmup_factor=0.1)
    return dataclasses.replace(base, **changes)


TRAIN_PRESETS = {"official": official_schedule, "cpu": cpu_from_scratch, "finetune": finetune}


def model_config_for(
    num_classes: int,
    *,
    preset: str = "official",
    backbone: str = "resnet50",
    img_size: int | None = None,
    fpn_channels: int | None = None,
    head_convs: int | None = None,
    backbone_weights: str | None = None,
    frozen_stages: int | None = None,
    **changes: Any,
) -> FCOSConfig:
    """A model config from a preset plus the options the CLI exposes.

    ``img_size`` caps the longer side (min_size = max_size = img_size), the usual meaning for
    training on small images. ``backbone_weights``: None, "imagenet", a torchvision weights name or a
    file (:class:`fcos.config.BackboneConfig`); ``frozen_stages`` overrides the "auto" freezing.
    """
    extra: dict[str, Any] = dict(changes)
    if img_size is not None:
        extra |= {"input.min_size": img_size, "input.max_size": img_size}
    if fpn_channels is not None:
        extra |= {"fpn.channels": fpn_channels, "head.norm_groups": math.gcd(fpn_channels // 2, 32)}
    if head_convs is not None:
        extra["head.num_convs"] = head_convs
    if backbone_weights is not None:
        extra["backbone.weights"] = backbone_weights
    if frozen_stages is not None:
        extra["backbone.frozen_stages"] = frozen_stages
    # Pretrained weights trained on other input statistics than ImageNet's (some timm models) set them.
    from fcos.model.backbones import backbone_input_stats

    extra = {**{f"input.{k}": v for k, v in backbone_input_stats(backbone, backbone_weights).items()}, **extra}
    return model_presets.preset(preset, num_classes=num_classes, backbone=backbone, **extra)
