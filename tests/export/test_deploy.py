"""Deployment formats beyond fp32 ONNX: OpenVINO IR and int8 (both runtimes). Each format x precision
round-trips (export, load, predict, serve); fp32 OpenVINO equals PyTorch on real images within the ONNX
parity tolerances; int8 stays close and its calibration is deterministic; bad files fail clearly;
`fcos eval` and `fcos benchmark` run exported models through the same evaluation code."""

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient

from deploy_helpers import CLASS_NAMES, assert_same_detections, real_images
from fcos.cli import main
from fcos.export import (
    Calibration,
    ExportedModelError,
    MissingExtraError,
    calibration_inputs,
    export,
    load_exported,
    read_metadata,
)
from fcos.export.quantize import quantize_onnx
from fcos.predict import Predictor, read_image
from fcos.serve import create_app

ov = pytest.importorskip("openvino")

ROWS = [("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "int8")]
SUFFIX = {"onnx": ".onnx", "openvino": ".xml"}


@pytest.fixture(scope="module")
def calibration(shared_data):
    return Calibration(shared_data / "fruit", images=2, split="train", seed=0)


@pytest.fixture(scope="module")
def deployed(checkpoint, calibration, tmp_path_factory):
    """Every format x precision, each exported from the checkpoint (OpenVINO int8 calibrates on its own)."""
    folder = tmp_path_factory.mktemp("deploy")
    return {(fmt, precision): export(checkpoint, folder / f"{precision}{SUFFIX[fmt]}", fmt,
                                     int8=calibration if precision == "int8" else None) for fmt, precision in ROWS}


@pytest.fixture(scope="module")
def photos(shared_data):
    return [read_image(p) for p in real_images(shared_data, 8)]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: "/".join(r))
def test_each_format_and_precision_round_trips(row, deployed, checkpoint, photos):
    fmt, precision = row
    path = deployed[row]
    if fmt == "openvino":
        assert path.suffix == ".xml" and path.with_suffix(".bin").is_file()
    predictor = Predictor(path)
    assert predictor.backend == {"onnx": "onnxruntime", "openvino": "openvino"}[fmt]
    assert predictor.precision == precision and predictor.class_names == CLASS_NAMES
    assert predictor.category_ids == [11, 22, 33]
    reference = Predictor(checkpoint)
    for image in photos[:3]:
        (a,), (b,) = reference(image), predictor(image)
        assert len(b["scores"]) == len(a["scores"]) > 20 and b["names"] == [CLASS_NAMES[i] for i in b["labels"]]
        if precision == "fp32":
            assert_same_detections(a, b)
        else:  # int8: the same picture, with quantization noise on the scores
            assert np.abs(a["scores"][:20] - b["scores"][:20]).max() < 0.02
            assert (a["labels"][:5] == b["labels"][:5]).mean() >= 0.6


def test_openvino_fp32_matches_pytorch_on_real_images(deployed, checkpoint, photos):
    reference, predictor = Predictor(checkpoint), Predictor(deployed[("openvino", "fp32")])
    total = 0
    for image in photos:
        (a,), (b,) = reference(image), predictor(image)
        assert_same_detections(a, b)  # the ONNX parity tolerances: boxes within 0.5 px, scores within 1e-4
        total += len(a["scores"])
    assert total >= 8 * 50


def test_metadata_travels_in_both_formats(deployed, calibration):
    onnx_meta = read_metadata(deployed[("onnx", "int8")])
    model = ov.Core().read_model(str(deployed[("openvino", "int8")]))
    from fcos.export.openvino import openvino_metadata

    ov_meta = openvino_metadata(model)
    for meta in (onnx_meta, ov_meta):
        assert meta["class_names"] == CLASS_NAMES and meta["precision"] == "int8"
        assert meta["preprocessing"]["mean"] == [0.485, 0.456, 0.406] and meta["nms"] is True
        quant = meta["quantization"]
        assert quant["calibration"] == calibration.describe() and quant["int8_convs"] > 20
        assert quant["float_convs"] == 10  # cls_logits and the box/centerness conv, on each of the 5 levels
    assert ov_meta["format"] == "fcos-openvino/1" and onnx_meta["format"].startswith("fcos-onnx/")
    assert read_metadata(deployed[("onnx", "fp32")])["precision"] == "fp32"


def test_int8_keeps_decoding_and_prediction_layers_float(deployed):
    graph = onnx.load(str(deployed[("onnx", "int8")])).graph
    producers = {out: node for node in graph.node for out in node.output}
    float_convs, int8_convs = [], []
    for node in graph.node:
        if node.op_type == "Conv":
            weight = producers.get(node.input[1])  # int8 weights come through a DequantizeLinear
            (int8_convs if weight is not None and weight.op_type == "DequantizeLinear" else float_convs).append(node.name)
    assert len(float_convs) == 10 and len(int8_convs) > 20
    assert all(name.startswith("/head/") for name in float_convs)
    # In the head only convolutions are int8: a head tensor made by another op (GroupNorm, ReLU, the scales,
    # the box distances) is quantized only as the input of an int8 convolution, never for the op itself.
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for q in (n for n in graph.node if n.op_type == "QuantizeLinear"):
        source = producers.get(q.input[0])
        if source is None or not source.name.startswith("/head/") or source.op_type == "Conv":
            continue
        for dq in consumers[q.output[0]]:
            assert all(c.op_type == "Conv" for c in consumers[dq.output[0]]), (source.name, dq.name)
    # Nothing after the network is quantized: NMS and top-k read float tensors.
    for node in graph.node:
        if node.op_type in ("NonMaxSuppression", "TopK"):
            assert all(producers[i].op_type not in ("DequantizeLinear", "QuantizeLinear") for i in node.input if i in producers)
    sizes = {row: path.stat().st_size for row, path in deployed.items() if row[0] == "onnx"}
    assert sizes[("onnx", "int8")] < 0.4 * sizes[("onnx", "fp32")]


def test_calibration_is_deterministic_for_a_seed(deployed, checkpoint, shared_data, tmp_path):
    from fcos.weights.checkpoint import load_model

    config = load_model(checkpoint)[0].config.input
    picks = {seed: calibration_inputs(Calibration(shared_data / "fruit", 3, "train", seed), config) for seed in (0, 0, 1)}
    same = calibration_inputs(Calibration(shared_data / "fruit", 3, "train", 0), config)
    assert all(np.array_equal(a["images"], b["images"]) for a, b in zip(picks[0], same, strict=True))
    assert any(a["images"].shape != b["images"].shape or not np.array_equal(a["images"], b["images"])
               for a, b in zip(picks[0], picks[1], strict=True))
    # The same inputs give byte-identical int8 weights and ranges.
    fp32 = deployed[("onnx", "fp32")]
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    quantize_onnx(fp32, first, same)
    quantize_onnx(fp32, second, same)
    init = [{t.name: t.raw_data for t in onnx.load(str(p)).graph.initializer} for p in (first, second)]
    assert init[0] == init[1] and len(init[0]) > 100


def test_openvino_serves(deployed, checkpoint, photos, tmp_path):
    path = tmp_path / "photo.png"
    photos[0].save(path)
    with TestClient(create_app(Predictor(deployed[("openvino", "fp32")]))) as client:
        assert client.get("/health").json()["backend"] == "openvino"
        body = client.post("/predict", files={"file": ("photo.png", path.read_bytes())}, data={"conf": "0"}).json()
    got = {"boxes": np.array([d["box"] for d in body["detections"]]), "scores": np.array([d["score"] for d in body["detections"]]),
           "labels": np.array([d["label"] for d in body["detections"]])}
    assert_same_detections(Predictor(checkpoint)(photos[0])[0], got, box_tol=0.5, score_tol=2e-4)


@pytest.fixture(scope="module")
def pseudo_labelled(checkpoint, shared_data, tmp_path_factory):
    """The fruit validation images labelled with the PyTorch model's own 5 best detections each: an
    untrained model scores 0 AP on the real labels, here it scores high and any drift shows."""
    folder = tmp_path_factory.mktemp("pseudo")
    (folder / "annotations").mkdir()
    (folder / "images").symlink_to((shared_data / "fruit" / "images").resolve())
    coco = json.loads((shared_data / "fruit" / "annotations" / "val.json").read_text())
    predictor, annotations = Predictor(checkpoint), []
    for image in coco["images"]:
        det = predictor(read_image(folder / "images" / image["file_name"]))[0]
        for (x0, y0, x1, y1), label in zip(det["boxes"][:5].tolist(), det["labels"][:5].tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": label + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    (folder / "annotations" / "val.json").write_text(json.dumps({**coco, "annotations": annotations}))
    return folder


def test_eval_cli_on_exported_models_uses_the_same_evaluation(deployed, checkpoint, pseudo_labelled, tmp_path):
    metrics = {}
    for name, weights in (("torch", checkpoint), ("onnx", deployed[("onnx", "fp32")]),
                          ("openvino", deployed[("openvino", "fp32")]), ("int8", deployed[("openvino", "int8")])):
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--weights", str(weights), "--data", str(pseudo_labelled), "--batch-size", "1",
                     "--workers", "0", "--json", str(out)]) == 0
        metrics[name] = json.loads(out.read_text())
    assert metrics["torch"]["AP"] > 0.5
    for name in ("onnx", "openvino"):
        assert abs(metrics[name]["AP"] - metrics["torch"]["AP"]) < 1e-3, (name, metrics[name]["AP"], metrics["torch"]["AP"])
    assert 0.2 < metrics["int8"]["AP"] < metrics["torch"]["AP"] + 1e-3


