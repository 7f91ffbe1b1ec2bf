"""The training step never waits for the device: not for losses, statistics or data-dependent shapes,
and with a fused optimizer not for the skip decision either (an optimizer that cannot skip itself on
the device costs one read). On the CPU, every scalar read and every op whose output shape depends on
data is recorded while a step runs (a GPU would block on each of them)."""

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


def tiny_step(fused: bool = True):
    torch.manual_seed(0)
    model = FCOS(official(num_classes=3, backbone="resnet18", **{"input.min_size": 256, "input.max_size": 256,
                                                                 "fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1}))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, fused=fused)
    step = UpdateStep(model, optimizer, Precision(torch.device("cpu"), amp=False), torch.device("cpu"))
    images = [torch.rand(3, 256, 256), torch.rand(3, 224, 256)]
    targets = [{"boxes": torch.tensor([[10.0, 20, 120, 140], [60, 50, 250, 200]]), "labels": torch.tensor([0, 2])},
               {"boxes": torch.tensor([[30.0, 30, 90, 100]]), "labels": torch.tensor([1])}]
    return model, step, images, targets


def test_an_update_reads_nothing_from_the_device(monkeypatch):
    model, step, images, targets = tiny_step()
    step([(images, targets)])  # warm-up: optimizer state
    calls = []
    for method in ("tolist", "cpu", "numpy"):
        original = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method, lambda self, *a, _o=original, _m=method, **k: (calls.append(_m), _o(self, *a, **k))[1])
    with HostReads() as reads:
        losses, finite = step([(images, targets)])
    monkeypatch.undo()
    assert step.skips_on_device and reads.dynamic == [] and calls == []
    assert reads.scalars == 0  # the skip decision stays on the device: fused SGD takes it as found_inf
    assert isinstance(finite, torch.Tensor) and bool(finite)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in losses.values())
    assert float(model.last_stats["num_positive"]) > 0


def test_an_optimizer_that_cannot_skip_itself_costs_one_read():
    model, step, images, targets = tiny_step(fused=False)
    step([(images, targets)])
    with HostReads() as reads:
        _, finite = step([(images, targets)])
    assert not step.skips_on_device and finite is True and reads.scalars == 1 and reads.dynamic == []


def test_a_nonfinite_update_is_skipped_on_the_device():
    model, step, images, targets = tiny_step()
    step([(images, targets)])
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    momenta = [s["momentum_buffer"].clone() for s in step.optimizer.state.values()]
    hook = model.head.cls_logits.weight.register_hook(lambda g: torch.full_like(g, float("nan")))
    _, finite = step([(images, targets)])
    hook.remove()
    assert not bool(finite)
    params = dict(model.named_parameters())
    assert all(torch.equal(weights[k], p) for k, p in params.items())  # no parameter moved
    assert all(torch.equal(a, s["momentum_buffer"]) for a, s in zip(momenta, step.optimizer.state.values(), strict=True))
    assert all(p.grad is None for p in model.parameters())
    _, finite = step([(images, targets)])
    assert bool(finite) and any(not torch.equal(weights[k], p) for k, p in params.items())
