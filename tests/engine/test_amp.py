"""Mixed precision on the CPU: bf16 autocast matches fp32 losses, keeps assignment and loss reductions
in float32 and trains finitely; the GradScaler paths (disabled on CPU, enabled for CUDA fp16) run here."""

from __future__ import annotations

import math

import pytest
import torch

from fcos import FCOS
from fcos.data import DetectionDataset, Resize, load_annotations
from fcos.engine.train_config import cpu_from_scratch
from fcos.engine.trainer import Trainer
from fcos.model.options import model_config_for
from fcos.utils import devices

# Measured: over six seeds and four-image fruit batches at 128 px the largest relative difference
# between bf16-autocast and fp32 losses was 8.6e-4 (classification; centerness 3.4e-4, GIoU 3.1e-4).
# bf16 keeps 8 significant bits (unit roundoff 2**-8 = 3.9e-3): the tolerance is one such rounding
# of the final value, ~4.5x the worst measured; the per-element rounding errors average out in the sums.
BF16_LOSS_RTOL = 2.0**-8


def tiny():
    return model_config_for(3, backbone="resnet18", img_size=128, fpn_channels=32, head_convs=1)


@pytest.fixture(scope="module")
def fruit_batch(shared_data):
    dataset = DetectionDataset(load_annotations(shared_data / "fruit", "train"), Resize(128, 128))
    images, targets = zip(*(dataset[i] for i in (0, 9, 16, 22)), strict=True)  # apple, bananas, mixed, orange
    return list(images), list(targets)


def model_with_boxes():
    torch.manual_seed(0)
    model = FCOS(tiny()).train()
    with torch.no_grad():  # at random init the boxes are ~0 px and the GIoU loss sits at ~1, blind to precision
        model.head.box_pred.bias.fill_(2.0)
    return model


def test_bf16_autocast_losses_match_fp32_and_reductions_stay_float32(fruit_batch):
    images, targets = fruit_batch
    model = model_with_boxes()
    reference = model(images, targets)
    seen = {}
    hook = model.criterion.register_forward_hook(lambda module, args, out: seen.update(outputs=args[0], assignment=args[1]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(images, targets)
    hook.remove()
    outputs, assignment = seen["outputs"], seen["assignment"]
    assert outputs.cls_logits.dtype == torch.bfloat16  # autocast really ran the network in bf16
    assert assignment.box_targets.dtype == assignment.centerness.dtype == torch.float32
    assert int(assignment.positive.sum()) > 0
    assert set(mixed) == set(reference) == {"classification", "bbox_regression", "bbox_ctrness"}
    for name in reference:
        assert mixed[name].dtype == torch.float32, name
        assert 0.3 < reference[name].item() < 2.0, name  # not saturated, so the comparison means something
        torch.testing.assert_close(mixed[name], reference[name], rtol=BF16_LOSS_RTOL, atol=0.0, msg=name)
    assert any(mixed[k].item() != reference[k].item() for k in reference)  # not secretly fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total = sum(model(images, targets).values())
    total.backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert param.grad.dtype == torch.float32 and torch.isfinite(param.grad).all(), name


def config(data, out, **changes):
    base = dict(data=str(data), out=str(out), val_split=None, batch_size=2, max_iters=3, workers=0, progress=False,
                log_every=1, lr=1e-3, warmup_iters=1)
    return cpu_from_scratch(**{**base, **changes})


def test_amp_training_on_cpu_uses_bf16_and_stays_finite(shared_data, tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)  # as on a CPU with AVX512-BF16 or AMX
    trainer = Trainer.from_config(tiny(), config(shared_data / "fruit", tmp_path, amp=True))
    assert trainer.device.type == "cpu" and next(trainer.model.parameters()).device.type == "cpu"
    assert trainer.precision.dtype == torch.bfloat16 and not trainer.precision.scaler.is_enabled()  # CPU: no GradScaler
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.run()
    assert summary["iteration"] == 3 and summary["skipped_updates"] == 0
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    records = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert len(records) == 3 and "NaN" not in "".join(records) and "Infinity" not in "".join(records)


def test_amp_on_a_cpu_without_native_bf16_trains_in_fp32_and_says_why(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)  # AVX2-only x86: bf16 is emulated, slow
    trainer = Trainer.from_config(tiny(), config(shared_data / "fruit", tmp_path, amp=True, max_iters=1))
    assert trainer.precision.dtype is None and not trainer.precision.scaler.is_enabled()
    assert "no native bf16" in capsys.readouterr().out
    seen = []
    trainer.model.head.register_forward_hook(lambda m, i, o: seen.append(o.cls_logits.dtype))
    trainer.run()
    assert seen and all(dtype == torch.float32 for dtype in seen)  # no autocast: the head computes in fp32


def test_enabled_grad_scaler_skips_overflowing_update_and_continues(shared_data, tmp_path):
    """The CUDA fp16 branch: an enabled GradScaler (here on the CPU) owns gradient overflow. It skips
    that optimizer step and halves the scale; the trainer neither stops nor counts a skip."""
    trainer = Trainer.from_config(tiny(), config(shared_data / "fruit", tmp_path, max_iters=2))
    trainer.precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    param = trainer.model.head.cls_logits.weight
    hook = param.register_hook(lambda grad: torch.full_like(grad, math.inf))  # overflow in the first update
    batches = iter(trainer.loader)
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.step([next(batches)])
    hook.remove()
    assert trainer.precision.scaler.get_scale() == 2.0**9 and trainer.skipped == 0
    # step skipped (BatchNorm's running statistics, buffers, still moved in the forward pass)
    assert all(torch.equal(before[k], v) for k, v in trainer.model.named_parameters())
    trainer.step([next(batches)])
    assert trainer.precision.scaler.get_scale() == 2.0**9
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(v).all() for v in after.values())
