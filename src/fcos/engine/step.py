"""One optimizer update: the micro-batches' forward passes under autocast, their losses' backward passes
(scaled for fp16), DDP's gradient all-reduce on the last micro-batch only, clipping, the optimizer step
and the EMA. A NaN/inf loss or gradient on any rank skips the update on every rank: the flag is
all-reduced, so the ranks' weights never diverge."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from fcos.engine.ema import ModelEMA
from fcos.engine.precision import Precision
from fcos.utils import distributed as D

__all__ = ["MicroBatch", "UpdateStep"]

MicroBatch = tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]  # images [3, H, W] and their targets


class UpdateStep:
    """``step(micro_batches) -> (mean losses, finite)``; on a non-finite update nothing is changed
    (the gradients are dropped, the optimizer, scaler and EMA left as they were). The losses are 0-dim
    tensors on the device, read at the logging interval.

    Whether to apply the update is decided on the device where the optimizer can skip itself there
    (fused SGD/AdamW take GradScaler's ``found_inf`` tensor: their kernels leave weights, moments and
    step counts alone where it is 1) and no GradScaler is on: then ``finite`` is a 0-dim bool tensor
    and the step reads nothing from the device (the trainer checks the flags at its logging interval).
    Otherwise (an optimizer without that, or fp16 with a GradScaler, whose own skip would hide ours)
    the flag is read here and ``finite`` is a bool (``tests/engine/test_host_sync.py``).

    Args:
        model: the bare model (clipping and the EMA read it); ``ddp``: its DDP wrapper when distributed.
        clip_grad: max gradient norm (None: no clipping; the norm is still checked for NaN/inf).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, precision: Precision, device: torch.device,
                 *, ddp: nn.Module | None = None, ema: ModelEMA | None = None, clip_grad: float | None = None) -> None:
        self.model, self.optimizer, self.precision, self.device = model, optimizer, precision, device
        self.ddp, self.ema, self.clip_grad = ddp, ema, clip_grad

    @property
    def skips_on_device(self) -> bool:
        """Whether the skip decision stays on the device (class doc)."""
        return bool(getattr(self.optimizer, "_step_supports_amp_scaling", False)) and not self.precision.scaler.is_enabled()

    def __call__(self, micro_batches: list[MicroBatch]) -> tuple[dict[str, torch.Tensor], bool | torch.Tensor]:
        model = self.ddp or self.model
        model.train()
        scaler = self.precision.scaler
        sums: dict[str, torch.Tensor] = {}
        for k, (images, targets) in enumerate(micro_batches):
            images = [im.to(self.device, non_blocking=True) for im in images]
            # Targets stay on the host: the model checks them there and copies them into its padded [B, M]
            # tensors on the device (fcos.model.assign.stack_targets), one copy per field, no device reads.
            sync = k == len(micro_batches) - 1 or self.ddp is None
            with contextlib.nullcontext() if sync else model.no_sync():
                with self.precision.autocast():
                    losses = model(images, targets)
                # Every rank runs every backward (a NaN loss only makes NaN gradients, dropped below), so
                # DDP's all-reduces always pair up; the losses stay on the device until they are logged.
                scaler.scale(sum(losses.values()) / len(micro_batches)).backward()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.detach().float() / len(micro_batches)
        scaler.unscale_(self.optimizer)
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad or math.inf)
        bad = ~torch.isfinite(torch.stack(list(sums.values()))).all()
        if not scaler.is_enabled():  # with a GradScaler, an inf gradient is fp16 overflow: its step skips itself
            bad = bad | ~torch.isfinite(norm)
        # Every rank must decide alike: the flag is all-reduced (on the device).
        bad = D.all_reduce_max_(bad.float())
        if self.skips_on_device:
            self.optimizer.grad_scale, self.optimizer.found_inf = None, bad  # type: ignore[attr-defined]
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.grad_scale, self.optimizer.found_inf  # type: ignore[attr-defined]
            if self.ema:
                self.ema.update(self.model, skip=bad.bool())
            self.optimizer.zero_grad(set_to_none=True)
            return sums, bad == 0
        # The update's one host read: whether to apply it (skipping must leave the state untouched).
        finite = float(bad) == 0
        if finite:
            scaler.step(self.optimizer)
            scaler.update()
            if self.ema:
                self.ema.update(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        return sums, finite
