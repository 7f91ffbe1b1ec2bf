"""Fine-tuning: start a model for a dataset from pretrained weights (a registered name or a checkpoint).

Everything but the classification layer is kept when its shape matches. The classification layer is
rebuilt for the dataset's classes: its fresh init (weights ~ N(0, 0.01), bias at the focal-loss prior,
so every class starts as "background" with probability 1 - prior_prob), except that a dataset class whose
name equals a class of the weights (case-insensitive, ``_`` read as a space: "Traffic_Light" is COCO's
"traffic light") gets that class's row, so the model starts out detecting it. What was kept, copied and
reset is reported, and training prints it.

The model itself comes from the weights: :func:`finetune_config` takes the weights' config (backbone,
FPN, head, preset semantics, input sizes) and applies only the options given explicitly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fcos.config import FCOSConfig
from fcos.model.options import ModelOptions, OptionConflictError
from fcos.weights.resolve import read_weights, weights_config

__all__ = ["OptionConflictError", "TransferReport", "finetune_config", "initialise_from", "transfer_weights"]

_CLS = ("head.cls_logits.weight", "head.cls_logits.bias")


@dataclass
class TransferReport:
    source: str
    kept: int = 0  # tensors loaded as they are
    copied: list[tuple[str, str]] = field(default_factory=list)  # (dataset class, source class) rows copied
    reset_classes: list[str] = field(default_factory=list)  # dataset classes at the fresh prior init
    reset_tensors: list[str] = field(default_factory=list)  # other tensors left at init (absent or reshaped)

    def summary(self) -> str:
        copied = ", ".join(a if a == b else f"{a} <- {b}" for a, b in self.copied) or "none"
        reset = ", ".join(self.reset_classes) or "none"
        lines = [
            f"initialised from {self.source}: kept {self.kept} tensors (backbone, FPN, head towers, box and centerness)",
            f"  classification rows copied for {len(self.copied)} classes: {copied}",
            f"  reset to the prior for {len(self.reset_classes)} classes: {reset}",
        ]
        if self.reset_tensors:
            more = "..." if len(self.reset_tensors) > 6 else ""
            lines.append(f"  {len(self.reset_tensors)} other tensors at init (absent or another shape): "
                         f"{', '.join(self.reset_tensors[:6])}{more}")
        return "\n".join(lines)


def _key(name: str) -> str:
    return " ".join(str(name).replace("_", " ").split()).casefold()


@torch.no_grad()
def transfer_weights(
    model: nn.Module, state: Mapping[str, Tensor], source_classes: Sequence[str], target_classes: Sequence[str],
    source: str = "weights",
) -> TransferReport:
    """Load ``state`` (trained for ``source_classes``) into ``model`` (for ``target_classes``) as the
    module docstring says; ``model``'s own classification layer must hold its fresh init."""
    own = model.state_dict()
    report = TransferReport(source)
    load = {k: v for k, v in state.items() if k in own and k not in _CLS and own[k].shape == v.shape}
    report.kept = len(load)
    report.reset_tensors = sorted(k for k in own if k not in load and k not in _CLS and not k.endswith("num_batches_tracked"))
    weight, bias = own[_CLS[0]].clone(), own[_CLS[1]].clone()
    src_weight, src_bias = state.get(_CLS[0]), state.get(_CLS[1])
    rows = {}
    for i, name in enumerate(source_classes):
        rows.setdefault(_key(name), i)
    fits = src_weight is not None and src_bias is not None and src_weight.shape[1:] == weight.shape[1:]
    for j, name in enumerate(target_classes):
        i = rows.get(_key(name)) if fits else None
        if i is None or i >= src_weight.shape[0]:
            report.reset_classes.append(str(name))
            continue
        weight[j], bias[j] = src_weight[i], src_bias[i]
        report.copied.append((str(name), str(source_classes[i])))
    model.load_state_dict({**load, _CLS[0]: weight, _CLS[1]: bias}, strict=False)
    return report


def initialise_from(model: nn.Module, weights: str | Path, class_names: Sequence[str]) -> TransferReport:
    """Read ``weights`` (a registered name or an fcos checkpoint) and transfer them into ``model``."""
    state = read_weights(weights)
    source = state.get("source", str(weights))
    names = state.get("class_names") or [str(i) for i in range(state["model"][_CLS[1]].shape[0])]
    return transfer_weights(model, state["model"], names, class_names, source=source)


def finetune_config(weights: str | Path, options: ModelOptions | None = None, **given: Any) -> FCOSConfig:
    """The model config of ``weights`` (a registered name or a checkpoint) with the given model options
    (a :class:`~fcos.model.options.ModelOptions`, or its fields as keywords) changed. The preset and the
    backbone belong to the weights, and so does the backbone's initialisation: naming another preset or
    backbone, or ``--backbone-weights``, is an :class:`~fcos.model.options.OptionConflictError`."""
    options = options or ModelOptions(**given)
    if options.backbone_weights is not None:
        raise OptionConflictError("--backbone-weights initialises a backbone alone; --weights already initialises the whole model")
    config, _ = weights_config(weights)
    config = options.applied_to(config, str(weights))
    return dataclasses.replace(config, backbone=config.backbone.without_weights())
