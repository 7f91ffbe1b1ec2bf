"""Training loop: a short update step; logging, evaluation, checkpoints, plots and the time budget are
hooks around it (:mod:`fcos.engine.hooks`).

Iterations count optimizer updates (each of ``accumulate`` micro-batches). Everything needed to
continue exactly is checkpointed: model, optimizer, schedule, scaler, EMA, epoch, position in the
epoch and RNG states; with the seeded sampler this makes ``--resume`` bit-identical on CPU.

A :class:`Trainer` is built from parts (a model, a dataset of ``(image, target)`` samples, optional
validation data, optimizer and hooks); :meth:`Trainer.from_config` builds those parts from the CLI's
two configs and a dataset on disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
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
from fcos.data import DetectionData, DetectionDataset, build_loader, load_annotations
from fcos.data.augment import training_pipeline
from fcos.data.check import scan_images
from fcos.data.sampling import repeat_factors
from fcos.devices import autocast_dtype
from fcos.engine import distributed as D
from fcos.engine.checkpoint import load_checkpoint, model_checkpoint, save_checkpoint
from fcos.engine.config import DEFAULT_EPOCHS, TrainConfig
from fcos.engine.evaluate import EvalResult, run_evaluation
from fcos.engine.finetune import initialise_from
from fcos.engine.hooks import Hook, default_hooks
from fcos.engine.optim import ModelEMA, build_optimizer, lr_factor
from fcos.engine.resume import agree_on_resumed, checkpoint_to_resume
from fcos.hub import WeightsUnavailableError
from fcos.model.detector import FCOS
from fcos.pretrained import prefetch
from fcos.writes import WriteError, write_text

__all__ = ["NonFiniteLossError", "Trainer", "train"]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss or gradient and was stopped (the last good checkpoint is kept)."""


def train(model_config: FCOSConfig, config: TrainConfig) -> dict[str, Any]:
    """Train, evaluate and write the run folder; returns the final summary (also in metrics.jsonl)."""
    return Trainer.from_config(model_config, config).run()


