"""Training configuration (typed, frozen) and its named recipes; every field is a ``fcos train`` flag."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from fcos.data.pipeline import Augmentation
from fcos.data.sampling import parse_repeat_threshold
from fcos.engine.schedule import DEFAULT_EPOCHS
from fcos.utils.flags import (
    AT_LEAST_1,
    FRACTION,
    IMAGE_SIDE,
    NON_NEGATIVE,
    POSITIVE,
    Bound,
    check_bounds,
    option,
    parse_fraction,
    parse_scale_range,
    parse_size_range,
)

__all__ = ["AUGMENT", "DATA", "RUNTIME", "SCHEDULE", "TRAIN_PRESETS", "TrainConfig", "recipe_model"]


DATA, SCHEDULE, RUNTIME = "data and outputs", "schedule (defaults from --recipe)", "runtime"
AUGMENT = "augmentation (training only; defaults from --recipe)"


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Every field is a ``fcos train`` flag (``--max-iters`` for ``max_iters``)."""

    # --- data and outputs
    data: str = option("", "dataset directory (COCO, VOC or YOLO layout) or data YAML", group=DATA, required=True)
    train_split: str = option("train", "split to train on", group=DATA)
    val_split: str | None = option("val", "split to validate on; 'none' to skip validation", group=DATA)
    out: str = option("runs/train", "run folder (config, metrics, plots, checkpoints)", group=DATA)
    skip_bad_images: bool = option(
        False, "decode every image first; leave out, count and name the unreadable ones instead of stopping "
        "at the first", group=DATA)
    # LVIS (Gupta et al. 2019) uses 0.001 over 1,203 classes; a few classes with one rare: about the
    # fraction of images the typical class is in (`fcos data stats` suggests a value).
    repeat_threshold: float | None = option(
        None, "class-balanced sampling (LVIS repeat factors): an image is repeated max(1, sqrt(T / f)) times per "
        "epoch, f the fraction of training images holding its rarest class; e.g. 0.3", group=DATA,
        parse=parse_repeat_threshold, metavar="T")
    # --- length: epochs or max_iters, and a wall-clock budget; the smallest ends the run
    epochs: int | None = option(
        None, f"passes over the training split (default {DEFAULT_EPOCHS}; with --time-budget alone: as many "
        "as fit)", group=SCHEDULE, bound=AT_LEAST_1)
    max_iters: int | None = option(None, "optimizer updates (overrides --epochs)",
                                   group=SCHEDULE, bound=AT_LEAST_1)
    time_budget: float | None = option(
        None, "seconds of training: alone, the run fills them; with --epochs or --max-iters, the shorter wins. "
        "The schedule (warm-up, decay) is fitted to the length", group=SCHEDULE, bound=POSITIVE)
    # --- batch and optimisation
    batch_size: int = option(8, "images per process and micro-batch", group=SCHEDULE, bound=AT_LEAST_1)
    # Equals one batch of accumulate * batch_size only when every micro-batch has the same number of
    # positives (each loss is normalised by its own micro-batch's positives, so sparse micro-batches
    # weigh more), BatchNorm is frozen and no image is padded differently.
    accumulate: int = option(1, "micro-batches per update (gradient accumulation)",
                             group=SCHEDULE, bound=AT_LEAST_1)
    optimizer: Literal["sgd", "adamw"] = option("sgd", "optimizer", group=SCHEDULE)
    lr: float | None = option(
        None, "learning rate (default: 0.01 per 16 images for SGD, the official linear rule; 1e-3 for AdamW)",
        group=SCHEDULE, bound=NON_NEGATIVE)
    lr_scale: float = option(
        1.0, "multiplies the default learning rate when --lr is not given (the finetune recipe: 0.25)",
        group=SCHEDULE, bound=NON_NEGATIVE)
    momentum: float = option(0.9, "SGD momentum", group=SCHEDULE, bound=Bound(0, 1, high_open=True))
    weight_decay: float = option(1e-4, "weight decay (never on biases; norms: --decay-norms)",
                                 group=SCHEDULE, bound=NON_NEGATIVE)
    # Official solver (fcos_core/solver/build.py, config defaults): biases learn at BIAS_LR_FACTOR 2 and
    # are the only parameters exempt from decay (WEIGHT_DECAY_BIAS 0): GroupNorm weights and Scales decay.
    bias_lr_factor: float = option(2.0, "learning-rate multiplier of biases (official 2)",
                                   group=SCHEDULE, bound=NON_NEGATIVE)
    decay_norms: bool = option(
        True, "weight decay also on norm weights and the level scales (official; off: only weights decay)",
        group=SCHEDULE)
    warmup_iters: int = option(500, "warm-up updates (official: 500 at 1/3 of the rate)",
                               group=SCHEDULE, bound=NON_NEGATIVE)
    warmup_factor: float = option(1.0 / 3.0, "learning-rate factor during (constant) or at the start of (linear) "
                                  "the warm-up", group=SCHEDULE, bound=Bound(0, 1, low_open=True))
    # Official FCOS configs set WARMUP_METHOD "constant" (maskrcnn_benchmark's default is "linear").
    warmup_method: Literal["constant", "linear"] = option(
        "constant", "warm-up shape: constant at --warmup-factor (official), or linear from it to 1", group=SCHEDULE)
    schedule: Literal["step", "cosine"] = option("step", "learning-rate decay after warm-up", group=SCHEDULE)
    steps: tuple[float, ...] = option(
        (2 / 3, 8 / 9), "step decay points, fractions of the run (official: 60k and 80k of 90k)",
        group=SCHEDULE, bound=FRACTION)
    gamma: float = option(0.1, "step decay factor", group=SCHEDULE, bound=POSITIVE)
    clip_grad: float | None = option(None, "max gradient norm", group=SCHEDULE, bound=POSITIVE)
    ema: float | None = option(
        None, "EMA decay, e.g. 0.9998; evaluation then uses the averaged weights",
        group=SCHEDULE, bound=Bound(0, 1, low_open=True, high_open=True))
    amp: bool = option(False, "mixed precision (CUDA: bf16 autocast on GPUs with native bf16, else fp16 + GradScaler; CPU: bf16 autocast where the CPU has native bf16, else fp32)", group=SCHEDULE)
    compile: bool = option(
        False, "torch.compile the network, assignment and losses (fcos.model.compiled: sizes padded to one of 8 "
        "per octave, so multi-scale training compiles a few shapes); the first updates pay the compilation (inside "
        "the time budget)", group=SCHEDULE)
    # --- augmentation (fcos.data.augment; boxes follow every geometric change)
    hflip: float = option(0.5, "horizontal flip probability", group=AUGMENT, bound=FRACTION)
    # Official FCOS trains with resize and horizontal flip only (fcos_core/data/transforms/build.py).
    photometric: bool = option(False, "photometric jitter (brightness, contrast, saturation, hue)", group=AUGMENT)
    multi_scale: tuple[int, int] | None = option(
        None, "shorter side drawn per image from MIN-MAX, e.g. 640-800 (official multi-scale training); the longer "
        "side stays capped by the model's max size", group=AUGMENT, parse=parse_size_range, metavar="MIN-MAX")
    scale_jitter: tuple[float, float] | None = option(
        None, "resize by a factor drawn from LOW-HIGH, then crop or pad back to the input size (large-scale jitter: "
        "0.1-2.0)", group=AUGMENT, parse=parse_scale_range, metavar="LOW-HIGH")
    mosaic: float = option(0.0, "probability of a 2x2 mosaic with three random training images", group=AUGMENT,
                           parse=parse_fraction, metavar="P")
    tile: int | None = option(
        None, "train on SIZE x SIZE px crops of the images at native resolution (or --tile-scale), placed around "
        "objects, instead of whole images shrunk to the input size: small objects in large images keep their "
        "pixels. The model's input size becomes SIZE; predict/eval/serve then slice images into such tiles "
        "(--slice auto)", group=AUGMENT, metavar="SIZE", bound=IMAGE_SIDE)
    tile_scale: float = option(1.0, "with --tile: scale the image by this before cropping (1: native resolution)",
                               group=AUGMENT, metavar="S", bound=POSITIVE)
    tile_full_ratio: float = option(
        0.2, "with --tile: the share of samples that stay whole images (at the input size), so large objects keep "
        "being learned", group=AUGMENT, parse=parse_fraction, metavar="P")
    min_visible: float = option(
        0.25, "a box cut by a crop or the mosaic's edge is kept when at least this fraction of its area remains, "
        "else dropped (and counted)", group=AUGMENT, parse=parse_fraction, metavar="FRACTION")
    # --- runtime
    device: str = option("auto", "auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:1, mps", group=RUNTIME)
    workers: int | None = option(
        None, "data loader worker processes (default by device: CUDA up to 8 per process, CPU 2; "
        "fcos.data.loader.default_workers)", group=RUNTIME, bound=NON_NEGATIVE)
    seed: int = option(0, "seed of initialisation, sampling and augmentation", group=RUNTIME)
    resume: str | None = option(
        None, "continue from a checkpoint (without a value: OUT/last.pt)", group=RUNTIME, const="auto")
    weights: str | None = option(
        None, "fine-tune from a pretrained name (`fcos models`) or an fcos checkpoint: the model is theirs, "
        "classes that match theirs by name keep their rows", group="model")
    eval_every: int = option(1, "epochs between validations (0: only at the end)",
                             group=RUNTIME, bound=NON_NEGATIVE)
    checkpoint_every: int = option(0, "also save last.pt every N updates (0: at epoch ends only)",
                                   group=RUNTIME, bound=NON_NEGATIVE)
    checkpoint_interval: float = option(
        30.0, "seconds: epoch-end checkpoints no more often than this", group=RUNTIME, bound=NON_NEGATIVE)
    log_every: int = option(10, "updates between metrics.jsonl lines", group=RUNTIME, bound=AT_LEAST_1)
    on_nonfinite: Literal["stop", "skip"] = option(
        "stop", "on a NaN/inf loss or gradient: stop (keeping the last checkpoint) or skip the update", group=RUNTIME)
    max_skips: int = option(20, "consecutive skipped updates before 'skip' gives up and stops",
                            group=RUNTIME, bound=NON_NEGATIVE)
    collapse_patience: int = option(
        50, "updates with every predicted box of zero size (x4: no object scored above the detection threshold) "
        "before --on-collapse acts; 0: never check", group=RUNTIME, bound=NON_NEGATIVE)
    on_collapse: Literal["stop", "warn"] = option(
        "stop", "when a head branch has collapsed: stop with what to change, or warn once and go on", group=RUNTIME)
    val_images: int = option(16, "validation images drawn into val_predictions.png",
                             group=RUNTIME, bound=NON_NEGATIVE)
    patience: int = option(
        0, "early stopping: end the run after N evaluations in a row without a better validation AP (0: never)",
        group=RUNTIME, bound=NON_NEGATIVE)
    tensorboard: bool = option(
        False, "log losses, learning rate, validation AP and the prediction grid for TensorBoard into the run "
        "folder (`tensorboard --logdir runs`; pip install 'fcos[tensorboard]')", group=RUNTIME)
    mlflow: bool = option(
        False, "log params, losses, metrics, pictures and the best checkpoint to MLflow (MLFLOW_TRACKING_URI, else a "
        "local mlruns/ store; pip install 'fcos[mlflow]')", group=RUNTIME)
    wandb: bool = option(
        False, "log the same to Weights & Biases, offline unless WANDB_MODE says otherwise (pip install wandb)",
        group=RUNTIME)
    # 30 min as detectron2, Lightning and Hugging Face default their process-group timeout to.
    ddp_timeout: float = option(
        1800.0, "seconds a process may go without progress (outside waiting for the others) before the run "
        "stops, naming it; longer than the slowest validation or checkpoint write on rank 0 (0: no watchdog)",
        group=RUNTIME, bound=NON_NEGATIVE)
    progress: bool = option(True, "progress bar", group=RUNTIME)

    def __post_init__(self) -> None:
        check_bounds(self)  # a bad number named here, not deep inside torch's optimizer or loader

    def augmentation(self) -> Augmentation:
        """The augmentation fields as the data pipeline's :class:`~fcos.data.pipeline.Augmentation`."""
        return Augmentation(multi_scale=self.multi_scale, scale_jitter=self.scale_jitter, mosaic=self.mosaic,
                            hflip=self.hflip, photometric=self.photometric, min_visible=self.min_visible,
                            tile=self.tile, tile_scale=self.tile_scale, tile_full_ratio=self.tile_full_ratio)

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
    base = TrainConfig(optimizer="adamw", lr=2e-3, weight_decay=0.05, bias_lr_factor=1.0, decay_norms=False,
                       warmup_iters=50, warmup_factor=0.1, warmup_method="linear", schedule="cosine", clip_grad=10.0,
                       photometric=True, eval_every=0)
    return dataclasses.replace(base, **changes)


