import math

import pytest
import torch

from fcos import FCOS, official
from fcos.engine.ema import ModelEMA
from fcos.engine.optim import build_optimizer
from fcos.engine.schedule import lr_factor


def test_warmup_and_step_schedule_hand_computed():
    kw = dict(warmup_iters=500, warmup_factor=1 / 3, schedule="step", steps=(2 / 3, 8 / 9), gamma=0.1)
    assert lr_factor(0, 900, **kw) == pytest.approx(1 / 3)
    assert lr_factor(250, 900, **kw) == pytest.approx(1 / 3 * 0.5 + 0.5)  # halfway through warm-up
    assert lr_factor(599, 900, **kw) == 1.0
    assert lr_factor(600, 900, **kw) == pytest.approx(0.1)  # 2/3 of 900
    assert lr_factor(800, 900, **kw) == pytest.approx(0.01)  # 8/9 of 900


def test_cosine_schedule_ends_at_final_factor():
    kw = dict(warmup_iters=10, warmup_factor=0.1, schedule="cosine", final_factor=0.05)
    assert lr_factor(10, 110, **kw) == pytest.approx(1.0)
    assert lr_factor(60, 110, **kw) == pytest.approx(0.05 + 0.95 * 0.5)
    assert lr_factor(110, 110, **kw) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        lr_factor(0, 10, warmup_iters=0, warmup_factor=1, schedule="poly")


def test_no_weight_decay_on_norms_biases_and_scales():
    model = FCOS(official(num_classes=2, backbone="resnet18", **{"fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1}))
    opt = build_optimizer(model, "sgd", 0.01, 1e-4)
    decay, no_decay = opt.param_groups
    ids = {id(p) for p in no_decay["params"]}
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0
    assert id(model.head.cls_logits.bias) in ids and id(model.head.scales[0].scale) in ids
    assert id(model.head.cls_tower[1].weight) in ids  # GroupNorm
    assert id(model.head.cls_logits.weight) not in ids
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in model.parameters())
    assert isinstance(build_optimizer(model, "adamw", 1e-3, 0.05), torch.optim.AdamW)


def test_ema_ramps_up_and_round_trips():
    model = torch.nn.Linear(2, 1)
    before = model.weight.detach().clone()
    ema = ModelEMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1 / 2000))  # nearly 0 at the first update: the EMA follows the model
    torch.testing.assert_close(ema.module.weight, d * before + (1 - d) * torch.ones(1, 2))
    for _ in range(20000):
        ema.updates += 1  # fast-forward: the decay approaches 0.9
    with torch.no_grad():
        model.weight.fill_(3.0)
    previous = ema.module.weight.clone()
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, 0.9 * previous + 0.1 * 3.0, rtol=1e-4, atol=1e-5)
    clone = ModelEMA(model)
    clone.load_state_dict(ema.state_dict())
    assert clone.updates == ema.updates and torch.equal(clone.module.weight, ema.module.weight)


def _named_groups(model, opt):
    names = {id(p): n for n, p in model.named_parameters()}
    return {g["name"]: (g, {names[id(p)] for p in g["params"]}) for g in opt.param_groups}


def test_official_groups_double_the_bias_rate_and_decay_everything_else():
    # fcos_core/solver/build.py: "bias" in the name -> lr * BIAS_LR_FACTOR (2), WEIGHT_DECAY_BIAS (0);
    # every other parameter (GroupNorm weights, Scales) at the base rate with weight decay.
    model = FCOS(official(num_classes=2, backbone="resnet18", **{"fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1}))
    opt = build_optimizer(model, "sgd", 0.01, 1e-4, bias_lr_factor=2.0, decay_norms=True)
    groups = _named_groups(model, opt)
    assert set(groups) == {"decay", "bias"}
    (decay, decayed), (bias, biases) = groups["decay"], groups["bias"]
    assert (decay["lr"], decay["weight_decay"]) == (0.01, 1e-4) and (bias["lr"], bias["weight_decay"]) == (0.02, 0.0)
    assert {"head.cls_tower.1.weight", "head.scales.0.scale", "head.cls_logits.weight", "fpn.lateral.0.weight"} <= decayed
    assert {"head.cls_tower.1.bias", "head.cls_logits.bias", "head.box_pred.bias"} <= biases
    assert all(name.endswith("bias") for name in biases) and not any(name.endswith("bias") for name in decayed)
    assert len(decayed | biases) == sum(1 for p in model.parameters() if p.requires_grad)


def test_cpu_groups_exempt_every_1d_parameter_at_one_rate():
    model = FCOS(official(num_classes=2, backbone="resnet18", **{"fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1}))
    opt = build_optimizer(model, "adamw", 1e-3, 0.05)  # the cpu recipe: factor 1, norms not decayed
    groups = _named_groups(model, opt)
    assert set(groups) == {"decay", "no_decay"} and all(g["lr"] == 1e-3 for g, _ in groups.values())
    assert {"head.cls_tower.1.weight", "head.scales.0.scale", "head.cls_logits.bias"} <= groups["no_decay"][1]
    assert all(p.ndim > 1 for p in groups["decay"][0]["params"])
    assert all(p.ndim <= 1 for p in groups["no_decay"][0]["params"])


def test_constant_warmup_hand_computed():
    kw = dict(warmup_iters=500, warmup_factor=1 / 3, schedule="step", steps=(2 / 3, 8 / 9), warmup_method="constant")
    assert lr_factor(0, 90000, **kw) == pytest.approx(1 / 3)
    assert lr_factor(499, 90000, **kw) == pytest.approx(1 / 3)
    assert lr_factor(500, 90000, **kw) == 1.0
    assert lr_factor(59999, 90000, **kw) == 1.0 and lr_factor(60000, 90000, **kw) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warm-up method"):
        lr_factor(0, 10, warmup_iters=5, warmup_factor=0.1, schedule="step", warmup_method="exp")