class Trainer:
    """Trains ``model`` on ``dataset`` as ``config`` says.

    Args:
        model: an :class:`~fcos.FCOS` whose ``num_classes`` matches the data; moved to ``config.device``
            and wrapped in DDP when a process group is initialised.
        dataset: map-style dataset of ``(image [3, H, W] in [0, 1], {"boxes", "labels", ...})`` samples,
            augmentations included (sampling and augmentation seeds come from ``config.seed``).
        config: the run's :class:`~fcos.engine.config.TrainConfig`.
        class_names / category_ids: stored in checkpoints (ids default to 1..C).
        val_data: validation split, for evaluation hooks and the final evaluation (None: no validation).
        optimizer: default :func:`~fcos.engine.optim.build_optimizer` from ``config``.
        hooks: default :func:`~fcos.engine.hooks.default_hooks`; ``trainer.hooks`` may be extended.
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
    ) -> None:
        self.cfg = config
        self.device = D.init_from_env(config.device, config.ddp_timeout)
        self.out = Path(config.out)
        self.class_names, self.category_ids = list(class_names), category_ids
        self.val_data = val_data
        self.model = model.to(self.device)
        self.optimizer = optimizer or build_optimizer(
            self.model, config.optimizer, config.base_lr(D.world_size()), config.weight_decay, config.momentum,
            bias_lr_factor=config.bias_lr_factor, decay_norms=config.decay_norms)
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        cuda = self.device.type == "cuda"
        self.amp_dtype, self.precision = autocast_dtype(self.device, config.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if config.amp and D.is_main():
            print(self.precision, flush=True)
        self.ema = ModelEMA(self.model, config.ema) if config.ema else None
        self.ddp = DistributedDataParallel(self.model, device_ids=[self.device.index] if cuda else None) if D.is_distributed() else None
        # issue 32: --repeat-threshold repeats images of rare classes (needs the dataset's records)
        factors = repeat_factors(dataset.data.records, config.repeat_threshold) if config.repeat_threshold else None  # type: ignore[attr-defined]
        self.loader = build_loader(dataset, config.batch_size, shuffle=True, workers=config.workers, seed=config.seed,
                                   drop_last=True, rank=D.rank(), world=D.world_size(), pin_memory=cuda,
                                   repeat_factors=factors)
        self.sampler = self.loader.sampler
        if len(self.sampler) < config.batch_size * config.accumulate:
            raise ValueError(f"{len(self.sampler)} training images per process cannot fill one update of "
                             f"{config.batch_size} x {config.accumulate}; lower --batch-size")
        self.updates_per_epoch = max(1, len(self.sampler) // config.batch_size // config.accumulate)
        self.clock = time.perf_counter  # what update durations are measured with (tests replace it)
        self.stop_reason: str | None = None
        # Budget alone: a provisional length until TimeBudget has measured the speed, long enough for it
        # to do so (its first fit comes after 20 updates).
        self.total = self.planned_updates() or max(DEFAULT_EPOCHS * self.updates_per_epoch, 4 * config.warmup_iters, 100)
        self.iteration, self.epoch, self.position = 0, 0, 0  # position: updates done in this epoch
        self.best_ap, self.skipped = -1.0, 0
        self.boxes = {"trained": 0, "dropped": 0}  # by this process since it started: kept / cut away by augmentation
        self.train_seconds = 0.0
        self.last_save = time.perf_counter()
        self.durations: list[float] = []  # seconds per update, for fitting a time budget
        self.hooks: list[Hook] = list(default_hooks() if hooks is None else hooks)
        self.bar: tqdm | None = None
        self.val_metrics: dict[str, Any] = {}
        self.val_result: EvalResult | None = None  # the latest evaluation (predictions and curves on rank 0)
        self._evaluated_at: int | None = None
        self._stop = False
        resume = checkpoint_to_resume(config, self.out)  # after a torchrun restart: this launch's last.pt
        if resume is not None:
            self._resume(resume)

    @classmethod
    def from_config(cls, model_config: FCOSConfig, config: TrainConfig, *, transforms: Any = None, **parts: Any) -> Trainer:
        """A trainer for the CLI's configs: seeds, loads ``config.data``'s splits, builds the model for
        their classes (initialised from ``config.weights`` if given) and the training transforms
        (:func:`fcos.data.augment.training_pipeline`: sizing, then ``config``'s augmentations).

        ``transforms``: a ``torchvision.transforms.v2`` pipeline, an Albumentations ``Compose`` with
        ``bbox_params`` or a callable ``(image, target) -> (image, target)`` in place of the built-in
        augmentations (:mod:`fcos.data.adapters`); the sizing still follows it. ``parts`` (optimizer,
        hooks) are passed on."""
        device = D.init_from_env(config.device, config.ddp_timeout)
        _seed_everything(config.seed)
        train_data = _load(config, config.train_split)
        # The validation split is indexed by the training split's class order (VOC/YOLO derive it per split).
        val_data = _load(config, config.val_split, train_data.class_names) if config.val_split else None
        if D.is_main():
            print(train_data.report.summary())
        model_config = override(model_config, num_classes=train_data.num_classes)
        model = _build_model(model_config, config.weights, train_data.class_names, device)
        augmentation = config.augmentation()
        pipeline = training_pipeline(model.config.input, augmentation, records=train_data.records, custom=transforms)
        model.transform.skip_train_resize = True  # the pipeline sizes every training image
        if D.is_main():
            print(augmentation.describe(model.config.input, transforms))
        return cls(model, DetectionDataset(train_data, pipeline), config, class_names=train_data.class_names,
                   category_ids=train_data.category_ids, val_data=val_data, **parts)

    def planned_updates(self) -> int | None:
        """The run's length before any time budget: ``max_iters``, or ``epochs`` full epochs (default
        12), or None with a time budget and neither (the budget alone sets the length)."""
        if self.cfg.max_iters:
            return self.cfg.max_iters
        if self.cfg.epochs is None and self.cfg.time_budget:
            return None
        return (self.cfg.epochs or DEFAULT_EPOCHS) * self.updates_per_epoch

    def ended_by(self) -> str:
        """Which limit ended (or will end) the run: a hook's stop reason, "time_budget", "max_iters" or "epochs"."""
        if self.stop_reason:
            return self.stop_reason
        planned = self.planned_updates()
        if self.cfg.time_budget and (planned is None or self.total < planned):
            return "time_budget"
        return "max_iters" if self.cfg.max_iters else "epochs"

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
        with D.watching(self.cfg.ddp_timeout):
            return self._run(stop_at)

    def _run(self, stop_at: int | None) -> dict[str, Any]:
        self._call("before_train")
        end = self.total if stop_at is None else min(stop_at, self.total)
        self.bar = tqdm(total=self.total, initial=self.iteration, desc="train", unit="it", dynamic_ncols=True,
                        disable=not (self.cfg.progress and D.is_main()))
        while self.iteration < end and not self._stop:
            self.sampler.set_epoch(self.epoch, skip=self.position * self.cfg.accumulate * self.cfg.batch_size)
            batches = iter(self.loader)
            while self.position < self.updates_per_epoch and self.iteration < min(end, self.total) and not self._stop:
                start = self.clock()
                micro = [next(batches) for _ in range(self.cfg.accumulate)]
                self._count_boxes(micro)
                with D.collective():  # DDP's all-reduces: waiting for the others is not a hang of this rank
                    losses = self.step(micro)
                seconds = self.clock() - start
                self.train_seconds += seconds
                self.durations.append(seconds)
                images = sum(len(m[0]) for m in micro) * D.world_size()
                self.bar.update(1)
                self._call("after_step", {**losses, "images": images, "seconds": seconds})
                self.bar.total = self.total  # a hook (the time budget) may have changed it
            if self.position >= self.updates_per_epoch:
                self.epoch, self.position = self.epoch + 1, 0
                self._call("after_epoch")
            end = self.total if stop_at is None else min(stop_at, self.total)  # the budget may shrink total
        self.bar.close()
        self.bar = None
        if self._stop:
            self.total = self.iteration
        if self.iteration < self.total:
            self.save("last.pt")
            return {"event": "paused", "iteration": self.iteration, "epoch": self.epoch, "out": str(self.out)}
        if self.val_data is not None and self._evaluated_at != self.iteration:  # not twice (an early stop)
            self.evaluate()
        boxes = {k: sum(c[k] for c in D.all_gather_objects(self.boxes)) for k in self.boxes}  # every rank
        summary = {"event": "done", "iteration": self.iteration, "epoch": self.epoch, "ended_by": self.ended_by(),
                   "train_seconds": round(self.train_seconds, 1), "skipped_updates": self.skipped,
                   "processes": D.world_size(), "boxes": boxes, "val": self.val_metrics, "out": str(self.out)}
        if boxes["dropped"] and D.is_main():
            print(f"augmentation dropped {boxes['dropped']} boxes cut below --min-visible {self.cfg.min_visible:g} of their "
                  f"area ({boxes['trained']} trained on)")
        self._call("after_train", summary)
        return summary

    def evaluate(self) -> dict[str, Any]:
        """COCO metrics of :attr:`eval_model` on ``val_data`` (a collective: every rank calls it), then
        the ``after_eval`` hooks."""
        assert self.val_data is not None
        self.val_result = run_evaluation(
            self.eval_model, self.val_data, batch_size=self.cfg.batch_size, workers=min(self.cfg.workers, 2),
            device=self.device, amp_dtype=self.amp_dtype, progress=self.cfg.progress)
        self.val_metrics = metrics = self.val_result.metrics
        self._evaluated_at = self.iteration
        self._call("after_eval", metrics)
        return metrics

    def _count_boxes(self, micro_batches: list[tuple[list[torch.Tensor], list[dict]]]) -> None:
        for _, targets in micro_batches:
            for target in targets:
                self.boxes["trained"] += len(target["boxes"])
                self.boxes["dropped"] += int(target.get("boxes_dropped", 0))

    def _call(self, event: str, *args: Any) -> None:
        D.progress(f"{event} at update {self.iteration}")
        for hook in self.hooks:
            getattr(hook, event)(self, *args)

    def step(self, micro_batches: list[tuple[list[torch.Tensor], list[dict]]]) -> dict[str, float]:
        """One optimizer update over ``accumulate`` micro-batches; returns the mean losses."""
        model = self.ddp or self.model
        model.train()
        factor = lr_factor(self.iteration, self.total, warmup_iters=self._warmup(), warmup_factor=self.cfg.warmup_factor,
                           warmup_method=self.cfg.warmup_method, schedule=self.cfg.schedule, steps=self.cfg.steps,
                           gamma=self.cfg.gamma)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        sums: dict[str, float] = {}
        finite = True
        for k, (images, targets) in enumerate(micro_batches):
            images = [im.to(self.device, non_blocking=True) for im in images]
            targets = [{key: v.to(self.device) for key, v in t.items()} for t in targets]
            sync = k == len(micro_batches) - 1 or self.ddp is None
            with (contextlib.nullcontext() if sync else model.no_sync()):
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    losses = model(images, targets)
                total = sum(losses.values())
                values = torch.stack([v.detach().float() for v in losses.values()]).tolist()  # one sync
                finite &= D.all_reduce_max(float(not all(map(math.isfinite, values))), self.device) == 0
                if finite:
                    self.scaler.scale(total / len(micro_batches)).backward()
            for key, value in zip(losses, values, strict=True):
                sums[key] = sums.get(key, 0.0) + value / len(micro_batches)
        if finite:
            self.scaler.unscale_(self.optimizer)
            norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad or math.inf)
            finite = D.all_reduce_max(float(not torch.isfinite(norm)), self.device) == 0 or self.scaler.is_enabled()
        if finite:
            self.scaler.step(self.optimizer)  # skips the step itself on fp16 overflow
            self.scaler.update()
            if self.ema:
                self.ema.update(self.model)
            self.skipped = 0
        else:
            self._nonfinite(sums)
        self.optimizer.zero_grad(set_to_none=True)
        self.iteration += 1
        self.position += 1
        return {**sums, "lr": self.optimizer.param_groups[0]["lr"]}

    # ------------------------------------------------------------------ schedule
    def _warmup(self) -> int:
        return min(self.cfg.warmup_iters, self.total // 4)

    def _nonfinite(self, losses: dict[str, float]) -> None:
        self.skipped += 1
        where = f"update {self.iteration} (epoch {self.epoch}), losses {losses}"
        if self.cfg.on_nonfinite == "stop" or self.skipped > self.cfg.max_skips:
            raise NonFiniteLossError(
                f"non-finite loss or gradient at {where}; stopping. The last good checkpoint is kept at "
                f"{self.out / 'last.pt'}. Lower the learning rate, enable --clip-grad, or check the data."
            )
        if D.is_main():
            tqdm.write(f"skipping {where} (non-finite); {self.skipped} in a row")

    def _state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": _numpy_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {
            **model_checkpoint(self.model, self.class_names, self.category_ids),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"total": self.total, "warmup": self._warmup()},
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "iteration": self.iteration, "position": self.position,
            "best_ap": self.best_ap, "train_seconds": self.train_seconds, "rng": rng,
            "train_config": dataclasses.asdict(self.cfg), "launch": D.launch_id(),
        }
        if self.ema:
            state["ema"] = self.ema.state_dict()
        return state

    def save(self, name: str) -> None:
        """Write ``OUT/name`` (rank 0); every rank must call this (it ends in a collective). A failed write
        (disk full, file size limit, read-only folder) keeps the previous file and stops every rank with
        its :class:`~fcos.writes.WriteError`."""
        failure = None
        if D.is_main():
            try:
                save_checkpoint(self._state(), self.out / name)
            except WriteError as exc:
                failure = exc
        failure = D.broadcast_object(failure)  # the barrier: every rank waits for the write and learns its fate
        self.last_save = time.perf_counter()
        if failure is not None:
            raise failure

    def _resume(self, path: Path) -> None:
        state = load_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        self.total = state["scheduler"]["total"]
        previous = state.get("train_config", {})
        if (previous.get("max_iters"), previous.get("epochs")) != (self.cfg.max_iters, self.cfg.epochs):
            # Resuming with a new length extends (or shortens) the run (a time budget then re-fits it);
            # the same length resumes exactly, with the schedule the checkpoint was fitted to.
            self.total = self.planned_updates() or self.total
        self.epoch, self.iteration, self.position = state["epoch"], state["iteration"], state["position"]
        self.best_ap, self.train_seconds = state["best_ap"], state["train_seconds"]
        torch.set_rng_state(state["rng"]["torch"].cpu())
        random.setstate(_as_python_state(state["rng"]["python"]))
        np.random.set_state(_as_numpy_state(state["rng"]["numpy"]))
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        agree_on_resumed(path, self.iteration)
        if D.is_main():
            _drop_records_after(self.out / "metrics.jsonl", self.iteration)
            restart = f", restart {D.restart_count()}" if D.restart_count() else ""
            print(f"resumed from {path} at update {self.iteration} (epoch {self.epoch}{restart})", flush=True)


def _drop_records_after(path: Path, iteration: int) -> None:
    """Forget the metrics of updates past the checkpoint being resumed: a crash between checkpoints
    loses those updates, and the resumed run logs them again. A line cut short by the crash goes too."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("iteration", 0) <= iteration:
            kept.append(line + "\n")
    write_text(path, "".join(kept))


def _load(config: TrainConfig, split: str, class_names: list[str] | None = None) -> DetectionData:
    data = load_annotations(config.data, split, class_names)
    if config.skip_bad_images:
        data = scan_images(data, skip_bad_images=True, progress=config.progress and D.is_main())
    return data


def _build_model(config: FCOSConfig, weights: str | None, class_names: Sequence[str], device: torch.device) -> FCOS:
    """The model of ``config``, started from ``weights`` when given (fine-tuning, :mod:`fcos.engine.finetune`).

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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _numpy_state() -> list[Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), pos, has_gauss, cached]


def _as_numpy_state(state: list[Any]) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached


def _as_python_state(state: Any) -> tuple:
    version, internal, gauss = state
    return version, tuple(internal), gauss

