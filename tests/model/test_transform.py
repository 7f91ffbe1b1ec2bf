import pytest
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from fcos.config import InputConfig
from fcos.model.transform import InputTransform
from fcos.ops.sizing import resized_shape, scale_boxes


@pytest.mark.parametrize("size", [(480, 640), (333, 222), (1000, 200), (800, 1333), (17, 29)])
def test_resize_normalize_pad_equal_torchvision(size):
    images = [torch.rand(3, *size), torch.rand(3, 300, 350)]
    targets = [{"boxes": torch.tensor([[1.0, 2, 30, 40]]), "labels": torch.tensor([1])}] * 2
    ref = GeneralizedRCNNTransform(512, 768, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    ours = InputTransform(InputConfig(min_size=512, max_size=768))
    ref_batch, ref_targets = ref(images, [dict(t) for t in targets])
    batch, new_targets = ours(images, [dict(t) for t in targets])
    assert batch.image_sizes == ref_batch.image_sizes
    assert batch.tensor.shape == ref_batch.tensors.shape
    torch.testing.assert_close(batch.tensor, ref_batch.tensors)
    for a, b in zip(new_targets, ref_targets):
        torch.testing.assert_close(a["boxes"], b["boxes"])


def test_postprocess_maps_boxes_back_to_original_pixels():
    h, w = resized_shape(300, 450, 600, 1000)
    assert (h, w) == (600, 900)
    boxes = torch.tensor([[60.0, 30.0, 900.0, 600.0]])
    back = scale_boxes(boxes, (h, w), (300, 450))
    torch.testing.assert_close(back, torch.tensor([[30.0, 15.0, 450.0, 300.0]]))
    dets = InputTransform.postprocess([{"boxes": boxes.clone()}], [(h, w)], [(300, 450)])
    torch.testing.assert_close(dets[0]["boxes"], back)


def test_multiscale_training_picks_from_train_sizes():
    t = InputTransform(InputConfig(min_size=200, max_size=1000, train_min_sizes=(160, 192))).train()
    seen = {t([torch.rand(3, 100, 100)])[0].image_sizes[0][0] for _ in range(30)}
    assert seen == {160, 192}
    t.eval()
    assert t([torch.rand(3, 100, 100)])[0].image_sizes[0] == (200, 200)
