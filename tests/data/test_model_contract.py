"""The samples this package produces are what the model consumes."""

import numpy as np
import torch

from fcos.config import official
from fcos.data import DetectionDataset, Resize, build_loader, generate_shapes, load_annotations
from fcos.model.detector import FCOS
from fcos.ops.sizing import scale_boxes


def test_a_loader_batch_trains_and_boxes_map_back_to_disk_pixels(tmp_path):
    train = load_annotations(generate_shapes(tmp_path, num_train=2, num_val=0, image_size=96), "train")
    config = official(
        num_classes=train.num_classes, backbone="resnet18", **{"input.min_size": 128, "input.max_size": 128}
    )
    # Resizing in the loader with the model's own sizes makes the model's resize the identity.
    dataset = DetectionDataset(train, Resize(config.input.min_size, config.input.max_size))
    images, targets = next(iter(build_loader(dataset, batch_size=2, shuffle=False, workers=0)))
    assert [tuple(im.shape) for im in images] == [(3, 128, 128)] * 2
    losses = FCOS(config).train()(images, targets)
    assert set(losses) >= {"classification", "bbox_regression"} and all(
        torch.isfinite(v) for v in losses.values()
    )
    for image, target, record in zip(images, targets, train.records, strict=True):
        back = scale_boxes(target["boxes"], image.shape[-2:], target["orig_size"].tolist())
        np.testing.assert_allclose(back.numpy(), record.boxes, atol=1e-3)
