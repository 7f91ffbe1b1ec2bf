"""ONNX export: valid files with metadata, the graph's decoding equals the PyTorch decoder, and the
onnxruntime predictor gives the PyTorch predictor's detections on real images."""

import importlib.util
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from deploy_helpers import CLASS_NAMES, assert_same_detections, make_checkpoint, real_images
from fcos.cli import main
from fcos.config import FCOSConfig
from fcos.export import (
    DEFAULT_OPSET,
    DetectorGraph,
    export,
    export_onnx,
    input_shape,
    prepare_inputs,
    read_metadata,
)
from fcos.export.graph import fold_backbone_convs
from fcos.model.conv import Conv3x3
from fcos.ops.sizing import scale_boxes
from fcos.predict import Predictor, read_image, to_tensor
from fcos.structures import ImageBatch
from fcos.weights.checkpoint import load_model


@pytest.fixture(scope="module")
def exports(checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    return {
        "default": export_onnx(checkpoint, folder / "default.onnx"),
        "no_nms": export_onnx(checkpoint, folder / "no_nms.onnx", nms=False),
        "dynamic": export_onnx(checkpoint, folder / "dynamic.onnx", dynamic=True),
        "fixed": export_onnx(checkpoint, folder / "fixed.onnx", img_size=(320, 320)),
    }


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_files_pass_the_checker_and_carry_metadata(exports, checkpoint):
    model, _ = load_model(checkpoint)
    for name, path in exports.items():
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        assert {o.domain: o.version for o in proto.opset_import}[""] == DEFAULT_OPSET == 17
        meta = read_metadata(proto)
        assert meta["class_names"] == CLASS_NAMES and meta["category_ids"] == [11, 22, 33]
        config = FCOSConfig.from_dict(meta["config"])
        assert config.input == model.config.input and config.decode == model.config.decode
        assert config.num_classes == 3 and meta["backbone"] == "resnet18"
        assert meta["nms"] is (name != "no_nms")
        prep = meta["preprocessing"]
        assert prep["img_size"] == ([320, 320] if name == "fixed" else None)
        assert prep["dynamic_batch"] is (name == "dynamic")
        assert prep["mean"] == list(model.config.input.mean) and prep["size_divisible"] == 32
        ops = {node.op_type for node in proto.graph.node}
        assert ("NonMaxSuppression" in ops) is (name != "no_nms")


def test_input_and_output_shapes(exports):
    shapes = {}
    for name, path in exports.items():
        graph = onnx.load(str(path)).graph
        shapes[name] = {v.name: dims(v) for v in [*graph.input, *graph.output]}
    assert shapes["default"] == {
        "images": [1, 3, "height", "width"], "image_sizes": [1, 2],
        "boxes": [1, 100, 4], "scores": [1, 100], "labels": [1, 100], "num_detections": [1],
    }
    assert shapes["dynamic"]["images"] == ["batch", 3, "height", "width"] and shapes["dynamic"]["boxes"] == ["batch", 100, 4]
    assert shapes["fixed"]["images"] == [1, 3, 320, 320]
    assert shapes["no_nms"]["boxes"] == [1, 5000, 4] and "num_detections" not in shapes["no_nms"]


def test_graph_decoding_equals_the_pytorch_decoder_in_eager_mode(tmp_path):
    # The export module run eagerly (no ONNX) against the model, for both presets' point/score rules.
    for preset_changes in ({}, {"points.offset": 0.0, "points.step_from_shape": True, "decode.threshold_on": "score"}):
        model, _ = load_model(make_checkpoint(tmp_path / "m.pt", **preset_changes))
        image = torch.rand(3, 301, 433)
        with torch.no_grad():
            (expected,) = model([image])
            x, sizes = prepare_inputs([image], model.config.input)
            boxes, scores, labels, count = DetectorGraph(model).eval()(x, sizes)
        n = int(count[0])
        got = {"boxes": scale_boxes(boxes[0, :n], sizes[0].int().tolist(), (301, 433)).numpy(),
               "scores": scores[0, :n].numpy(), "labels": labels[0, :n].numpy()}
        assert n > 10 and (scores[0, n:] == 0).all() and (labels[0, n:] == -1).all()
        assert_same_detections(got, {k: v.numpy() for k, v in expected.items()}, box_tol=1e-3, score_tol=1e-6)


def test_onnxruntime_predictor_matches_pytorch_on_20_real_images(exports, checkpoint, shared_data):
    torch_predictor, onnx_predictor = Predictor(checkpoint), Predictor(exports["default"])
    assert onnx_predictor.backend == "onnxruntime" and onnx_predictor.class_names == CLASS_NAMES
    total = 0
    for path in real_images(shared_data, 20):
        image = read_image(path)
        (a,), (b,) = torch_predictor(image), onnx_predictor(image)
        assert_same_detections(a, b)
        assert b["names"] == [CLASS_NAMES[i] for i in b["labels"]]
        total += len(a["scores"])
    assert total >= 20 * 50  # the untrained fixture model detects plenty: the comparison is not vacuous


def test_no_nms_export_with_host_nms_matches_pytorch(exports, checkpoint, shared_data):
    torch_predictor, onnx_predictor = Predictor(checkpoint), Predictor(exports["no_nms"])
    for path in real_images(shared_data, 4):
        image = read_image(path)
        assert_same_detections(torch_predictor(image)[0], onnx_predictor(image)[0])
    # Raw candidate outputs: unused rows are marked, real ones lie inside the image.
    x, sizes = prepare_inputs([to_tensor(read_image(path))], onnx_predictor.input_config)
    boxes, scores, labels = onnx_predictor.exported.run(x.numpy(), sizes.numpy())
    assert boxes.shape == (1, 5000, 4) and (scores[labels < 0] == 0).all() and (labels >= 0).sum() > 100
    assert (boxes[..., 2] <= sizes[0, 1].item()).all() and (boxes[..., 3] <= sizes[0, 0].item()).all()


def test_dynamic_batch_equals_pytorch_and_each_image_alone(exports, checkpoint):
    model, _ = load_model(checkpoint)
    images = [torch.rand(3, 240, 330), torch.rand(3, 400, 300)]
    x, sizes = prepare_inputs(images, model.config.input)
    assert x.shape[0] == 2 and x.shape[-2] % 32 == 0 and x.shape[-1] % 32 == 0
    session = ort.InferenceSession(str(exports["dynamic"]), providers=["CPUExecutionProvider"])
    batched = session.run(None, {"images": x.numpy(), "image_sizes": sizes.numpy()})
    with torch.no_grad():
        eager = [t.numpy() for t in DetectorGraph(model).eval()(x, sizes)]
    for i in range(2):
        n = int(batched[3][i])
        assert n == int(eager[3][i]) > 10
        alone = session.run(None, {"images": x[i : i + 1].numpy(), "image_sizes": sizes[i : i + 1].numpy()})
        for out in (eager, alone):
            j = 0 if out is alone else i
            assert_same_detections(
                {"boxes": batched[0][i, :n], "scores": batched[1][i, :n], "labels": batched[2][i, :n]},
                {"boxes": out[0][j, :n], "scores": out[1][j, :n], "labels": out[2][j, :n]},
            )


def test_torchvision_preset_exports_with_parity(tmp_path):
    # torchvision's point rule: offset 0 and steps from the padded size // feature size (traced, not constant).
    changes = {"points.offset": 0.0, "points.step_from_shape": True, "decode.threshold_on": "score",
               "head.learnable_scales": False}
    checkpoint = make_checkpoint(tmp_path / "tv.pt", **changes)
    torch_predictor, onnx_predictor = Predictor(checkpoint), Predictor(export_onnx(checkpoint, tmp_path / "tv.onnx"))
    for shape in ((3, 300, 451), (3, 480, 200)):  # the second pads to 320 x 160: P7 steps of 106 x 80 px
        image = torch.rand(*shape)
        assert_same_detections(torch_predictor(image)[0], onnx_predictor(image)[0])


def torch_on_padded(model, image, img_size):
    """The PyTorch model on exactly the padded input a fixed-size graph sees."""
    x, sizes = prepare_inputs([image], model.config.input, img_size)
    resized = (int(sizes[0, 0]), int(sizes[0, 1]))
    inside = torch.zeros(1, 1, *x.shape[-2:], dtype=torch.bool)
    inside[..., : resized[0], : resized[1]] = True
    normalized = torch.where(inside, (x - model.transform.mean) / model.transform.std, 0.0)
    batch = ImageBatch(normalized, [resized], [tuple(image.shape[-2:])])
    with torch.no_grad():
        outputs = model.forward_batch(batch)
        detections = model.decoder(outputs, model.points(outputs, x.shape[-2:]), batch.image_sizes)
    (det,) = model.transform.postprocess(detections, batch.image_sizes, batch.original_sizes)
    return {k: v.numpy() for k, v in det.items()}


def test_fixed_size_export_matches_pytorch_on_the_same_padding(exports, checkpoint, shared_data):
    model, _ = load_model(checkpoint)
    predictor = Predictor(exports["fixed"])
    for path in real_images(shared_data, 4):
        image = to_tensor(read_image(path))
        assert_same_detections(torch_on_padded(model, image, (320, 320)), predictor(image)[0])


def _depth_to_space_nodes(path) -> int:
    return [node.op_type for node in onnx.load(str(path)).graph.node].count("DepthToSpace")


def test_conv3x3_algorithm_of_the_graph(exports, checkpoint, shared_data, tmp_path):
    # Fixed-size fp32 exports write the big levels' 3x3 convolutions as Winograd operators ("auto", one
    # DepthToSpace per such level and conv); "direct" keeps Conv nodes; both give the same detections.
    # Dynamic sizes cannot lay out tiles: those exports stay direct, and asking for Winograd is an error.
    assert read_metadata(exports["fixed"])["conv3x3"] == "auto"
    # P3 (40x40) only: its FPN output conv, the two towers' one conv each, cls_logits
    assert _depth_to_space_nodes(exports["fixed"]) == 4
    assert read_metadata(exports["default"])["conv3x3"] == "direct" and _depth_to_space_nodes(exports["default"]) == 0
    direct = export_onnx(checkpoint, tmp_path / "direct.onnx", img_size=(320, 320), conv3x3="direct")
    assert read_metadata(direct)["conv3x3"] == "direct" and _depth_to_space_nodes(direct) == 0
    predictors = [Predictor(exports["fixed"])]
    if importlib.util.find_spec("openvino"):  # the same Winograd graph in OpenVINO (an optional extra)
        predictors.append(Predictor(export(exports["fixed"], tmp_path / "fixed.xml", "openvino")))
    plain = Predictor(direct)
    for path in real_images(shared_data, 4):
        image = read_image(path)
        for predictor in predictors:
            assert_same_detections(plain(image)[0], predictor(image)[0])
    with pytest.raises(ValueError, match="fixed-size"):
        export_onnx(checkpoint, tmp_path / "bad.onnx", conv3x3="winograd")
    with pytest.raises(ValueError, match="conv3x3 must be"):
        export_onnx(checkpoint, tmp_path / "bad.onnx", img_size=(320, 320), conv3x3="fast")


def test_backbone_convs_fold_with_their_batchnorm(checkpoint):
    # For Winograd in the graph, a ResNet block's 3x3 stride-1 conv (>= 256 inputs) and its BatchNorm
    # become one Conv3x3 with bias; the backbone computes the same features.
    model, _ = load_model(checkpoint)  # resnet18: layer3 and layer4 blocks
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        before = model.backbone(x)
        assert fold_backbone_convs(model.backbone, "auto") == 6  # layer3: 1 + 2, layer4: 1 + 2 (3x3 s1 convs)
        after = model.backbone(x)
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    block = model.backbone.trunk.get_submodule("layer3.1")
    assert isinstance(block.conv1, Conv3x3) and isinstance(block.bn1, torch.nn.Identity) and block.conv1.algorithm == "auto"
    assert type(model.backbone.trunk.get_submodule("layer3.0").conv1) is torch.nn.Conv2d  # stride 2: kept
    assert type(model.backbone.trunk.get_submodule("layer2.1").conv1) is torch.nn.Conv2d  # 128 inputs: kept


def test_fold_leaves_what_it_cannot_prove_equivalent():
    # Only torchvision's ResNet blocks (they apply bnN right after convN), only exact BatchNorm types
    # (a subclass such as timm's BatchNormAct2d also applies an activation).
    from torchvision.models.resnet import BasicBlock

    class NormAct(torch.nn.BatchNorm2d):
        def forward(self, x):
            return torch.relu(super().forward(x))

    class LookAlike(torch.nn.Module):  # same names, unknown forward
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False), torch.nn.BatchNorm2d(256)

    block = BasicBlock(256, 256).eval()
    block.bn2 = NormAct(256).eval()
    assert fold_backbone_convs(torch.nn.Sequential(block, LookAlike().eval()), "auto") == 1
    assert isinstance(block.conv1, Conv3x3) and type(block.conv2) is torch.nn.Conv2d and isinstance(block.bn2, NormAct)


