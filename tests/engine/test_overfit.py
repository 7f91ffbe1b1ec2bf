"""The whole training path can fit a small real dataset: 8 fruit images, training-set AP50 >= 0.9."""

import json
from pathlib import Path

import pytest

from fcos.engine.train_config import cpu_from_scratch
from fcos.engine.trainer import train
from fcos.model.options import model_config_for


def subset(source: Path, out: Path, count: int) -> Path:
    """A COCO dataset folder with the first `count` training images of `source` (images linked)."""
    data = json.loads((source / "annotations" / "train.json").read_text())
    ids = {im["id"] for im in data["images"][:count]}
    keep = {"images": [im for im in data["images"] if im["id"] in ids],
            "annotations": [a for a in data["annotations"] if a["image_id"] in ids],
            "categories": data["categories"]}
    (out / "annotations").mkdir(parents=True)
    (out / "annotations" / "train.json").write_text(json.dumps(keep))
    (out / "images").symlink_to(source / "images")
    return out


@pytest.mark.slow
def test_overfits_eight_real_images(shared_data, tmp_path):
    data = subset(shared_data / "fruit", tmp_path / "data", 8)
    model = model_config_for(3, backbone="resnet18", img_size=160, fpn_channels=64, head_convs=2)
    cfg = cpu_from_scratch(data=str(data), out=str(tmp_path / "run"), val_split="train", batch_size=8, lr=2e-3,
                           max_iters=120, workers=0, amp=True, hflip=0.0, photometric=False, progress=False,
                           val_images=0)
    summary = train(model, cfg)
    assert summary["iteration"] == 120
    assert summary["val"]["AP50"] >= 0.9, summary["val"]
