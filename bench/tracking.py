"""tracking: one ByteTrack update per frame against one detection per frame (issue 29's budget: tracking
under 5% of detection). Ours is :class:`fcos.track.Tracker.update` on 20 objects doing a random walk (the
shapes video's density); the reference is the detector it would follow: the ``make demo`` architecture
(ResNet-18, 128-channel FPN, 2-conv towers, 160 px input) on one 256 px frame, one thread. The ratio is
detection time over tracking time: above 20 meets the budget."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bench.common import compare_ms, emit
from fcos import FCOS
from fcos.model.options import model_config_for
from fcos.track import Tracker


def run(quick: bool = False) -> list[dict[str, Any]]:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    objects = 20
    centres = rng.uniform(40, 600, (objects, 2))
    tracker = Tracker()

    def track() -> None:
        nonlocal centres
        centres = centres + rng.normal(0, 2, centres.shape)
        boxes = np.concatenate([centres - 15, centres + 15], 1)
        tracker.update({"boxes": boxes, "scores": rng.uniform(0.3, 1.0, objects), "labels": np.arange(objects) % 3})

    for _ in range(30):  # tracks confirmed: the steady state the timing is of
        track()
    model = FCOS(model_config_for(3, backbone="resnet18", img_size=160, fpn_channels=128, head_convs=2)).eval()
    frame = torch.rand(3, 256, 256)

    @torch.inference_mode()
    def detect() -> None:
        model([frame])

    rounds, repeat = (2, 5) if quick else (7, 50)
    ours, reference = compare_ms(track, detect, rounds=rounds, repeat=repeat)
    return [emit("tracking", ours, reference, "ms", {"objects": objects, "detector": "resnet18 fpn128 2-conv 160px",
                                                    "frame": 256, "threads": 1})]