def test_fixed_size_resize_rule():
    cfg = FCOSConfig().input  # min 800, max 1333
    assert input_shape(480, 640, cfg) == (800, 1066)
    assert input_shape(480, 640, cfg, (800, 1088)) == (800, 1066)  # fits: the model's own rule
    assert input_shape(480, 640, cfg, (512, 512)) == (384, 512)  # scaled down to fit


def test_invalid_img_size_is_refused(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="multiples of 32"):
        export_onnx(checkpoint, tmp_path / "bad.onnx", img_size=(300, 320))
    assert not list(tmp_path.glob("*.onnx*"))


def test_an_output_path_that_cannot_be_written_is_named_before_the_export(checkpoint, tmp_path, capsys):
    (tmp_path / "folder.onnx").mkdir()
    assert main(["export", "--weights", str(checkpoint), "--out", str(tmp_path / "folder.onnx")]) == 1
    assert capsys.readouterr().err == f"error: cannot write {tmp_path / 'folder.onnx'}: it is a folder; give a file path\n"
    assert [p.name for p in tmp_path.iterdir()] == ["folder.onnx"]  # nothing staged beside it


def test_export_cli(checkpoint, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", "--weights", str(checkpoint), "--out", str(out), "--no-nms", "--img-size", "256", "320",
                 "--conv3x3", "direct"]) == 0
    assert str(out) in capsys.readouterr().out
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # readable by a service's user, as other files written
    meta = read_metadata(out)
    assert meta["nms"] is False and meta["preprocessing"]["img_size"] == [256, 320] and meta["conv3x3"] == "direct"
    detections = Predictor(out)(np.zeros((200, 300, 3), dtype=np.uint8))[0]
    assert detections["boxes"].shape[1] == 4


