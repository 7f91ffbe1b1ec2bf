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


def test_multiscale_training_draws_per_image_exactly_as_torchvision():
    sizes = (160, 192, 224)
    ours = InputTransform(InputConfig(min_size=224, max_size=1000, train_min_sizes=sizes)).train()
    ref = GeneralizedRCNNTransform(sizes, 1000, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).train()
    images = [torch.rand(3, 100, 100) for _ in range(6)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0]]), "labels": torch.tensor([0])} for _ in images]
    torch.manual_seed(3)
    batch, new_targets = ours(images, [dict(t) for t in targets])
    torch.manual_seed(3)
    ref_batch, ref_targets = ref(images, [dict(t) for t in targets])
    assert batch.image_sizes == ref_batch.image_sizes
    assert len({s[0] for s in batch.image_sizes}) > 1  # drawn per image, not per batch
    torch.testing.assert_close(batch.tensor, ref_batch.tensors)
    for a, b in zip(new_targets, ref_targets):
        torch.testing.assert_close(a["boxes"], b["boxes"])
    ours.eval()
    assert ours([torch.rand(3, 100, 100)])[0].image_sizes[0] == (224, 224)


def test_skip_train_resize_only_normalises_and_pads_in_training():
    config = InputConfig(min_size=200, max_size=1000, train_min_sizes=(160, 192))
    t = InputTransform(config, skip_train_resize=True).train()
    image = torch.rand(3, 70, 90)
    state = torch.get_rng_state()
    batch, targets = t([image], [{"boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0]]), "labels": torch.tensor([0])}])
    assert torch.equal(torch.get_rng_state(), state)  # no size drawn
    assert batch.image_sizes == [(70, 90)] and batch.tensor.shape == (1, 3, 96, 96)
    torch.testing.assert_close(batch.tensor[0, :, :70, :90], (image - t.mean) / t.std)
    assert targets[0]["boxes"].tolist() == [[1.0, 2.0, 30.0, 40.0]]
    t.eval()  # inference still resizes by the rule
    assert t([image])[0].image_sizes == [(200, 257)]
