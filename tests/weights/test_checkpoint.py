"""Checkpoints: atomic writes, weights_only loading, clear errors, model round trip."""

import pytest
import torch

from fcos import FCOS, official
from fcos.weights.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    model_checkpoint,
    save_checkpoint,
)


def small_model(**changes):
    return FCOS(official(num_classes=3, backbone="resnet18", **{"fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1, **changes}))


def test_round_trip_restores_weights_config_and_classes(tmp_path):
    model = small_model(**{"decode.score_thresh": 0.3})
    save_checkpoint(model_checkpoint(model, ["a", "b", "c"], [5, 7, 9]), tmp_path / "m.pt")
    loaded, state = load_model(tmp_path / "m.pt")
    assert not loaded.training and loaded.config.decode.score_thresh == 0.3
    assert state["class_names"] == ["a", "b", "c"] and state["category_ids"] == [5, 7, 9]
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_frozen_backbone_from_imagenet_file_reloads_without_the_file(tmp_path):
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    model = small_model(**{"backbone.weights": str(tmp_path / "r18.pth")})
    save_checkpoint(model_checkpoint(model, ["a", "b", "c"]), tmp_path / "m.pt")
    (tmp_path / "r18.pth").unlink()
    loaded, _ = load_model(tmp_path / "m.pt")
    assert loaded.config.backbone.norm == "frozen" and loaded.config.backbone.frozen_stages == 2


def test_pickled_payload_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"format": "fcos-checkpoint", "model": {}, "config": {}, "x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refusing to load .*pickled Python objects"):
        load_checkpoint(tmp_path / "evil.pt")


def test_corrupt_missing_and_foreign_files(tmp_path):
    model = small_model()
    path = save_checkpoint(model_checkpoint(model, ["a", "b", "c"]), tmp_path / "m.pt")
    (tmp_path / "half.pt").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "half.pt")
    # not torch.save's formats at all: named as such, not as "unsafe pickled objects" (the unpickler's reading)
    (tmp_path / "text.pt").write_text("garbage\n")
    (tmp_path / "photo.pt").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))  # a JPEG's start
    for name in ("text.pt", "photo.pt"):
        with pytest.raises(CheckpointError, match=rf"{name} is not a PyTorch checkpoint \(not the zip archive"):
            load_checkpoint(tmp_path / name)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.pt is empty \(0 bytes\)"):
        load_checkpoint(tmp_path / "empty.pt")
    legacy = tmp_path / "legacy.pt"  # torch's pre-1.6 pickle format still loads
    torch.save({**model_checkpoint(model, ["a", "b", "c"]), "format": "fcos-checkpoint"}, legacy,
               _use_new_zipfile_serialization=False)
    assert load_checkpoint(legacy)["format"] == "fcos-checkpoint"
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="not an fcos checkpoint"):
        load_checkpoint(tmp_path / "bare.pt")


def test_interrupted_write_keeps_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint({"model": {"w": torch.ones(2)}, "config": {}}, tmp_path / "last.pt")

    def explode(*args, **kwargs):
        raise KeyboardInterrupt  # killed half-way through serialisation

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"model": {"w": torch.zeros(2)}, "config": {}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
