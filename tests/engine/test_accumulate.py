"""Gradient accumulation: K micro-batches of b images make the same update as one batch of K * b.

Exact only under two conditions the test builds in: every micro-batch has the same positives (and
centerness-target sum), because each micro-batch's loss is normalised by its own positives; and
BatchNorm is frozen, because batch statistics over b images differ from those over K * b. All images
have one size, so no batch pads an image differently (padding changes the loss).
"""

from __future__ import annotations

import torch

from fcos.engine.train_config import cpu_from_scratch
from fcos.engine.trainer import Trainer
from fcos.model.options import model_config_for

SIZE = 128
T1 = {"boxes": torch.tensor([[10.0, 12, 70, 90], [60, 30, 120, 110]]), "labels": torch.tensor([0, 2])}
T2 = {"boxes": torch.tensor([[30.0, 40, 100, 100]]), "labels": torch.tensor([1])}


def trainer(shared_data, out, batch_size, accumulate):
    model_cfg = model_config_for(3, backbone="resnet18", img_size=SIZE, fpn_channels=32, head_convs=1,
                                 **{"backbone.norm": "frozen"})
    # SGD: a first update is lr * gradient, so the weights carry the gradients' size (AdamW's first
    # step is ~lr * sign(gradient) and would hide a wrongly scaled gradient).
    cfg = cpu_from_scratch(data=str(shared_data / "fruit"), out=str(out), val_split=None, batch_size=batch_size,
                           accumulate=accumulate, max_iters=2, workers=0, progress=False, optimizer="sgd", lr=0.05,
                           warmup_iters=0, clip_grad=None)
    return Trainer.from_config(model_cfg, cfg)


def images(n):
    gen = torch.Generator().manual_seed(1)
    return [torch.rand(3, SIZE, SIZE, generator=gen) for _ in range(n)]


def test_two_micro_batches_of_two_equal_one_batch_of_four(shared_data, tmp_path):
    x = images(4)
    # The same targets in a different order: both micro-batches have the same positives.
    micro = [([x[0], x[1]], [T1, T2]), ([x[2], x[3]], [T2, T1])]
    big = [(x, [T1, T2, T2, T1])]
    accumulated, single = trainer(shared_data, tmp_path / "a", 2, 2), trainer(shared_data, tmp_path / "b", 4, 1)
    start = {k: v.detach().clone() for k, v in single.model.named_parameters()}
    assert all(torch.equal(start[k], v) for k, v in accumulated.model.named_parameters())  # same seed, same init
    losses_acc, losses_one = accumulated.step(micro), single.step(big)
    for name in ("classification", "bbox_regression", "bbox_ctrness"):  # the logged mean equals the batch loss
        assert abs(losses_acc[name] - losses_one[name]) <= 1e-6 * abs(losses_one[name]), name
    moved = 0
    for name, after in single.model.named_parameters():
        other = dict(accumulated.model.named_parameters())[name]
        torch.testing.assert_close(other, after, rtol=1e-6, atol=1e-7, msg=name)
        delta, delta_other = after - start[name], other - start[name]
        torch.testing.assert_close(delta_other, delta, rtol=1e-3, atol=1e-8, msg=name)  # the updates themselves
        moved += int(delta.abs().max() > 1e-4)
    assert moved > 10  # the update is large enough for the comparison to mean something


def test_unequal_positives_per_micro_batch_break_the_equivalence(shared_data, tmp_path):
    """The caveat is real: with micro-batches of different positive counts, accumulation weights the
    images of the micro-batch with fewer positives more than one big batch does."""
    x = images(4)
    micro = [([x[0], x[1]], [T1, T1]), ([x[2], x[3]], [T2, T2])]
    big = [(x, [T1, T1, T2, T2])]
    accumulated, single = trainer(shared_data, tmp_path / "a", 2, 2), trainer(shared_data, tmp_path / "b", 4, 1)
    accumulated.step(micro)
    single.step(big)
    weight = "head.cls_logits.weight"
    a, b = dict(accumulated.model.named_parameters())[weight], dict(single.model.named_parameters())[weight]
    assert not torch.allclose(a, b, rtol=1e-4, atol=0)