@pytest.mark.slow
def test_benchmark_cli_table(checkpoint, pseudo_labelled, shared_data, tmp_path, capsys):
    out = tmp_path / "bench"
    train = pseudo_labelled / "annotations" / "train.json"  # calibration images: the real fruit training split
    shutil.copy(shared_data / "fruit" / "annotations" / "train.json", train)
    assert main(["benchmark", "--weights", str(checkpoint), "--data", str(pseudo_labelled), "--out", str(out),
                 "--formats", "torch/fp32", "onnx/fp32", "openvino/int8", "--calib-images", "2", "--runs", "2",
                 "--img-size", "320", "320", "--conv3x3", "winograd"]) == 0
    table = capsys.readouterr().out
    assert "| format | precision | size (MB) | latency (ms) | AP | AP50 | AP change |" in table
    rows = json.loads((out / "benchmark.json").read_text())["rows"]
    assert [(r["format"], r["precision"]) for r in rows] == [("torch", "fp32"), ("onnx", "fp32"), ("openvino", "int8")]
    assert all(r["latency_ms"] > 0 and r["size_mb"] > 0 and 0 <= r["AP"] <= 1 for r in rows)
    assert rows[0]["AP"] > 0.5
    assert rows[2]["size_mb"] < 0.4 * rows[1]["size_mb"]
    assert (out / "model_fp32.onnx").is_file() and (out / "model_int8.xml").is_file() and (out / "benchmark.csv").is_file()
    # fp32 graphs take --conv3x3: Winograd on every level here, and its AP is the direct graph's (the
    # fixed 320x320 padding, not the algorithm, is what differs from the checkpoint's own padding)
    assert read_metadata(out / "model_fp32.onnx")["conv3x3"] == "winograd"
    assert main(["benchmark", "--weights", str(checkpoint), "--data", str(pseudo_labelled), "--out", str(out / "direct"),
                 "--formats", "onnx/fp32", "--runs", "1", "--img-size", "320", "320", "--conv3x3", "direct"]) == 0
    (direct,) = json.loads((out / "direct" / "benchmark.json").read_text())["rows"]
    assert read_metadata(out / "direct" / "model_fp32.onnx")["conv3x3"] == "direct"
    assert abs(direct["AP"] - rows[1]["AP"]) < 1e-3


