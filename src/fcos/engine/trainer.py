"""The training loop: updates (:mod:`fcos.engine.step`) until the run's length (:mod:`fcos.engine.schedule`)
is reached, with hooks around them (:mod:`fcos.engine.hooks`: evaluation, checkpoints, early stopping,
the collapse check, reporting).

Iterations count optimizer updates (each of ``accumulate`` micro-batches). Everything needed to
continue exactly is checkpointed: model, optimizer, schedule, scaler, EMA, epoch, position in the
epoch, the hooks' state and the RNG states (:mod:`fcos.engine.rng`); with the seeded sampler this makes
``--resume`` bit-identical on CPU.

A :class:`Trainer` is built from parts (a model, a dataset of ``(image, target)`` samples, optional
validation data, optimizer and hooks); :meth:`Trainer.from_config` builds those parts from the CLI's
two configs and a dataset on disk.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm import tqdm

from fcos.config import FCOSConfig, override
from fcos.data import (
    DatasetError,
    DetectionData,
    DetectionDataset,
    build_loader,
    find_splits,
    load_annotations,
)
from fcos.data.check import scan_images
from fcos.data.loader import default_workers
from fcos.data.pipeline import training_pipeline
from fcos.data.sampling import repeat_factors
from fcos.data.stats import suggest
from fcos.engine import launch
from fcos.engine.ema import ModelEMA
from fcos.engine.hooks import (
    Checkpointer,
    CollapseGuard,
    EarlyStopping,
    Hook,
    PeriodicEvaluation,
    hook_states,
)
from fcos.engine.optim import build_optimizer
from fcos.engine.precision import Precision
from fcos.engine.reporting import Reporting
from fcos.engine.resume import agree_on_resumed, checkpoint_to_resume
from fcos.engine.rng import rng_state, seed_everything, set_rng_state
from fcos.engine.schedule import RunLength, lr_factor
from fcos.engine.step import MicroBatch, UpdateStep
from fcos.engine.trackers import build_trackers
from fcos.engine.train_config import TrainConfig
from fcos.evaluation import EvalResult, run_evaluation
from fcos.model.detector import FCOS
from fcos.ops.sizing import resize_scale
from fcos.predict.predictor import Predictor
from fcos.utils import distributed as D
from fcos.utils.files import WriteError
from fcos.utils.hub import WeightsUnavailableError
from fcos.weights.checkpoint import CheckpointError, load_checkpoint, model_checkpoint, save_checkpoint
from fcos.weights.finetune import initialise_from
from fcos.weights.pretrained import prefetch

__all__ = ["NonFiniteLossError", "Trainer", "build_hooks", "train"]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss or gradient and was stopped (the last good checkpoint is kept)."""


def train(model_config: FCOSConfig, config: TrainConfig) -> dict[str, Any]:
    """Train, evaluate and write the run folder; returns the final summary (also in metrics.jsonl)."""
    return Trainer.from_config(model_config, config).run()


def build_hooks(config: TrainConfig) -> list[Hook]:
    """The hooks ``config`` enables, each built from the settings it needs (``--patience 0``,
    ``--collapse-patience 0`` and ``--eval-every 0`` leave theirs out). Their order is the one that
    matters: reporting first, since a resumed run rewinds metrics.jsonl to its checkpoint (no checkpoint
    may be ahead of the log) and the log should show the update a stopping hook stopped at; periodic
    evaluation before the checkpointer, so an epoch's last.pt holds what its evaluation decided."""
    hooks: list[Hook] = [Reporting(config.out, log_every=config.log_every, val_images=config.val_images,
                                   trackers=build_trackers(config))]
    if config.patience:
        hooks.append(EarlyStopping(config.patience))
    if config.collapse_patience:
        hooks.append(CollapseGuard(config.collapse_patience, action=config.on_collapse))
    if config.eval_every:
        hooks.append(PeriodicEvaluation(config.eval_every))
    hooks.append(Checkpointer(every=config.checkpoint_every, interval=config.checkpoint_interval))
    return hooks


