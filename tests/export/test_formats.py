"""The deployment formats are one table (fcos.export.FORMATS): a format registered there alone is
exported by `fcos export` and `fcos.export.export`, run by `Predictor` (predict, eval, serve) through its
loader, offered by `--backend`, measured by the benchmark's rows and sized with its sidecar files. The
test registers a fake format and checks each of those places (docs/architecture.md, "Where to change
what": a new format is its module plus one line in the table)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import fcos.export.formats as formats_module
from deploy_helpers import assert_same_detections
from fcos.cli import build_parser, main
from fcos.export import FORMATS, ExportFormat, backend_for, export, format_for, format_named, load_exported
from fcos.predict import Predictor
from fcos.predict.benchmark import _size_mb, default_rows
from fcos.predict.predictor import backends


def _write(weights, out, **options):
    """The fake format's writer: the onnx export's metadata as JSON, and a sidecar."""
    out = Path(out)
    onnx_file = FORMATS["onnx"].write(weights, out.with_suffix(".onnx"), **options)
    from fcos.export.onnx import read_metadata

    out.write_text(json.dumps({"onnx": str(onnx_file), "metadata": read_metadata(onnx_file)}))
    out.with_suffix(".side").write_text("x" * 1000)
    return out


def _load(path, device, threads):
    """The fake format's loader: runs the ONNX file its JSON names (so detections are real)."""
    doc = json.loads(Path(path).read_text())
    return FORMATS["onnx"].load(Path(doc["onnx"]), device, threads)


@pytest.fixture
def fake_format(monkeypatch):
    fake = ExportFormat("fake", ".fk", "fakeruntime", "onnx", _write, _load, lambda: ("cpu",), sidecars=(".side",),
                        precisions=("fp32",))
    monkeypatch.setitem(formats_module.FORMATS, "fake", fake)
    return fake


def test_the_table_gives_each_formats_suffix_runtime_and_files():
    assert format_for("m.ONNX") is FORMATS["onnx"] and format_for("m.xml") is FORMATS["openvino"]
    assert format_for("best.pt") is None and backend_for("model.onnx") == "onnxruntime"
    assert FORMATS["openvino"].files("a/m.xml") == [Path("a/m.xml"), Path("a/m.bin")]
    assert format_named("openvino", runtime=True) is FORMATS["openvino"]
    with pytest.raises(ValueError, match="unknown export format 'trt'; choose from onnx, openvino"):
        format_named("trt")
    assert backends() == ("torch", "onnxruntime", "openvino")
    assert default_rows() == ("torch/fp32", "onnx/fp32", "onnx/int8", "openvino/fp32", "openvino/int8")


def test_a_format_registered_in_the_table_works_everywhere(fake_format, checkpoint, shared_data, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    # fcos export --format fake: the CLI's choices, the writer, and the files it names
    out = tmp_path / "m.fk"
    assert main(["export", "--weights", str(checkpoint), "--format", "fake", "--out", str(out)]) == 0
    assert f"wrote {out} and {out.with_suffix('.side')}" in capsys.readouterr().out
    assert export(checkpoint, tmp_path / "n.fk", "fake") == tmp_path / "n.fk"
    # the runtime by suffix and by --backend, the loader, the predictor
    assert backend_for(out) == "fakeruntime" and "fakeruntime" in backends()
    assert build_parser().parse_args(["predict", "--weights", "w", "--source", "s", "--backend", "fakeruntime"])
    model = load_exported(out)
    assert model.backend == "fakeruntime" and model.metadata["class_names"] == ["apple", "banana", "orange"]
    image = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(shared_data / "fruit" / "images" / "apple_1.jpg").convert("RGB"))
    ours = Predictor(out)(image)[0]
    reference = Predictor(checkpoint)(image)[0]
    assert_same_detections(ours, reference, box_tol=0.5, score_tol=1e-3)  # as sets: near-ties may swap order
    # the benchmark's rows and sizes (the sidecar counted)
    assert "fake/fp32" in default_rows() and "fake/int8" not in default_rows()
    assert _size_mb(out) == pytest.approx((out.stat().st_size + 1000) / 1e6)


def test_the_writers_share_one_signature():
    names = {name: set(__import__("inspect").signature(f.write).parameters) for name, f in FORMATS.items()}
    expected = {"weights", "out", "img_size", "dynamic", "nms", "opset", "int8", "conv3x3"}
    assert all(params == expected for params in names.values()), names
    assert all(dataclasses.is_dataclass(f) for f in FORMATS.values())