# --- bad files and missing runtimes ---------------------------------------------------------------


def test_corrupt_and_mismatched_files_give_clear_errors(deployed, tmp_path):
    onnx32, xml32 = deployed[("onnx", "fp32")], deployed[("openvino", "fp32")]
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(onnx32.read_bytes()[:5000])
    with pytest.raises(ExportedModelError, match=f"cannot load ONNX model {truncated}"):
        load_exported(truncated)

    proto = onnx.load(str(onnx32))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    with pytest.raises(ExportedModelError, match="not an fcos export"):
        load_exported(plain)

    proto = onnx.load(str(onnx32))
    for prop in proto.metadata_props:
        if prop.key == "class_names":
            prop.value = json.dumps(["apple", "banana"])
    mismatched = tmp_path / "mismatched.onnx"
    onnx.save(proto, str(mismatched))
    with pytest.raises(ExportedModelError, match="2 classes .* for a 3-class model"):
        load_exported(mismatched)

    lonely = tmp_path / "lonely.xml"
    shutil.copy(xml32, lonely)
    with pytest.raises(ExportedModelError, match="weights file .*lonely.bin is missing"):
        load_exported(lonely)
    # the .bin of another model (the int8 one): OpenVINO refuses it, the error names the file
    shutil.copy(deployed[("openvino", "int8")].with_suffix(".bin"), tmp_path / "lonely.bin")
    with pytest.raises(ExportedModelError, match=f"cannot load OpenVINO model {lonely}"):
        load_exported(lonely)


def test_cli_errors_are_one_line(deployed, checkpoint, shared_data, tmp_path, capsys):
    broken = tmp_path / "broken.xml"
    broken.write_text("<net>not really</net>")
    broken.with_suffix(".bin").write_bytes(b"")
    assert main(["predict", "--weights", str(broken), "--source", str(real_images(shared_data, 2)[0]),
                 "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.startswith(f"error: cannot load OpenVINO model {broken}")
    with pytest.raises(SystemExit, match="--int8 needs --calib-data"):
        main(["export", "--weights", str(checkpoint), "--int8", "--out", str(tmp_path / "m.onnx")])
    with pytest.raises(ValueError, match="give --out a .xml path"):
        export(checkpoint, tmp_path / "m.onnx", "openvino")
    assert not list(tmp_path.glob("m.*"))


def test_missing_runtime_names_the_extra(deployed, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'fcos\[openvino\]'"):
        Predictor(deployed[("openvino", "fp32")])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'fcos\[onnx\]'"):
        Predictor(deployed[("onnx", "fp32")])


def test_core_library_works_without_the_runtimes(checkpoint, shared_data):
    code = (
        "import sys\n"
        "for name in ('onnx', 'onnxruntime', 'openvino'): sys.modules[name] = None\n"
        "from fcos.cli import main\n"
        "from fcos.predict import Predictor, read_image\n"
        f"det = Predictor({str(checkpoint)!r})(read_image({str(real_images(shared_data, 2)[0])!r}))[0]\n"
        "assert len(det['scores']) > 0\n"
        f"sys.exit(main(['export', '--weights', {str(checkpoint)!r}, '--out', '/nonexistent/never.onnx']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    message = proc.stderr.strip()
    assert message.startswith("error: ONNX export needs the optional package 'onnx'") and "\n" not in message
    assert message.endswith("install it with: pip install 'fcos[onnx]'")
