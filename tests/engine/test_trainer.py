"""Training loop: exact resume, run-folder outputs, non-finite handling, time budget."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from fcos.engine.train_config import TrainConfig, cpu_from_scratch
from fcos.engine.trainer import NonFiniteLossError, Trainer
from fcos.model.options import model_config_for
from fcos.weights.checkpoint import load_checkpoint


def tiny(num_classes=1):
    return model_config_for(num_classes, backbone="resnet18", img_size=128, fpn_channels=32, head_convs=1)


def config(data, out, **changes) -> TrainConfig:
    base = dict(data=str(data), out=str(out), val_split=None, batch_size=4, max_iters=6, workers=0,
                progress=False, log_every=2, lr=1e-3, warmup_iters=2)
    return cpu_from_scratch(**{**base, **changes})


def weights(path):
    return load_checkpoint(path)["model"]


def test_resume_mid_epoch_is_bit_identical(shared_data, tmp_path):
    # (Same worker count on both sides: photometric jitter reduces over the image, and a worker's
    # single intra-op thread sums in another order than the main process's two.)
    data = shared_data / "fruit"
    straight = Trainer.from_config(tiny(3), config(data, tmp_path / "a")).run()
    assert straight["iteration"] == 6
    paused = Trainer.from_config(tiny(3), config(data, tmp_path / "b")).run(stop_at=3)
    assert paused["event"] == "paused" and load_checkpoint(tmp_path / "b" / "last.pt")["iteration"] == 3
    resumed = Trainer.from_config(tiny(3), config(data, tmp_path / "b", resume="auto")).run()
    assert resumed["iteration"] == 6
    a, b = weights(tmp_path / "a" / "last.pt"), weights(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines if r["event"] == "train"] == [2, 4, 6]


def test_repeat_threshold_lengthens_epochs_and_resumes_bit_identically(shared_data, tmp_path):
    # fruit's 25 training images hold each class in 10 (f = 0.4): threshold 1 repeats every image
    # sqrt(1 / 0.4) = 1.58 times, floor(25 * 1.58) = 39 samples per epoch: 9 updates of 4 (6 without).
    data = shared_data / "fruit"
    trainer = Trainer.from_config(tiny(3), config(data, tmp_path / "a", repeat_threshold=1.0, max_iters=11))
    assert len(trainer.sampler) == 39 and trainer.updates_per_epoch == 9
    straight = trainer.run()
    paused = Trainer.from_config(tiny(3), config(data, tmp_path / "b", repeat_threshold=1.0, max_iters=11)).run(
        stop_at=10)  # epoch 1, one update in
    assert paused["event"] == "paused" and load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    resumed = Trainer.from_config(tiny(3), config(data, tmp_path / "b", repeat_threshold=1.0, max_iters=11,
                                                  resume="auto")).run()
    assert straight["iteration"] == resumed["iteration"] == 11
    a, b = weights(tmp_path / "a" / "last.pt"), weights(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_run_folder_contents_and_time_budget(shared_data, tmp_path):
    cfg = config(shared_data / "fruit", tmp_path, val_split="val", max_iters=None, epochs=50, time_budget=8.0,
                 val_images=4, log_every=1)
    summary = Trainer.from_config(tiny(3), cfg).run()
    # the schedule was fitted to the budget: far fewer updates than 50 epochs, within ~the budget
    assert 12 <= summary["iteration"] < 50 * (25 // 4)  # fitted after 2 + 10 measured updates, far below 50 epochs
    for name in ("config.yaml", "metrics.jsonl", "loss_curve.png", "val_predictions.png", "last.pt", "best.pt"):
        assert (tmp_path / name).is_file(), name
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["class_names"] == ["apple", "banana", "orange"]
    assert {"optimizer", "scheduler", "scaler", "rng", "epoch", "iteration", "config"} <= set(state)
    assert set(summary["val"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "per_class"}


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(shared_data, tmp_path, monkeypatch):
    cfg = config(shared_data / "fruit", tmp_path, checkpoint_every=2, max_iters=6)
    trainer = Trainer.from_config(tiny(3), cfg)
    original = trainer.model.criterion.forward
    calls = {"n": 0}

    def poisoned(outputs, targets, *args):
        calls["n"] += 1
        losses = original(outputs, targets, *args)
        if calls["n"] == 4:
            losses["classification"] = losses["classification"] * float("nan")
        return losses

    monkeypatch.setattr(trainer.model.criterion, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match="non-finite loss .* update 3.*last good checkpoint"):
        trainer.run()
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_nonfinite_skip_mode_counts_and_continues(shared_data, tmp_path, monkeypatch):
    trainer = Trainer.from_config(tiny(3), config(shared_data / "fruit", tmp_path, on_nonfinite="skip", max_iters=4))
    original = trainer.model.criterion.forward
    calls = {"n": 0}

    def poisoned(outputs, targets, *args):
        calls["n"] += 1
        losses = original(outputs, targets, *args)
        return {k: v * float("inf") for k, v in losses.items()} if calls["n"] == 2 else losses

    monkeypatch.setattr(trainer.model.criterion, "forward", poisoned)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.run()
    assert summary["iteration"] == 4
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())


def poison_gradient(param, at_call, value):
    """Replace ``param``'s gradient with ``value`` in the ``at_call``-th backward pass (1-based); the loss stays finite."""
    calls = {"n": 0}

    def hook(grad):
        calls["n"] += 1
        return torch.full_like(grad, value) if calls["n"] == at_call else grad

    return param.register_hook(hook)


