"""Mixed precision of a training run: the autocast dtype (:func:`fcos.utils.devices.autocast_dtype`: bf16
on GPUs and CPUs that compute it natively, without a scaler; fp16 with a GradScaler on older GPUs; else fp32)
and the scaler."""

from __future__ import annotations

from typing import Any

import torch

from fcos.utils.devices import autocast_dtype

__all__ = ["Precision"]


class Precision:
    """``autocast()`` around forward passes; ``scaler`` scales fp16 losses (a no-op otherwise).

    Attributes:
        dtype: the autocast dtype, None for fp32.
        name: what it is, in words ("bf16 autocast (native on this CPU)", ...), printed at the start.
    """

    def __init__(self, device: torch.device, amp: bool) -> None:
        self.device = device
        self.dtype, self.name = autocast_dtype(device, amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)

    def autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scaler.load_state_dict(state)