@pytest.mark.parametrize("backbone", ["mobilenet_v3_large", "convnext_tiny", "timm:mobilenetv3_small_050"])
def test_other_backbone_families_export_with_onnxruntime_parity(backbone, shared_data, tmp_path):
    # Hardswish and squeeze-excitation (MobileNetV3), LayerNorm over channels and GELU (ConvNeXt), timm's
    # fused BatchNorm + activation: all traced into the graph; onnxruntime gives PyTorch's detections.
    if backbone.startswith("timm:"):
        pytest.importorskip("timm")
    checkpoint = make_checkpoint(tmp_path / "m.pt", **{"backbone.name": backbone})
    onnx_path = export_onnx(checkpoint, tmp_path / "m.onnx")
    assert read_metadata(onnx_path)["backbone"] == backbone
    torch_predictor, onnx_predictor = Predictor(checkpoint), Predictor(onnx_path)
    total = 0
    for path in real_images(shared_data, 2):
        image = read_image(path)
        (a,), (b,) = torch_predictor(image), onnx_predictor(image)
        assert_same_detections(a, b, box_tol=0.5, score_tol=1e-4)
        total += len(a["scores"])
    assert total >= 20


@pytest.mark.parametrize("merge", ["nms", "nmm"])
def test_sliced_prediction_of_exported_models_equals_the_checkpoints(merge, shared_data, tmp_path):
    # Tiles of 256 px reach the tiny model (input 256..320) unresized: a batch-1 graph runs them one by
    # one, a dynamic-batch graph four at a time, OpenVINO's fixed 256 x 256 graph takes them as they are.
    # Eight boxes a tile keep a few hundred of the untrained model's boxes: with thousands, greedy
    # merging chains through boxes whose overlap sits at the threshold within the runtimes' rounding.
    from fcos.export import export
    from fcos.predict.options import InferenceOptions

    checkpoint = make_checkpoint(tmp_path / "sparse.pt", **{"decode.max_detections": 8})
    options = InferenceOptions(slice=256, full_image=False, slice_batch=4, merge=merge)
    image = read_image(shared_data / "raccoon" / "images" / "raccoon-183.jpg")  # 2000 x 1333: 48 tiles
    reference = Predictor(checkpoint, options=options)(image)[0]
    assert 50 < len(reference["boxes"]) < 1000
    files = [export_onnx(checkpoint, tmp_path / "one.onnx"), export_onnx(checkpoint, tmp_path / "dyn.onnx", dynamic=True)]
    if importlib.util.find_spec("openvino"):
        files.append(export(checkpoint, tmp_path / "fixed.xml", "openvino", img_size=(256, 256)))
    for path in files:
        assert_same_detections(Predictor(path, options=options)(image)[0], reference)