@pytest.mark.parametrize(("clip_grad", "value"), [(10.0, float("inf")), (None, float("nan"))])
def test_nonfinite_gradient_stops_and_keeps_last_good_checkpoint(shared_data, tmp_path, clip_grad, value):
    trainer = Trainer.from_config(tiny(3), config(shared_data / "fruit", tmp_path, checkpoint_every=2, max_iters=6, clip_grad=clip_grad))
    poison_gradient(trainer.model.backbone.trunk.layer2[0].conv1.weight, 3, value)  # right after the checkpoint
    with pytest.raises(NonFiniteLossError, match="non-finite loss or gradient at update 2 .*last good checkpoint"):
        trainer.run()
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    # the failed update changed no parameter: the checkpoint holds the weights training stopped with
    assert all(torch.equal(state["model"][name], p) for name, p in trainer.model.named_parameters())


def test_nonfinite_gradient_skip_mode_skips_only_that_update(shared_data, tmp_path):
    trainer = Trainer.from_config(tiny(3), config(shared_data / "fruit", tmp_path, on_nonfinite="skip", max_iters=4))
    poison_gradient(trainer.model.head.cls_logits.weight, 2, float("inf"))
    batches = iter(trainer.loader)
    trainer.step([next(batches)])
    params = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    steps = [s["step"].item() for s in trainer.optimizer.state.values()]
    trainer.step([next(batches)])  # poisoned: skipped
    assert trainer.skipped == 1 and trainer.iteration == 2
    assert all(torch.equal(params[k], v) for k, v in trainer.model.named_parameters())
    assert [s["step"].item() for s in trainer.optimizer.state.values()] == steps  # AdamW state untouched
    assert all(p.grad is None for p in trainer.model.parameters())  # nothing carried into the next update
    trainer.step([next(batches)])
    assert trainer.skipped == 0
    assert any(not torch.equal(params[k], v) for k, v in trainer.model.named_parameters())
    assert all(torch.isfinite(v).all() for v in trainer.model.state_dict().values() if v.is_floating_point())