def finetune(**changes: Any) -> TrainConfig:
    """Fine-tuning pretrained weights (``--weights NAME`` or a checkpoint) on a new dataset: the official
    SGD recipe at a quarter of its rate (0.0025 per 16 images: the features are trained, only the new
    classification rows start from scratch), a short linear warm-up (100 updates from 1/10), steps at 2/3
    and 8/9 of 12 epochs. Backbone freezing is the model's: stem + stage 1 by default (``--freeze-stages``)."""
    base = TrainConfig(lr_scale=0.25, warmup_iters=100, warmup_factor=0.1, warmup_method="linear")
    return dataclasses.replace(base, **changes)


TRAIN_PRESETS = {"official": official_schedule, "cpu": cpu_from_scratch, "finetune": finetune}

# What a recipe changes in a model trained from scratch when no flag says otherwise (``--regression``
# overrides the regression). The cpu recipe's AdamW steps can push the relu regression below zero at
# every point, where neither relu nor the IoU loss of a zero-size box has a gradient: the box loss then
# sits at 1.000 for good (issue 16's collapse). softplus is positive with a gradient everywhere, so the
# branch comes back. The official +1 smoothing of the IoU loss (stride^2 px^2 per level) cost 0.036 AP
# on fruit and 0.018 on raccoon in short from-scratch runs (docs/augmentation.md, the ablation), so the
# cpu recipe uses plain GIoU; the official recipe keeps the official relu and smoothing.
RECIPE_MODEL: dict[str, dict[str, Any]] = {"cpu": {"head.regression": "softplus", "loss.iou_smoothing": 0.0}}


def recipe_model(recipe: str, regression: str | None = None) -> dict[str, Any]:
    """The model config overrides of ``recipe`` for training from scratch; ``regression`` (``--regression``)
    replaces the recipe's regression when given."""
    return {**RECIPE_MODEL.get(recipe, {}), **({"head.regression": regression} if regression else {})}
