"""Training loop: a short update step, with logging, evaluation, checkpointing and plots as hooks.

Iterations count optimizer updates (each of ``accumulate`` micro-batches). Everything needed to
continue exactly is checkpointed: model, optimizer, schedule, scaler, EMA, epoch, position in the
epoch and RNG states; with the seeded sampler this makes ``--resume`` bit-identical on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from fcos.config import FCOSConfig, override
from fcos.data import DetectionDataset, collate, load_annotations
from fcos.data.transforms import training_transforms
from fcos.engine import distributed as D
from fcos.engine.checkpoint import load_checkpoint, model_checkpoint, save_checkpoint
from fcos.engine.config import TrainConfig
from fcos.engine.evaluate import evaluate
from fcos.engine.optim import ModelEMA, build_optimizer, lr_factor
from fcos.engine.plots import plot_loss_curve, save_val_predictions
from fcos.engine.sampling import ResumableSampler, SeededSamples
from fcos.model.detector import FCOS

__all__ = ["NonFiniteLossError", "Trainer", "train"]

_REFIT_EVERY = 10  # with a time budget, re-fit the schedule's length to the measured speed this often


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss or gradient and was stopped (the last good checkpoint is kept)."""


def train(model_config: FCOSConfig, config: TrainConfig) -> dict[str, Any]:
    """Train, evaluate and write the run folder; returns the final summary (also in metrics.jsonl)."""
    return Trainer(model_config, config).run()


