"""torch.compile of the detector: no graph breaks, bounded recompilations, the same losses and detections."""

import pytest
import torch
import torch._dynamo as dynamo
from torch._dynamo.testing import CompileCounter

from fcos import FCOS, official
from fcos.model.assign import stack_targets
from fcos.model.compiled import CompileOptions, bucket_pad, bucket_size, default_mode


def tiny_model(size=256):
    # 256 px: P3 is 32x32, where the eager model runs Winograd: the compiled one must not trace it.
    cfg = official(num_classes=3, backbone="resnet18", **{"input.min_size": size, "input.max_size": size,
                                                           "fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1})
    return FCOS(cfg)


def sample(sizes, boxes=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, h, w, generator=gen) for h, w in sizes]
    targets = []
    for h, w in sizes:
        xy = torch.rand(boxes, 2, generator=gen) * torch.tensor([w / 2, h / 2])
        wh = torch.rand(boxes, 2, generator=gen) * torch.tensor([w / 2, h / 2]) + 8
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(0, 3, (boxes,), generator=gen)})
    return images, targets


def test_training_forward_and_inference_trace_without_graph_breaks():
    model = tiny_model().train()
    images, targets = sample([(256, 256), (256, 224)])
    batch, targets = model.transform(images, targets)
    boxes, labels, valid = stack_targets(targets)
    train = dynamo.explain(FCOS.train_forward)(model, batch.tensor, boxes, labels, valid)
    assert train.graph_break_count == 0, [r.reason for r in train.break_reasons]
    assert train.graph_count == 1
    model.eval()
    infer = dynamo.explain(FCOS.network)(model, batch.tensor)
    assert infer.graph_break_count == 0, [r.reason for r in infer.break_reasons]


@pytest.mark.slow
def test_compiled_losses_and_detections_equal_eager():
    torch.manual_seed(0)
    model = tiny_model().train()
    images, targets = sample([(256, 256), (256, 256)])  # already a multiple of the bucket: same input
    eager = model(images, targets)
    model.compile(backend="aot_eager")  # the captured graph with autograd, without inductor's compile time
    compiled = model(images, targets)
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-6)
    stats = {k: float(v) for k, v in model.last_stats.items()}
    assert stats["num_positive"] > 0
    model.eval()
    with torch.no_grad():
        ours = model(images)
        model.compile_options = None
        reference = model(images)
    for o, r in zip(ours, reference, strict=True):
        assert torch.equal(o["labels"], r["labels"])
        torch.testing.assert_close(o["boxes"], r["boxes"], rtol=0, atol=1e-2)


@pytest.mark.slow
def test_multi_scale_training_recompiles_a_bounded_number_of_times():
    dynamo.reset()
    counter = CompileCounter()
    model = tiny_model(320).train().compile(backend=counter)
    sizes = [(224, 288), (256, 320), (288, 256), (320, 320), (240, 304), (272, 224), (304, 288), (224, 224)]
    for i, size in enumerate(sizes):  # an epoch of multi-scale batches: 8 sizes
        images, targets = sample([size, size], seed=i)
        sum(model(images, targets).values()).backward()
    # Static for the first shape, one shape-generic graph from the second on (dynamo's automatic dynamic).
    assert counter.frame_count <= 3, counter.frame_count


def test_bucket_padding_and_default_mode():
    # 8 sizes per octave: steps of 16 px in [128, 256), 32 in [256, 512), 64 in [512, 1024), 128 above
    assert [bucket_size(s, 8) for s in (160, 200, 256, 300, 640, 800, 1088, 1333)] == [
        160, 208, 256, 320, 640, 832, 1152, 1408]
    assert bucket_size(200, 0) == 200
    x = torch.rand(2, 3, 200, 256).contiguous(memory_format=torch.channels_last)
    padded = bucket_pad(x, 8)
    assert padded.shape[-2:] == (208, 256) and torch.equal(padded[..., :200, :], x)
    assert padded.is_contiguous(memory_format=torch.channels_last)
    assert bucket_pad(x, 0) is x
    assert default_mode("cuda", fixed_size=True) == "reduce-overhead"
    assert default_mode("cpu", fixed_size=True) == default_mode("cuda", fixed_size=False) == "default"
    assert CompileOptions().mode == "default"
