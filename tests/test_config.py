import dataclasses
import json
import math

import pytest

from fcos import config as C


def test_presets_differ_where_torchvision_differs_from_official():
    off, tv = C.official(), C.torchvision_preset()
    assert off.assign.center_sampling_radius == tv.assign.center_sampling_radius == 1.5
    assert off.loss.box_weight_by_centerness and not tv.loss.box_weight_by_centerness
    assert off.head.learnable_scales and not tv.head.learnable_scales
    assert off.points.offset == 0.5 and tv.points.offset == 0.0
    assert (off.decode.score_thresh, tv.decode.score_thresh) == (0.05, 0.2)
    assert tv.num_classes == 91 and off.num_classes == 80


def test_dict_round_trip_through_json():
    cfg = C.official(num_classes=3, backbone="resnet18", **{"head.num_convs": 2, "input.train_min_sizes": (320, 352)})
    text = json.dumps(cfg.to_dict())
    back = C.FCOSConfig.from_dict(json.loads(text))
    assert back == cfg
    assert math.isinf(back.assign.size_ranges[-1][1])


def test_override_and_errors():
    cfg = C.override(C.official(), **{"fpn.channels": 128, "num_classes": 5})
    assert cfg.fpn.channels == 128 and cfg.num_classes == 5
    with pytest.raises(ValueError, match="unknown preset"):
        C.preset("yolo")
    with pytest.raises(ValueError, match="unknown FCOSConfig"):
        C.FCOSConfig.from_dict({"nope": 1})
    with pytest.raises(ValueError, match="multiple of head.norm_groups"):
        C.override(C.official(), **{"fpn.channels": 100})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.num_classes = 3  # type: ignore[misc]