def test_tile_training_records_its_tiles_and_resumes_bit_identically(shared_data, tmp_path):
    # raccoon-183 (2000 x 1333) and the other raccoon photos: 128 px tiles at half scale, a quarter whole.
    from fcos.engine.run_config import run_configs
    from fcos.model.options import ModelOptions

    data = shared_data / "raccoon"
    values = dict(data=str(data), val_split=None, batch_size=3, max_iters=6, workers=0, progress=False, log_every=2,
                  lr=1e-3, warmup_iters=2, tile=128, tile_scale=0.5, tile_full_ratio=0.25)
    model_cfg, cfg = run_configs(train_values={**values, "out": str(tmp_path / "a")}, recipe="cpu",
                                 options=ModelOptions(backbone="resnet18", fpn_channels=32, head_convs=1))
    assert (model_cfg.input.min_size, model_cfg.input.max_size) == (128, 128)  # --tile sets the input size
    straight = Trainer.from_config(model_cfg, cfg).run()
    again = {k: v for k, v in values.items() if k != "data"}
    paused = Trainer.from_config(model_cfg, config(data, tmp_path / "b", **again)).run(stop_at=3)
    assert paused["event"] == "paused"
    resumed = Trainer.from_config(model_cfg, config(data, tmp_path / "b", **again, resume="auto")).run()
    assert straight["iteration"] == resumed["iteration"] == 6
    a, b = weights(tmp_path / "a" / "last.pt"), weights(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = load_checkpoint(tmp_path / "a" / "last.pt")
    assert state["tile"] == {"size": [128, 128], "scale": 0.5} and state["input_scale"] == 0.5


def test_deferred_checks_read_the_flags_at_the_log_interval_and_before_a_checkpoint(shared_data, tmp_path):
    """Off the CPU the finite flags are read at the logging interval (here forced on the CPU): a poisoned
    update is skipped on the device at once and counted, or stops the run, when the flags are read."""
    trainer = Trainer.from_config(tiny(3), config(shared_data / "fruit", tmp_path, on_nonfinite="skip", max_iters=6,
                                                  log_every=3))
    trainer.defer_checks = True
    poison_gradient(trainer.model.head.cls_logits.weight, 2, float("nan"))
    batches = iter(trainer.loader)
    trainer.step([next(batches)])
    params = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.step([next(batches)])  # poisoned: skipped on the device, not read yet
    assert trainer.skipped == 0 and len(trainer._pending) == 2
    assert all(torch.equal(params[k], v) for k, v in trainer.model.named_parameters())
    trainer.step([next(batches)])  # update 3: the log interval reads all three flags
    assert trainer._pending == [] and trainer.skipped == 0  # the skip was counted, then a good update followed
    stop = Trainer.from_config(tiny(3), config(shared_data / "fruit", tmp_path / "stop", max_iters=6, log_every=10,
                                               checkpoint_every=2))
    stop.defer_checks = True
    poison_gradient(stop.model.head.cls_logits.weight, 3, float("nan"))
    with pytest.raises(NonFiniteLossError, match="update 2 "):
        stop.run()  # read before the checkpoint of update 4
    assert load_checkpoint(tmp_path / "stop" / "last.pt")["iteration"] == 2


def test_with_ema_checkpoints_hold_the_validated_average_and_resume_bit_identically(shared_data, tmp_path):
    """Evaluation (and best.pt's choice) uses the EMA: inference must read the same weights."""
    data = shared_data / "fruit"
    trainer = Trainer.from_config(tiny(3), config(data, tmp_path / "a", ema=0.9))
    trainer.run()
    saved = load_checkpoint(tmp_path / "a" / "last.pt")
    average, raw = trainer.ema.module.state_dict(), trainer.model.state_dict()
    assert all(torch.equal(saved["model"][k], average[k]) for k in average)
    assert all(torch.equal(saved["train_model"][k], raw[k]) for k in raw)
    assert any(not torch.equal(average[k], raw[k]) for k in raw)  # the two differ: the test can tell them apart
    from fcos.weights.checkpoint import load_model

    model, _ = load_model(tmp_path / "a" / "last.pt")
    assert all(torch.equal(v, average[k]) for k, v in model.state_dict().items())
    Trainer.from_config(tiny(3), config(data, tmp_path / "b", ema=0.9)).run(stop_at=3)
    Trainer.from_config(tiny(3), config(data, tmp_path / "b", ema=0.9, resume="auto")).run()
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    for key in ("model", "train_model"):
        assert all(torch.equal(saved[key][k], b[key][k]) for k in saved[key])


def test_a_tile_trained_run_validates_sliced_by_its_tiles_as_its_checkpoint_evaluates(shared_data, tmp_path):
    """Validation (and so best.pt and --patience) must score the mode the checkpoint is used in: --slice auto."""
    from fcos.engine.run_config import run_configs
    from fcos.evaluation import run_evaluation
    from fcos.model.options import ModelOptions
    from fcos.predict import Predictor
    from fcos.predict.options import InferenceOptions

    data = shared_data / "raccoon"
    values = dict(data=str(data), out=str(tmp_path / "a"), batch_size=3, max_iters=4, workers=0, progress=False,
                  log_every=2, lr=1e-3, warmup_iters=2, tile=128, tile_scale=0.5, tile_full_ratio=0.25)
    model_cfg, cfg = run_configs(train_values=values, recipe="cpu",
                                 options=ModelOptions(backbone="resnet18", fpn_channels=32, head_convs=1))
    # 4 updates leave every score near the prior (0.01): keep them, to compare what the two modes predict
    model_cfg = dataclasses.replace(model_cfg, decode=dataclasses.replace(model_cfg.decode, score_thresh=0.001))
    trainer = Trainer.from_config(model_cfg, cfg)
    summary = trainer.run()
    checkpoint = tmp_path / "a" / "last.pt"
    sliced = Predictor(checkpoint)  # --slice auto: its own tiles
    whole = sliced.with_options(InferenceOptions(slice="none"))
    assert sliced.tiles is not None
    runs = {name: run_evaluation(p.as_detector() if name == "sliced" else p.model, trainer.val_data, progress=False)
            for name, p in (("sliced", sliced), ("whole", whole))}
    assert summary["val"]["AP"] == pytest.approx(runs["sliced"].metrics["AP"], abs=1e-3)

    def top_scores(result):  # each image's best scores: what the two modes predict differs here after 4 updates
        return torch.cat([p["scores"].sort(descending=True).values[:20] for p in result.predictions])

    validated = top_scores(trainer.val_result)
    assert torch.allclose(validated, top_scores(runs["sliced"]), atol=1e-3)
    assert not torch.allclose(validated, top_scores(runs["whole"]), atol=1e-3)


def test_resume_checks_the_network_and_classes_and_takes_the_new_learning_rate(shared_data, tmp_path):
    from fcos.data import load_annotations
    from fcos.weights.checkpoint import CheckpointError

    data = shared_data / "fruit"
    Trainer.from_config(tiny(3), config(data, tmp_path / "a", log_every=1)).run(stop_at=3)
    wider = model_config_for(3, backbone="resnet18", img_size=128, fpn_channels=64, head_convs=1)
    with pytest.raises(CheckpointError, match=r"last\.pt was trained with fpn\.channels 32 \(given 64\); head\.norm_groups 16 \(given 32\): resume it "
                                              r"with its own settings, --config .*config\.yaml --resume"):
        Trainer.from_config(wider, config(data, tmp_path / "a", resume="auto"))
    # the same classes in another order (a VOC copy sorts them): the classifier rows would be relabelled
    from fcos.engine.trainer import _check_same_model

    state = load_checkpoint(tmp_path / "a" / "last.pt")
    names = load_annotations(data, "train").class_names
    with pytest.raises(CheckpointError, match=rf"classes {names} \(given {names[::-1]}\)".replace("[", r"\[")):
        _check_same_model(state, state["config"], names[::-1], tmp_path / "a" / "last.pt")
    _check_same_model(state, {**state["config"], "decode": {"score_thresh": 0.5}}, names, "x")  # not the network
    resumed = Trainer.from_config(tiny(3), config(data, tmp_path / "a", resume="auto", lr=5e-3, log_every=1))
    assert {g["initial_lr"] for g in resumed.optimizer.param_groups} == {5e-3}  # before: the checkpoint's 1e-3
    resumed.run()
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
           if json.loads(x)["event"] == "train"]
    assert lrs[3] > 2e-3  # update 4 at the new rate's schedule (the old one gave < 1e-3)
