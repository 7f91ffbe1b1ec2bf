"""The training step waits for the device once per update (the skip decision), never for losses,
statistics or data-dependent shapes: on the CPU, every scalar read and every op whose output shape
depends on data is recorded while a step runs (a GPU would block on each of them)."""

import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fcos import FCOS, official
from fcos.engine.precision import Precision
from fcos.engine.step import UpdateStep

# Ops that read a value to the host, or whose output size depends on values (nonzero and friends).
DATA_DEPENDENT = {"nonzero", "masked_select", "unique", "_unique2", "unique_consecutive", "repeat_interleave"}


class HostReads(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.scalars, self.validation, self.dynamic = 0, 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        if name == "_local_scalar_dense":  # .item(), bool(), int(), float() of a tensor
            # The model's input checks read the targets as given: host tensors (the step leaves them on
            # the host; the model copies them to the device after checking them).
            if any(f.name == "_check_targets" for f in traceback.extract_stack(limit=8)):
                self.validation += 1
            else:
                self.scalars += 1
        if name in DATA_DEPENDENT:
            self.dynamic.append(name)
        return func(*args, **(kwargs or {}))


def test_an_update_reads_one_flag_from_the_device(monkeypatch):
    torch.manual_seed(0)
    model = FCOS(official(num_classes=3, backbone="resnet18", **{"input.min_size": 256, "input.max_size": 256,
                                                                 "fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1}))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, fused=True)
    step = UpdateStep(model, optimizer, Precision(torch.device("cpu"), amp=False), torch.device("cpu"))
    images = [torch.rand(3, 256, 256), torch.rand(3, 224, 256)]
    targets = [{"boxes": torch.tensor([[10.0, 20, 120, 140], [60, 50, 250, 200]]), "labels": torch.tensor([0, 2])},
               {"boxes": torch.tensor([[30.0, 30, 90, 100]]), "labels": torch.tensor([1])}]
    step([(images, targets)])  # warm-up: optimizer state
    calls = []
    for method in ("tolist", "cpu", "numpy"):
        original = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method, lambda self, *a, _o=original, _m=method, **k: (calls.append(_m), _o(self, *a, **k))[1])
    with HostReads() as reads:
        losses, finite = step([(images, targets)])
    monkeypatch.undo()
    assert finite and reads.dynamic == [] and calls == []
    assert reads.scalars == 1  # the skip decision (a NaN/inf loss or gradient skips the update on every rank)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in losses.values())
    assert float(model.last_stats["num_positive"]) > 0
