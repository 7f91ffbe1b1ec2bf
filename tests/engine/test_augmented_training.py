"""Training with the new augmentations: the pipeline sizes images per sample and the model leaves them
as they are, resume stays bit-exact, dropped boxes are counted, a torchvision v2 pipeline plugs in."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from fcos.cli import build_parser, config_values
from fcos.engine.run_config import run_configs
from fcos.engine.train_config import TRAIN_PRESETS, TrainConfig, cpu_from_scratch
from fcos.engine.trainer import Trainer
from fcos.model.options import model_config_for
from fcos.weights.checkpoint import load_checkpoint

AUGMENTED = dict(multi_scale=(128, 160), scale_jitter=(0.3, 2.0), mosaic=0.5, min_visible=0.5)


def tiny(num_classes=3):
    # min 160 / max 267: the official 800/1333 ratio, so the drawn shorter side is rarely capped
    return model_config_for(num_classes, backbone="resnet18", fpn_channels=32, head_convs=1,
                            **{"input.min_size": 160, "input.max_size": 267})


def config(data, out, **changes) -> TrainConfig:
    base = dict(data=str(data), out=str(out), val_split=None, batch_size=4, max_iters=6, workers=0,
                progress=False, log_every=2, lr=1e-3, warmup_iters=2, **AUGMENTED)
    return cpu_from_scratch(**{**base, **changes})


def test_resume_with_every_augmentation_is_bit_identical(shared_data, tmp_path):
    data = shared_data / "fruit"
    straight = Trainer.from_config(tiny(), config(data, tmp_path / "a", max_iters=4)).run()
    Trainer.from_config(tiny(), config(data, tmp_path / "b", max_iters=4)).run(stop_at=2)
    resumed = Trainer.from_config(tiny(), config(data, tmp_path / "b", max_iters=4, resume="auto")).run()
    assert straight["iteration"] == resumed["iteration"] == 4
    a, b = (load_checkpoint(tmp_path / x / "last.pt")["model"] for x in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight["boxes"]["trained"] > 0 and set(straight["boxes"]) == {"trained", "dropped"}


def test_the_model_trains_on_the_pipelines_sizes(shared_data, tmp_path):
    trainer = Trainer.from_config(tiny(), config(shared_data / "fruit", tmp_path, mosaic=0.0, scale_jitter=None))
    assert trainer.model.transform.skip_train_resize
    images, targets = next(iter(trainer.loader))
    shorter = [min(im.shape[-2:]) for im in images]
    assert all(128 <= s <= 160 or max(im.shape[-2:]) == 267 for s, im in zip(shorter, images))
    assert len(set(shorter)) > 1
    seen = []
    trainer.model.transform.register_forward_hook(lambda m, args, out: seen.extend(out[0].image_sizes))
    trainer.step([(images, targets)])
    assert seen == [tuple(im.shape[-2:]) for im in images]  # not resized back to min_size 160


def test_dropped_boxes_are_counted_in_the_summary(shared_data, tmp_path, capsys):
    cfg = config(shared_data / "raccoon", tmp_path, max_iters=2, mosaic=1.0, scale_jitter=(1.5, 2.5), min_visible=1.0)
    summary = Trainer.from_config(tiny(1), cfg).run()
    assert summary["boxes"]["dropped"] > 0  # a crop of a 2x image cuts most of the large raccoon boxes
    out = capsys.readouterr().out
    assert "mosaic of 4 images p=1" in out and f"dropped {summary['boxes']['dropped']} boxes" in out


def test_a_torchvision_v2_pipeline_replaces_the_builtin_augmentations(shared_data, tmp_path, capsys):
    pipeline = v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.RandomIoUCrop(), v2.SanitizeBoundingBoxes()])
    trainer = Trainer.from_config(tiny(), config(shared_data / "fruit", tmp_path, multi_scale=None), transforms=pipeline)
    assert "RandomIoUCrop" in capsys.readouterr().out
    images, targets = next(iter(trainer.loader))
    for image, target in zip(images, targets):
        assert min(image.shape[-2:]) == 160 or max(image.shape[-2:]) == 267  # then sized by the model's rule
        assert (target["boxes"][:, 2:] <= torch.tensor(image.shape[-2:]).flip(0) + 1e-3).all()


def train_config(*flags: str) -> TrainConfig:
    args = build_parser().parse_args(["train", "--data", "d", *flags])
    return run_configs(train_values=config_values(args, TrainConfig), recipe=args.recipe)[1]


def test_augmentation_flags():
    cfg = train_config("--multi-scale", "640-800", "--scale-jitter", "0.1-2", "--mosaic", "0.5", "--min-visible", "0.4")
    assert (cfg.multi_scale, cfg.scale_jitter, cfg.mosaic, cfg.min_visible) == ((640, 800), (0.1, 2.0), 0.5, 0.4)
    assert cfg.augmentation().multi_scale == (640, 800)
    assert train_config("--multi-scale", "none").multi_scale is None
    for recipe in TRAIN_PRESETS:  # the new augmentations are off unless asked for, in every recipe
        default = train_config("--recipe", recipe)
        assert (default.multi_scale, default.scale_jitter, default.mosaic) == (None, None, 0.0)
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    group = next(g for g in train._action_groups if g.title.startswith("augmentation"))
    flags = {opt for action in group._group_actions for opt in action.option_strings}
    assert {"--multi-scale", "--scale-jitter", "--mosaic", "--min-visible", "--hflip", "--photometric"} <= flags


@pytest.mark.parametrize("flags,message", [(["--multi-scale", "800-640"], "LOW <= HIGH"),
                                           (["--mosaic", "2"], r"\[0, 1\]"),
                                           (["--scale-jitter", "big"], "LOW-HIGH")])
def test_bad_augmentation_flags_are_refused_with_the_reason(flags, message, capsys):
    with pytest.raises(SystemExit):
        train_config(*flags)
    import re

    assert re.search(message, capsys.readouterr().err)