class Trainer:
    """Trains ``model`` on ``dataset`` as ``config`` says.

    Args:
        model: an :class:`~fcos.FCOS` whose ``num_classes`` matches the data; moved to the device and
            wrapped in DDP when a process group is initialised.
        dataset: map-style dataset of ``(image [3, H, W] in [0, 1], {"boxes", "labels", ...})`` samples,
            augmentations included (sampling and augmentation seeds come from ``config.seed``).
        config: the run's :class:`~fcos.engine.train_config.TrainConfig`.
        class_names / category_ids: stored in checkpoints (ids default to 1..C).
        val_data: validation split, for evaluation hooks and the final evaluation (None: no validation).
        optimizer: default :func:`~fcos.engine.optim.build_optimizer` from ``config``.
        hooks: default :func:`build_hooks` of ``config``; ``trainer.hooks`` may be extended.
        device: the device (default: the process group's, joined from torchrun's environment if needed).
        factors: each sample's repeat factor per epoch (class-balanced sampling, ``--repeat-threshold``;
            default: :func:`~fcos.data.sampling.repeat_factors` of the dataset's records when the config
            asks for it).
        input_scale: the median scale the training images are seen at (recorded in checkpoints: slicing
            warns when its tiles show objects at another scale).
    """

    def __init__(
        self,
        model: FCOS,
        dataset: Dataset,
        config: TrainConfig,
        *,
        class_names: Sequence[str],
        category_ids: Sequence[int] | None = None,
        val_data: DetectionData | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        hooks: Sequence[Hook] | None = None,
        device: torch.device | None = None,
        factors: Sequence[float] | None = None,
        input_scale: float | None = None,
    ) -> None:
        self.cfg = config
        self.device = device or launch.init_from_env(config.device, config.ddp_timeout)
        self.out = Path(config.out)
        self.class_names, self.category_ids = list(class_names), category_ids
        self.val_data = val_data
        self.tile = {"size": [config.tile, config.tile], "scale": config.tile_scale} if config.tile else None
        self.input_scale = config.tile_scale if config.tile else input_scale
        self.model = model.to(self.device)
        if config.compile:
            self.model.compile()
        self.optimizer = optimizer or build_optimizer(
            self.model, config.optimizer, config.base_lr(D.world_size()), config.weight_decay, config.momentum,
            bias_lr_factor=config.bias_lr_factor, decay_norms=config.decay_norms)
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        cuda = self.device.type == "cuda"
        self.precision = Precision(self.device, config.amp)
        if config.amp and D.is_main():
            print(self.precision.name, flush=True)
        self.ema = ModelEMA(self.model, config.ema) if config.ema else None
        ddp = DistributedDataParallel(self.model, device_ids=[self.device.index] if cuda else None) if D.is_distributed() else None
        self.update = UpdateStep(self.model, self.optimizer, self.precision, self.device, ddp=ddp, ema=self.ema,
                                 clip_grad=config.clip_grad)
        # Off the CPU a host read waits for the device: the updates' finite flags (decided on the device,
        # UpdateStep) are then read together at the logging interval and before checkpoints and validation.
        self.defer_checks = self.device.type != "cpu"
        self._pending: list[tuple[int, int, torch.Tensor | bool, dict[str, torch.Tensor]]] = []
        if config.repeat_threshold and factors is None:
            records = getattr(getattr(dataset, "data", None), "records", None)
            if records is None:
                raise ValueError("--repeat-threshold needs the images' classes: pass factors= "
                                 "(fcos.data.sampling.repeat_factors) for a dataset without records")
            factors = repeat_factors(records, config.repeat_threshold)
        self.workers = config.workers if config.workers is not None else default_workers(
            self.device, processes=D.local_world_size())
        self.loader = build_loader(dataset, config.batch_size, shuffle=True, workers=self.workers, seed=config.seed,
                                   drop_last=True, rank=D.rank(), world=D.world_size(), pin_memory=cuda,
                                   repeat_factors=factors)
        if D.is_main() and config.workers is None:
            print(f"data: {self.workers} loader workers per process (the default on {self.device.type}; --workers N)",
                  flush=True)
        self.sampler = self.loader.sampler
        if len(self.sampler) < config.batch_size * config.accumulate:
            raise ValueError(f"{len(self.sampler)} training images per process cannot fill one update of "
                             f"{config.batch_size} x {config.accumulate}; lower --batch-size")
        self.updates_per_epoch = max(1, len(self.sampler) // config.batch_size // config.accumulate)
        self.length = RunLength(updates_per_epoch=self.updates_per_epoch, max_iters=config.max_iters,
                                epochs=config.epochs, time_budget=config.time_budget, warmup_iters=config.warmup_iters)
        self.clock = time.perf_counter  # what update durations are measured with (tests replace it)
        self.stop_reason: str | None = None
        self.iteration, self.epoch, self.position = 0, 0, 0  # position: updates done in this epoch
        self.skipped = 0  # non-finite updates skipped in a row
        self.boxes = {"trained": 0, "dropped": 0}  # by this process since it started: kept / cut away by augmentation
        self.train_seconds = 0.0
        self.durations: list[float] = []  # seconds per update, for fitting a time budget
        self.hooks: list[Hook] = list(build_hooks(config) if hooks is None else hooks)
        self.bar: tqdm | None = None
        self.val_metrics: dict[str, Any] = {}
        self.val_result: EvalResult | None = None  # the latest evaluation (predictions and curves on rank 0)
        self._evaluated_at: int | None = None
        self._stop = False
        resume = checkpoint_to_resume(config, self.out)  # after a torchrun restart: this launch's last.pt
        if resume is not None:
            self.load_state_dict(load_checkpoint(resume, map_location=self.device), resume)

    @classmethod
    def from_config(cls, model_config: FCOSConfig, config: TrainConfig, *, transforms: Any = None, **parts: Any) -> Trainer:
        """A trainer for the CLI's configs: seeds, loads ``config.data``'s splits, builds the model for
        their classes (initialised from ``config.weights`` if given) and the training transforms
        (:func:`fcos.data.pipeline.training_pipeline`: sizing, then ``config``'s augmentations).

        ``transforms``: a ``torchvision.transforms.v2`` pipeline, an Albumentations ``Compose`` with
        ``bbox_params`` or a callable ``(image, target) -> (image, target)`` in place of the built-in
        augmentations (:mod:`fcos.data.adapters`); the sizing still follows it. ``parts`` (optimizer,
        hooks) are passed on."""
        device = launch.init_from_env(config.device, config.ddp_timeout)
        seed_everything(config.seed)
        train_data = _load(config, config.train_split)
        # The validation split is indexed by the training split's class order (VOC/YOLO derive it per split).
        val_data = _load_validation(config, train_data.class_names) if config.val_split else None
        if D.is_main():
            print(train_data.report.summary())
            if config.tile is None:
                _advise_tiles(train_data, model_config.input.max_size)
        model_config = override(model_config, num_classes=train_data.num_classes)
        model = _build_model(model_config, config.weights, train_data.class_names, device)
        augmentation = config.augmentation()
        pipeline = training_pipeline(model.config.input, augmentation, records=train_data.records, custom=transforms)
        model.transform.skip_train_resize = True  # the pipeline sizes every training image
        factors = repeat_factors(train_data.records, config.repeat_threshold) if config.repeat_threshold else None
        cfg = model.config.input
        input_scale = float(np.median([resize_scale(r.height, r.width, cfg.min_size, cfg.max_size)
                                       for r in train_data.records]))
        if D.is_main():
            print(augmentation.describe(model.config.input, transforms))
            if factors is not None:
                repeated = sum(f > 1 for f in factors)
                print(f"class-balanced sampling (--repeat-threshold {config.repeat_threshold:g}): {repeated} of "
                      f"{len(factors)} images repeated, up to {max(factors):.2f}x; an epoch is {int(sum(factors))} "
                      f"samples instead of {len(factors)}")
        return cls(model, DetectionDataset(train_data, pipeline), config, class_names=train_data.class_names,
                   category_ids=train_data.category_ids, val_data=val_data, device=device, factors=factors,
                   input_scale=input_scale, **parts)

    @property
    def total(self) -> int:
        """The run's length in updates (a time budget re-fits it as the speed is measured)."""
        return self.length.total

    def planned_updates(self) -> int | None:
        """The run's length before any time budget (:meth:`RunLength.planned`)."""
        return self.length.planned()

    def ended_by(self) -> str:
        """Which limit ended (or will end) the run: a hook's stop reason, "time_budget", "max_iters" or "epochs"."""
        return self.length.ended_by(self.stop_reason)

    @property
    def eval_model(self) -> nn.Module:
        """The weights evaluation uses: the EMA's when enabled."""
        return self.ema.module if self.ema else self.model

    def request_stop(self, reason: str = "stopped by a hook") -> None:
        """End training after the current update (a hook's call, e.g. early stopping; decide it the
        same way on every rank). The run then finishes as a completed one; ``reason`` is its summary's
        ``ended_by``."""
        self._stop = True
        self.stop_reason = self.stop_reason or reason

    # ------------------------------------------------------------------ the loop
    def run(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to the end (or pause after ``stop_at`` updates: checkpoint and return, for --resume).
        With several processes a watchdog stops the run when one hangs (``ddp_timeout``, naming it)."""
        with launch.watching(self.cfg.ddp_timeout):
            return self._run(stop_at)

    def _run(self, stop_at: int | None) -> dict[str, Any]:
        self._call("before_train")
        self.bar = tqdm(total=self.total, initial=self.iteration, desc="train", unit="it", dynamic_ncols=True,
                        disable=not (self.cfg.progress and D.is_main()))
        while self.iteration < self._end(stop_at) and not self._stop:
            self.sampler.set_epoch(self.epoch, skip=self.position * self.cfg.accumulate * self.cfg.batch_size)
            batches = iter(self.loader)
            while self.position < self.updates_per_epoch and self.iteration < self._end(stop_at) and not self._stop:
                start = self.clock()
                micro = [next(batches) for _ in range(self.cfg.accumulate)]
                self._count_boxes(micro)
                with D.collective():  # DDP's all-reduces: waiting for the others is not a hang of this rank
                    losses = self.step(micro)
                seconds = self.clock() - start
                self.train_seconds += seconds
                self.durations.append(seconds)
                self._fit_length()
                images = sum(len(m[0]) for m in micro) * D.world_size()
                self.bar.update(1)
                self.bar.total = self.total
                self._call("after_step", {**losses, "images": images, "seconds": seconds})
            if self.position >= self.updates_per_epoch:
                self.epoch, self.position = self.epoch + 1, 0
                self._call("after_epoch")
        self.bar.close()
        self.bar = None
        self.check_updates()
        if self._stop:
            self.length.total = self.iteration
        if self.iteration < self.total:
            self.save("last.pt")
            return {"event": "paused", "iteration": self.iteration, "epoch": self.epoch, "out": str(self.out)}
        if self.val_data is not None and self._evaluated_at != self.iteration:  # not twice (an early stop)
            self.evaluate()
        boxes = {k: sum(c[k] for c in D.all_gather_objects(self.boxes)) for k in self.boxes}  # every rank
        summary = {"event": "done", "iteration": self.iteration, "epoch": self.epoch, "ended_by": self.ended_by(),
                   "train_seconds": round(self.train_seconds, 1), "skipped_updates": self.skipped,
                   "processes": D.world_size(), "boxes": boxes, "val": self.val_metrics, "out": str(self.out)}
        for hook in self.hooks:
            summary.update(hook.summary())
        if boxes["dropped"] and D.is_main():
            print(f"augmentation dropped {boxes['dropped']} boxes cut below --min-visible {self.cfg.min_visible:g} of their "
                  f"area ({boxes['trained']} trained on)")
        self._call("after_train", summary)
        return summary

    def _end(self, stop_at: int | None) -> int:
        return self.total if stop_at is None else min(stop_at, self.total)

    def _fit_length(self) -> None:
        """With a time budget, re-fit the run's length to the measured speed now and then; rank 0's clock
        decides for all (a collective on every rank at the same updates)."""
        if not self.length.due(self.iteration, len(self.durations)):
            return
        total = int(D.broadcast_object(self.length.fit(self.iteration, self.durations, self.train_seconds)))
        if D.is_main() and abs(total - self.length.total) > 0.1 * self.length.total:
            tqdm.write(f"time budget {self.cfg.time_budget:.0f} s at {self.length.per_update(self.durations):.3f} "
                       f"s/update -> {total} updates")
        self.length.total = total

    def evaluate(self) -> dict[str, Any]:
        """COCO metrics of :attr:`eval_model` on ``val_data`` (a collective: every rank calls it), then
        the ``after_eval`` hooks."""
        assert self.val_data is not None
        self.check_updates()
        try:
            with D.evaluating(self.eval_model) as model:
                self.val_result = run_evaluation(
                    self._validated(model), self.val_data, batch_size=self.cfg.batch_size,
                    workers=min(self.workers, 2), device=self.device, amp_dtype=self.precision.dtype,
                    progress=self.cfg.progress)
        except DatasetError as exc:  # a validation image that cannot be decoded, met after hours of training
            if D.world_size() > 1:
                raise  # the other ranks are not here: no collective (save) can be entered
            self.save("last.pt")
            raise DatasetError(f"{exc}; the {self.iteration} updates so far are in {self.out / 'last.pt'}: mend or "
                               "remove the image (or train with --skip-bad-images, which checks every image first) "
                               "and --resume") from None
        self.val_metrics = metrics = self.val_result.metrics
        self._evaluated_at = self.iteration
        self._call("after_eval", metrics)
        return metrics

    def _validated(self, model: nn.Module) -> Any:
        """What validation predicts with: the model itself, or for a tile-trained run the model sliced by
        its own tiles, as its checkpoint predicts and evaluates (``--slice auto``): its AP chooses best.pt."""
        if self.tile is None:
            return model
        record = {"class_names": self.class_names, "category_ids": self.category_ids, "tile": self.tile,
                  "input_scale": self.input_scale}
        return Predictor.from_model(model, record, device=self.device, dtype=self.precision.dtype).as_detector()

    def _count_boxes(self, micro_batches: list[MicroBatch]) -> None:
        for _, targets in micro_batches:
            for target in targets:
                self.boxes["trained"] += len(target["boxes"])
                self.boxes["dropped"] += int(target.get("boxes_dropped", 0))

    def _call(self, event: str, *args: Any) -> None:
        D.progress(f"{event} at update {self.iteration}")
        for hook in self.hooks:
            getattr(hook, event)(self, *args)

    def step(self, micro_batches: list[MicroBatch]) -> dict[str, float]:
        """One optimizer update over ``accumulate`` micro-batches at this update's learning rate; returns
        the mean losses and the learning rate. A non-finite update is skipped, or stops the run
        (``on_nonfinite``, ``max_skips``)."""
        factor = lr_factor(self.iteration, self.total, warmup_iters=self._warmup(), warmup_factor=self.cfg.warmup_factor,
                           warmup_method=self.cfg.warmup_method, schedule=self.cfg.schedule, steps=self.cfg.steps,
                           gamma=self.cfg.gamma)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        losses, finite = self.update(micro_batches)
        self._pending.append((self.iteration, self.epoch, finite, losses))
        self.iteration += 1
        self.position += 1
        if not self.defer_checks or self.iteration % self.cfg.log_every == 0:
            self.check_updates()
        return {**losses, "lr": self.optimizer.param_groups[0]["lr"]}

    def check_updates(self) -> None:
        """Act on the finite flags of the updates since the last check (one host read for all of them):
        a non-finite one was skipped on the device; count it, or stop (``on_nonfinite``, ``max_skips``)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        flags = [f for *_, f, _ in pending]  # all bools (read by the step already) or all device tensors
        if isinstance(flags[0], torch.Tensor):
            flags = torch.stack(flags).tolist()
        for (iteration, epoch, _, losses), finite in zip(pending, flags, strict=True):
            if finite:
                self.skipped = 0
            else:
                self._nonfinite(losses, iteration, epoch)

    def _warmup(self) -> int:
        return min(self.cfg.warmup_iters, self.total // 4)

    def _nonfinite(self, losses: dict[str, torch.Tensor], iteration: int, epoch: int) -> None:
        self.skipped += 1
        where = f"update {iteration} (epoch {epoch}), losses { {k: float(v) for k, v in losses.items()} }"
        if self.cfg.on_nonfinite == "stop" or self.skipped > self.cfg.max_skips:
            raise NonFiniteLossError(
                f"non-finite loss or gradient at {where}; stopping. The last good checkpoint is kept at "
                f"{self.out / 'last.pt'}. Lower the learning rate, enable --clip-grad, or check the data."
            )
        if D.is_main():
            tqdm.write(f"skipping {where} (non-finite); {self.skipped} in a row")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (a checkpoint, with the model's own part for inference)."""
        # "model" is what evaluation validated and inference reads: the average with --ema (best.pt was
        # chosen by it); the training weights, which resuming needs, are then kept beside it.
        state = {
            **model_checkpoint(self.eval_model, self.class_names, self.category_ids, tile=self.tile,
                               input_scale=self.input_scale),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"total": self.total, "warmup": self._warmup()},
            "scaler": self.precision.state_dict(),
            "epoch": self.epoch, "iteration": self.iteration, "position": self.position,
            "train_seconds": self.train_seconds, "rng": rng_state(), "hooks": hook_states(self.hooks),
            "train_config": dataclasses.asdict(self.cfg), "launch": launch.launch_id(),
        }
        if self.ema:
            state["ema"] = {"updates": self.ema.updates, "decay": self.ema.decay}
            state["train_model"] = getattr(self.model, "module", self.model).state_dict()
        return state

    def save(self, name: str) -> None:
        """Write ``OUT/name`` (rank 0); every rank must call this (it ends in a collective). A failed write
        (disk full, file size limit, read-only folder) keeps the previous file and stops every rank with
        its :class:`~fcos.utils.files.WriteError`."""
        self.check_updates()  # a checkpoint holds only weights whose updates were checked
        failure = None
        if D.is_main():
            try:
                save_checkpoint(self.state_dict(), self.out / name)
            except WriteError as exc:
                failure = exc
        failure = D.broadcast_object(failure)  # the barrier: every rank waits for the write and learns its fate
        if failure is not None:
            raise failure

    def load_state_dict(self, state: dict[str, Any], path: Path | str = "the checkpoint") -> None:
        """Continue from a checkpoint :meth:`state_dict` wrote (every rank; ends in a collective). The
        model and classes must be the checkpoint's (CheckpointError naming what differs); the optimizer
        continues with its state, at the learning rate and weight decay this run was given."""
        _check_same_model(state, getattr(self.model, "module", self.model).config.to_dict(), self.class_names, path)
        given = [(group["initial_lr"], group["weight_decay"]) for group in self.optimizer.param_groups]
        self.model.load_state_dict(state.get("train_model", state["model"]))
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:  # other parameter groups: another --optimizer, --recipe or bias rule
            raise CheckpointError(f"cannot resume {path} with these optimizer settings ({exc}); resume with the run's "
                                  f"own settings: --config {Path(path).parent / 'config.yaml'} --resume") from None
        for group, (lr, weight_decay) in zip(self.optimizer.param_groups, given, strict=True):
            if (group["initial_lr"], group["weight_decay"]) != (lr, weight_decay) and D.is_main():
                print(f"resuming with {group.get('name', 'group')} lr {lr:g} (was {group['initial_lr']:g}), weight decay "
                      f"{weight_decay:g} (was {group['weight_decay']:g})", flush=True)
            group["initial_lr"], group["weight_decay"] = lr, weight_decay
        self.precision.load_state_dict(state["scaler"])
        if self.ema and "ema" in state:  # older checkpoints kept the average in state["ema"]["module"]
            self.ema.load_state_dict({"module": state["model"], **state["ema"]} if "train_model" in state
                                     else state["ema"])
        self.length.total = state["scheduler"]["total"]
        previous = state.get("train_config", {})
        if (previous.get("max_iters"), previous.get("epochs")) != (self.cfg.max_iters, self.cfg.epochs):
            # Resuming with a new length extends (or shortens) the run (a time budget then re-fits it);
            # the same length resumes exactly, with the schedule the checkpoint was fitted to.
            self.length.total = self.planned_updates() or self.length.total
        elif self.cfg.time_budget and previous.get("time_budget") != self.cfg.time_budget:
            # A new budget: the updates it leaves are measured and fitted again (from the seconds trained).
            left = self.cfg.time_budget > state["train_seconds"]
            self.length.total = (self.planned_updates() or state["iteration"] + max(100, self.updates_per_epoch)
                                 if left else state["iteration"])
        self.epoch, self.iteration, self.position = state["epoch"], state["iteration"], state["position"]
        self.train_seconds = state["train_seconds"]
        hooks = state.get("hooks") or _legacy_hook_states(state)
        for hook in self.hooks:
            if type(hook).__name__ in hooks:
                hook.load_state_dict(hooks[type(hook).__name__])
        set_rng_state(state["rng"])
        agree_on_resumed(Path(path), self.iteration)
        if D.is_main():
            restart = f", restart {launch.restart_count()}" if launch.restart_count() else ""
            print(f"resumed from {path} at update {self.iteration} (epoch {self.epoch}{restart})", flush=True)


# The config keys that shape the weights: a resumed run must have the checkpoint's (the rest, e.g. the
# input size or the decoding, may change between stages of a run).
_NETWORK = ("num_classes", "backbone.name", "backbone.norm", "fpn.", "head.")


def _check_same_model(state: dict[str, Any], config: dict[str, Any], class_names: list[str], path: Path | str) -> None:
    """Resuming needs the checkpoint's network and classes: CheckpointError naming what differs (instead of
    load_state_dict's size mismatches, or classifier rows silently relabelled by another class order)."""
    differ = [f"{key} {a!r} (given {b!r})" for key, a, b in _diff(state.get("config", {}), config)
              if key.startswith(_NETWORK) and key != "head.prior_prob"]  # prior_prob: only the initialisation
    if state.get("class_names") is not None and list(state["class_names"]) != list(class_names):
        differ.append(f"classes {list(state['class_names'])} (given {list(class_names)})")
    if differ:
        raise CheckpointError(f"{path} was trained with {'; '.join(differ)}: resume it with its own settings, "
                              f"--config {Path(path).parent / 'config.yaml'} --resume")


def _diff(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, a's value, b's) where two nested dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b), key=str)
                for d in _diff(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        a, b = list(a), list(b)  # a checkpoint's lists and a config's tuples hold the same values
    return [] if a == b else [(prefix, a, b)]


def _legacy_hook_states(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Checkpoints of fcos 0.1 kept the best AP in the trainer's state."""
    return {"Checkpointer": {"best_ap": state["best_ap"]}} if "best_ap" in state else {}


def _advise_tiles(data: DetectionData, input_size: int) -> None:
    """Say so when the input size shrinks this dataset's objects below what the model can separate and
    tiles would keep them (:func:`fcos.data.stats.suggest`)."""
    advice = suggest(data, img_size=input_size)
    if advice.tile is not None:
        print(f"note: at input size {input_size} the median object shrinks from {advice.median_object:.1f} px to "
              f"{advice.median_object_resized:.1f} px: train on tiles (--tile {advice.tile}) and predict them sliced "
              "(--slice auto); docs/small-objects.md", flush=True)


def _load(config: TrainConfig, split: str, class_names: list[str] | None = None) -> DetectionData:
    data = load_annotations(config.data, split, class_names, skip_missing=config.skip_bad_images)
    if config.skip_bad_images:
        data = scan_images(data, skip_bad_images=True, progress=config.progress and D.is_main())
    return data


def _load_validation(config: TrainConfig, class_names: list[str]) -> DetectionData:
    """The validation split; a dataset without it is named with the two ways on (most have none by default)."""
    try:
        return _load(config, config.val_split, class_names)
    except DatasetError as exc:
        if config.val_split in find_splits(config.data):
            raise  # the split is there and broken: its own error
        raise DatasetError(f"{exc}; name the split to validate on with --val-split, or train without validation: "
                           "--val-split none (or make one: fcos data split)") from None


def _build_model(config: FCOSConfig, weights: str | None, class_names: Sequence[str], device: torch.device) -> FCOS:
    """The model of ``config``, started from ``weights`` when given (fine-tuning, :mod:`fcos.weights.finetune`).

    One process fetches what is missing from the caches (pretrained detector, ImageNet backbone); the
    others wait, then every process reads the cached files. Every rank enters the all-reduce, so a
    failed download stops all of them with the same error instead of leaving them in a barrier."""
    error: Exception | None = None
    if D.is_main():
        try:
            prefetch(config.backbone, weights)
        except Exception as exc:  # re-raised below, after every rank knows
            error = exc
    if D.all_reduce_max(float(error is not None), device) > 0:
        raise error or WeightsUnavailableError("the main process could not fetch the pretrained weights (see its error)")
    model = FCOS(config)
    if weights:
        report = initialise_from(model, weights, class_names)
        if D.is_main():
            print(report.summary())
    return model