class Trainer:
    def __init__(self, model_config: FCOSConfig, config: TrainConfig) -> None:
        self.cfg = config
        self.device = D.init_from_env(config.device)
        self.out = Path(config.out)
        _seed_everything(config.seed)
        self.train_data = load_annotations(config.data, config.train_split)
        # The validation split is indexed by the training split's class order (VOC/YOLO derive it per split).
        self.val_data = (load_annotations(config.data, config.val_split, self.train_data.class_names)
                         if config.val_split else None)
        if D.is_main():
            print(self.train_data.report.summary())
        model_config = override(model_config, num_classes=self.train_data.num_classes)
        self._init_model(model_config)
        lr = config.base_lr(D.world_size())
        self.optimizer = build_optimizer(self.model, config.optimizer, lr, config.weight_decay, config.momentum)
        for group in self.optimizer.param_groups:
            group["initial_lr"] = group["lr"]
        cuda = self.device.type == "cuda"
        self.amp_dtype = (torch.float16 if cuda else torch.bfloat16) if config.amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.amp and cuda)
        self.ema = ModelEMA(self.model, config.ema) if config.ema else None
        self.ddp = DistributedDataParallel(self.model, device_ids=[self.device.index] if cuda else None) if D.is_distributed() else None
        self.loader, self.sampler = self._train_loader()
        self.updates_per_epoch = max(1, len(self.sampler) // config.batch_size // config.accumulate)
        self.total = config.max_iters or config.epochs * self.updates_per_epoch
        self.iteration, self.epoch, self.position = 0, 0, 0  # position: updates done in this epoch
        self.best_ap, self.skipped = -1.0, 0
        self.train_seconds = 0.0
        self.last_save = time.perf_counter()
        self.durations: list[float] = []  # seconds per update, for fitting a time budget
        if config.resume:
            self._resume(self.out / "last.pt" if config.resume == "auto" else Path(config.resume))
        if D.is_main():
            self.out.mkdir(parents=True, exist_ok=True)
            resolved = {"model": self.model.config.to_dict(), "train": dataclasses.asdict(config)}
            (self.out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))

    def _init_model(self, model_config: FCOSConfig) -> None:
        """Build the model; with ``weights``, start from them (fine-tuning: :mod:`fcos.engine.finetune`)."""
        from fcos.pretrained import prefetch

        if D.is_main():  # one process downloads what is missing; the others then read the cache
            prefetch(model_config.backbone, self.cfg.weights)
        D.barrier()
        self.model = FCOS(model_config).to(self.device)
        if self.cfg.weights:
            from fcos.engine.finetune import initialise_from

            report = initialise_from(self.model, self.cfg.weights, self.train_data.class_names)
            if D.is_main():
                print(report.summary())

    # ------------------------------------------------------------------ the loop
    def run(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to the end (or pause after ``stop_at`` updates: checkpoint and return, for --resume)."""
        end = self.total if stop_at is None else min(stop_at, self.total)
        bar = tqdm(total=self.total, initial=self.iteration, desc="train", unit="it", dynamic_ncols=True,
                   disable=not (self.cfg.progress and D.is_main()))
        window: list[dict[str, float]] = []
        while self.iteration < end:
            self.sampler.set_epoch(self.epoch, skip=self.position * self.cfg.accumulate * self.cfg.batch_size)
            batches = iter(self.loader)
            while self.position < self.updates_per_epoch and self.iteration < min(end, self.total):
                start = time.perf_counter()
                micro = [next(batches) for _ in range(self.cfg.accumulate)]
                losses = self.step(micro)
                seconds = time.perf_counter() - start
                self.train_seconds += seconds
                self.durations.append(seconds)
                images = sum(len(m[0]) for m in micro) * D.world_size()
                window.append({**losses, "images": images, "seconds": seconds})
                bar.update(1)
                self._after_step(window, bar)
            if self.position >= self.updates_per_epoch:
                self.epoch, self.position = self.epoch + 1, 0
                self._after_epoch()
            end = self.total if stop_at is None else min(stop_at, self.total)  # the budget may shrink total
        bar.close()
        if self.iteration < self.total:
            self._save("last.pt")
            return {"event": "paused", "iteration": self.iteration, "epoch": self.epoch, "out": str(self.out)}
        return self._finish()

    def step(self, micro_batches: list[tuple[list[torch.Tensor], list[dict]]]) -> dict[str, float]:
        """One optimizer update over ``accumulate`` micro-batches; returns the mean losses."""
        model = self.ddp or self.model
        model.train()
        factor = lr_factor(self.iteration, self.total, warmup_iters=self._warmup(), warmup_factor=self.cfg.warmup_factor,
                           schedule=self.cfg.schedule, steps=self.cfg.steps, gamma=self.cfg.gamma)
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

    # ------------------------------------------------------------------ hooks
    def _after_step(self, window: list[dict[str, float]], bar: tqdm) -> None:
        if self.cfg.time_budget and len(self.durations) >= 2 + _REFIT_EVERY and self.iteration % _REFIT_EVERY == 0:
            self._fit_schedule_to_budget()
            bar.total = self.total
        if self.iteration % self.cfg.log_every == 0 or self.iteration == self.total:
            record = _mean_record(window, self.iteration, self.epoch)
            window.clear()
            bar.set_postfix(loss=f"{record['loss']:.3f}", cls=f"{record['classification']:.3f}",
                            box=f"{record['bbox_regression']:.3f}", ctr=f"{record['bbox_ctrness']:.3f}",
                            lr=f"{record['lr']:.2e}", img_s=f"{record['images_per_s']:.1f}")
            self._write_metrics(record)
        if self.cfg.checkpoint_every and self.iteration % self.cfg.checkpoint_every == 0:
            self._save("last.pt")

    def _after_epoch(self) -> None:
        final = self.iteration >= self.total
        due = self.cfg.eval_every and self.epoch % self.cfg.eval_every == 0
        if self.val_data is not None and due and not final:
            self._evaluate()
        # Tiny datasets finish an epoch every few updates: do not spend the run writing checkpoints.
        # Clocks differ between processes, so rank 0's clock decides for all (_save is a collective).
        if D.broadcast_object(time.perf_counter() - self.last_save >= self.cfg.checkpoint_interval):
            self._save("last.pt")

    def _finish(self) -> dict[str, Any]:
        metrics = self._evaluate() if self.val_data is not None else {}
        self._save("last.pt")
        summary = {"event": "done", "iteration": self.iteration, "epoch": self.epoch, "train_seconds": round(self.train_seconds, 1),
                   "skipped_updates": self.skipped, "processes": D.world_size(), "val": metrics, "out": str(self.out)}
        self._write_metrics(summary)
        return summary

    def _evaluate(self) -> dict[str, Any]:
        assert self.val_data is not None
        model = self.ema.module if self.ema else self.model
        metrics = evaluate(model, self.val_data, batch_size=self.cfg.batch_size, workers=min(self.cfg.workers, 2),
                           device=self.device, amp_dtype=self.amp_dtype, progress=self.cfg.progress)
        record = {"event": "val", "iteration": self.iteration, "epoch": self.epoch, **metrics}
        self._write_metrics(record)
        if D.is_main():
            tqdm.write(f"val epoch {self.epoch}: AP {metrics['AP']:.4f}  AP50 {metrics['AP50']:.4f}  AP75 {metrics['AP75']:.4f}")
        # evaluate() hands every rank the same metrics, so every rank takes this branch and enters
        # _save's barrier together.
        if metrics["AP"] > self.best_ap:
            self.best_ap = metrics["AP"]
            self._save("best.pt")
        if D.is_main():  # pictures only: the bare module, no collectives
            save_val_predictions(model, self.val_data, self.out / "val_predictions.png", self.cfg.val_images, self.device)
            plot_loss_curve(self.out / "metrics.jsonl", self.out / "loss_curve.png")
        return metrics

    def _fit_schedule_to_budget(self) -> None:
        """Set the total number of updates so training ends within the time budget, from the mean time
        of recent updates (re-fitted as training goes, so a machine that slows down still fits)."""
        per_update = float(np.mean(self.durations[2:][-5 * _REFIT_EVERY:]))
        remaining = max(0.0, self.cfg.time_budget - self.train_seconds)
        fitted = self.iteration + int(remaining / per_update)
        limit = self.cfg.max_iters or self.cfg.epochs * self.updates_per_epoch
        total = int(D.broadcast_object(max(self.iteration, min(limit, fitted))))  # rank 0's clock decides
        if D.is_main() and abs(total - self.total) > 0.1 * self.total:
            tqdm.write(f"time budget {self.cfg.time_budget:.0f} s at {per_update:.3f} s/update -> {total} updates")
        self.total = total

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

    # ------------------------------------------------------------------ state
    def _train_loader(self) -> tuple[DataLoader, ResumableSampler]:
        cfg = self.cfg
        transforms = training_transforms(self.model.config.input, hflip=cfg.hflip, photometric=cfg.photometric)
        dataset = SeededSamples(DetectionDataset(self.train_data, transforms), cfg.seed)
        sampler = ResumableSampler(len(dataset), seed=cfg.seed, rank=D.rank(), world=D.world_size())
        loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers, collate_fn=collate,
                            drop_last=True, pin_memory=self.device.type == "cuda", persistent_workers=cfg.workers > 0)
        if len(sampler) < cfg.batch_size * cfg.accumulate:
            raise ValueError(f"{len(sampler)} training images per process cannot fill one update of "
                             f"{cfg.batch_size} x {cfg.accumulate}; lower --batch-size")
        return loader, sampler

    def _state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": _numpy_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {
            **model_checkpoint(self.model, self.train_data.class_names, self.train_data.category_ids),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"total": self.total, "warmup": self._warmup()},
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "iteration": self.iteration, "position": self.position,
            "best_ap": self.best_ap, "train_seconds": self.train_seconds, "rng": rng,
            "train_config": dataclasses.asdict(self.cfg),
        }
        if self.ema:
            state["ema"] = self.ema.state_dict()
        return state

    def _save(self, name: str) -> None:
        """Rank 0 writes; every rank must call this (it ends in a barrier)."""
        if D.is_main():
            save_checkpoint(self._state(), self.out / name)
        D.barrier()
        self.last_save = time.perf_counter()

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
            self.total = self.cfg.max_iters or self.cfg.epochs * self.updates_per_epoch
        self.epoch, self.iteration, self.position = state["epoch"], state["iteration"], state["position"]
        self.best_ap, self.train_seconds = state["best_ap"], state["train_seconds"]
        torch.set_rng_state(state["rng"]["torch"].cpu())
        random.setstate(_as_python_state(state["rng"]["python"]))
        np.random.set_state(_as_numpy_state(state["rng"]["numpy"]))
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        if D.is_main():
            _drop_records_after(self.out / "metrics.jsonl", self.iteration)
            print(f"resumed from {path} at update {self.iteration} (epoch {self.epoch})")

    def _write_metrics(self, record: dict[str, Any]) -> None:
        if D.is_main():
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")


def _mean_record(window: list[dict[str, float]], iteration: int, epoch: int) -> dict[str, Any]:
    keys = [k for k in window[0] if k not in ("images", "seconds")] if window else []
    record: dict[str, Any] = {"event": "train", "iteration": iteration, "epoch": epoch}
    for key in keys:
        record[key] = float(np.mean([w[key] for w in window]))
    record["loss"] = sum(record.get(k, 0.0) for k in ("classification", "bbox_regression", "bbox_ctrness"))
    seconds = sum(w["seconds"] for w in window)
    record["images_per_s"] = sum(w["images"] for w in window) / seconds if seconds else 0.0
    return record


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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)


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

