"""Conv3x3: a drop-in nn.Conv2d whose algorithm (direct / Winograd) is chosen per input."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcos import FCOS, official
from fcos.model import conv as conv_module
from fcos.model.conv import AUTO_MIN_POINTS, Conv3x3
from fcos.ops import winograd


def test_same_parameters_and_state_dict_as_conv2d():
    layer, plain = Conv3x3(8, 16, "winograd"), nn.Conv2d(8, 16, 3, padding=1)
    assert isinstance(layer, nn.Conv2d)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(2, 8, 10, 7)
    torch.testing.assert_close(layer(x), plain(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("algorithm", "size", "dtype", "expected"),
    [
        ("direct", 64, torch.float32, False),
        ("winograd", 4, torch.float32, True),
        ("winograd", 64, torch.bfloat16, False),
        ("auto", 32, torch.float32, True),  # 32 x 32 = AUTO_MIN_POINTS
        ("auto", 31, torch.float32, False),
    ],
)
def test_algorithm_choice(algorithm, size, dtype, expected):
    assert AUTO_MIN_POINTS == 32 * 32
    layer = Conv3x3(4, 4, algorithm).to(dtype)
    assert layer.uses_winograd(torch.zeros(1, 4, size, size, dtype=dtype)) is expected


def test_autocast_and_tracing_run_direct():
    layer = Conv3x3(4, 4, "winograd")
    x = torch.randn(1, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not layer.uses_winograd(x) and layer(x).dtype == torch.bfloat16
    graph = str(torch.jit.trace(layer, x).graph)
    assert "aten::_convolution" in graph and "aten::bmm" not in graph


def test_levels_share_one_filter_transform(monkeypatch):
    calls = []
    original = winograd.transform_filter
    monkeypatch.setattr(conv_module.winograd, "transform_filter", lambda w: calls.append(1) or original(w))
    layer = Conv3x3(6, 5, "winograd")
    xs = [torch.randn(2, 6, s, s + 1) for s in (12, 6, 3, 1)]
    outs = layer.forward_levels(xs)
    assert len(calls) == 1
    for x, out in zip(xs, outs, strict=True):
        torch.testing.assert_close(out, F.conv2d(x, layer.weight, layer.bias, padding=1), rtol=1e-5, atol=1e-5)


def test_detector_with_winograd_matches_direct():
    """Same weights, same batch: losses within 1e-5, gradients and raw outputs within fp32 noise."""
    config = official(num_classes=4, backbone="resnet18", **{"input.min_size": 160, "input.max_size": 256,
                                                              "fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 2})
    direct, wino = FCOS(replace(config, conv3x3="direct")), FCOS(replace(config, conv3x3="winograd"))
    wino.load_state_dict(direct.state_dict())
    images = [torch.rand(3, 160, 192), torch.rand(3, 170, 160)]
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 90.0, 120.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[30.0, 5.0, 150.0, 100.0], [0.0, 0.0, 40.0, 40.0]]), "labels": torch.tensor([0, 3])}]
    losses = [model.train()(images, targets) for model in (direct, wino)]
    for key in losses[0]:
        torch.testing.assert_close(losses[1][key], losses[0][key], rtol=1e-5, atol=0)
    for loss in losses:
        sum(loss.values()).backward()
    grads = dict(direct.named_parameters())
    for name, param in wino.named_parameters():
        if param.grad is not None and "head" in name:
            ref = grads[name].grad
            assert float((param.grad - ref).norm()) <= 1e-3 * float(ref.norm()) + 1e-7, name
    with torch.inference_mode():
        outs = [model.eval()(images) for model in (direct, wino)]
    for a, b in zip(*outs, strict=True):
        assert torch.equal(a["labels"], b["labels"])
        torch.testing.assert_close(b["boxes"], a["boxes"], rtol=0, atol=1e-2)


def test_onnx_trace_writes_winograd_operators_on_large_levels_only(tmp_path):
    # Traced for export, "auto" spells levels of >= AUTO_MIN_POINTS points as Winograd operators
    # (depthwise Conv transforms, MatMul, DepthToSpace; no Pad node) and smaller ones as one Conv;
    # ONNX Runtime then gives conv2d's values, for a dynamic batch too.
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    layer = Conv3x3(8, 16, "auto").eval()

    class Levels(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, a, b):
            return tuple(self.layer.forward_levels([a, b]))

    big, small = torch.randn(2, 8, 36, 30), torch.randn(2, 8, 8, 8)  # 1080 and 64 points
    path = str(tmp_path / "levels.onnx")
    torch.onnx.export(Levels(), (big, small), path, dynamo=False, opset_version=17, input_names=["a", "b"],
                      dynamic_axes={"a": {0: "n"}, "b": {0: "n"}})
    ops = [node.op_type for node in onnx.load(path).graph.node]
    assert ops.count("DepthToSpace") == 1 and "Pad" not in ops
    assert ops.count("Conv") == 6 * 7 + 1  # the big level's transforms (6 along H, 36 along W), the small level's
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x_big, x_small = torch.randn(3, 8, 36, 30), torch.randn(3, 8, 8, 8)  # another batch size
    out_big, out_small = session.run(None, {"a": x_big.numpy(), "b": x_small.numpy()})
    with torch.no_grad():
        for ours, x in ((out_big, x_big), (out_small, x_small)):
            ref = nn.functional.conv2d(x, layer.weight, layer.bias, padding=1)
            assert float((torch.from_numpy(ours) - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    layer.algorithm = "direct"
    torch.onnx.export(Levels(), (big, small), path, dynamo=False, opset_version=17)
    assert [node.op_type for node in onnx.load(path).graph.node].count("DepthToSpace") == 0
