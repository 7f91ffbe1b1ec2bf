"""Predictor inputs and outputs, confidence filtering, predict_source output files and the CLI."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from deploy_helpers import CLASS_NAMES, assert_same_detections, real_images
from fcos.cli import main
from fcos.predict import Predictor, list_images, predict_source, read_image, to_tensor
from fcos.weights.checkpoint import load_model


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor(checkpoint)


@pytest.fixture(scope="module")
def image(shared_data):
    return read_image(real_images(shared_data, 2)[1])  # a raccoon photo


def test_outputs_are_sorted_numpy_in_original_pixels(predictor, image):
    (det,) = predictor(image)
    n = len(det["scores"])
    assert n > 20
    assert det["boxes"].shape == (n, 4) and det["boxes"].dtype == np.float32
    assert det["scores"].dtype == np.float32 and det["labels"].dtype == np.int64
    assert det["names"] == [CLASS_NAMES[i] for i in det["labels"]]
    assert (np.diff(det["scores"]) <= 0).all()
    boxes = det["boxes"]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= image.width).all() and (boxes[:, 3] <= image.height).all()
    assert (boxes[:, 2:] >= boxes[:, :2]).all()


def test_equals_the_model_called_directly(checkpoint, predictor, image):
    model, _ = load_model(checkpoint)
    tensor = to_tensor(image)
    with torch.no_grad():
        (expected,) = model([tensor])
    (det,) = predictor(image)
    assert np.array_equal(det["boxes"], expected["boxes"].numpy())
    assert np.array_equal(det["labels"], expected["labels"].numpy())


def test_pil_numpy_and_tensor_inputs_agree(predictor, image):
    array = np.asarray(image)
    inputs = [image, array, torch.from_numpy(array.copy()).permute(2, 0, 1), to_tensor(image)]
    results = predictor(inputs)
    assert len(results) == 4
    for det in results[1:]:
        assert np.array_equal(det["boxes"], results[0]["boxes"]) and np.array_equal(det["scores"], results[0]["scores"])
    batch = torch.stack([to_tensor(image)] * 2)
    assert all(np.array_equal(d["boxes"], results[0]["boxes"]) for d in predictor(batch))
    grey = predictor(np.asarray(image.convert("L")))[0]  # HW grey is broadcast to RGB
    assert len(grey["scores"]) > 0


def test_conf_filters_scores(checkpoint, predictor, image):
    everything = predictor(image)[0]["scores"]
    conf = float(np.median(everything))
    kept = predictor(image, conf=conf)[0]["scores"]
    assert 0 < len(kept) < len(everything) and (kept >= conf).all()
    assert len(Predictor(checkpoint, conf=conf)(image)[0]["scores"]) == len(kept)  # default from the constructor


def test_bad_inputs_and_arguments_raise_clear_errors(checkpoint, predictor, tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        predictor(np.zeros((300, 300, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        predictor(torch.rand(1, 300, 300))
    with pytest.raises(ValueError, match="expected a PIL image"):
        predictor(["not an image"])
    # an extreme aspect ratio resizes to 6 x 320: still a valid input (one side spans P7's stride)
    assert len(predictor(np.zeros((20, 1000, 3), dtype=np.uint8))) == 1
    with pytest.raises(ValueError, match="unknown backend"):
        Predictor(checkpoint, backend="tensorrt")
    with pytest.raises(FileNotFoundError):
        Predictor(tmp_path / "missing.pt")
    onnx_named = tmp_path / "model.onnx"
    shutil.copy(checkpoint, onnx_named)
    with pytest.raises(ValueError, match="use backend='onnxruntime'"):
        Predictor(onnx_named, backend="torch")
    with pytest.raises(ValueError, match="cannot load ONNX model"):
        Predictor(onnx_named)  # by suffix: onnxruntime, which cannot read a torch checkpoint


def test_predict_source_writes_drawn_images_and_coco_json(predictor, shared_data, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    picks = real_images(shared_data, 4)
    for path in picks:
        shutil.copy(path, source / path.name)
    (source / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (source / "notes.txt").write_text("ignored: not an image suffix")
    with pytest.warns(UserWarning) as caught:
        out = predict_source(predictor, source, tmp_path / "out", conf=0.3)
    messages = [str(w.message) for w in caught]
    assert any("broken.jpg: cannot decode the image" in m for m in messages)
    assert any("skipped 1 of 5" in m for m in messages)

    drawn = sorted(p.name for p in out.iterdir() if p.suffix == ".jpg")
    assert drawn == sorted(p.name for p in picks)
    for path in picks:
        original, result = Image.open(path), Image.open(out / path.name)
        assert result.size == original.size
        assert not np.array_equal(np.asarray(result), np.asarray(original.convert("RGB")))  # boxes drawn

    records = json.loads((out / "predictions.json").read_text())
    assert records and {r["file_name"] for r in records} <= {p.name for p in picks}
    names = [p.name for p in list_images(source)]
    for r in records:
        assert set(r) == {"image_id", "file_name", "category_id", "category_name", "bbox", "score"}
        assert names[r["image_id"] - 1] == r["file_name"]
        assert r["category_id"] == [11, 22, 33][CLASS_NAMES.index(r["category_name"])]
        assert r["score"] >= 0.3 and len(r["bbox"]) == 4 and r["bbox"][2] >= 0 and r["bbox"][3] >= 0


def test_predict_source_errors(predictor, shared_data, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        predict_source(predictor, broken, tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        predict_source(predictor, tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(ValueError, match="overwrite"):
        predict_source(predictor, shared_data / "fruit" / "images", shared_data / "fruit" / "images")


def test_predict_cli_single_image(checkpoint, shared_data, tmp_path, capsys):
    image = real_images(shared_data, 2)[0]
    out = tmp_path / "cli"
    code = main(["predict", "--weights", str(checkpoint), "--source", str(image), "--out", str(out), "--conf", "0.4"])
    assert code == 0 and "predictions.json" in capsys.readouterr().out
    assert (out / image.name).is_file()
    records = json.loads((out / "predictions.json").read_text())
    assert records and all(r["score"] >= 0.4 and r["image_id"] == 1 for r in records)


def test_predict_folder_skips_and_names_broken_files(predictor, shared_data, tmp_path):
    """Broken files of every kind are skipped and named; the rest, odd suffixes included, are predicted."""
    source = tmp_path / "in"
    source.mkdir()
    photos = real_images(shared_data, 2)
    shutil.copy(photos[0], source / "PHOTO.JPG")  # upper-case suffix
    shutil.copy(photos[1], source / "really_a_jpeg.png")  # valid image, another format's suffix
    jpeg = photos[0].read_bytes()
    broken = {
        "empty.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "garbage.png": bytes(range(256)) * 8,
        "notes.jpg": b"shopping list: apples, bananas",  # not an image, image suffix
    }
    for name, data in broken.items():
        (source / name).write_bytes(data)
    with pytest.warns(UserWarning) as caught:
        out = predict_source(predictor, source, tmp_path / "out", conf=0.3)
    messages = [str(w.message) for w in caught]
    for name in broken:
        assert any(m.startswith(f"skipping {source / name}: ") for m in messages), (name, messages)
    assert any("skipped 4 of 6" in m for m in messages)
    assert sorted(p.name for p in out.iterdir()) == ["PHOTO.JPG", "predictions.json", "really_a_jpeg.png"]
    assert {r["file_name"] for r in json.loads((out / "predictions.json").read_text())} == {"PHOTO.JPG", "really_a_jpeg.png"}


def test_predict_cli_failing_write_is_one_line_and_leaves_no_partial_file(checkpoint, shared_data, tmp_path):
    import os
    import resource
    import signal
    import subprocess
    import sys

    source = tmp_path / "in"
    source.mkdir()
    for path in real_images(shared_data, 2):
        shutil.copy(path, source / path.name)

    def file_size_limit():  # the disk "fills up": no file of the process may pass 4 kB
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4_000, 4_000))

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "fcos", "predict", "--weights", str(checkpoint), "--source", str(source),
                           "--out", str(out)], capture_output=True, text=True, timeout=300, preexec_fn=file_size_limit,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    first = sorted(source.iterdir())[0].name
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: cannot write {out / first}: file size limit reached")
    assert not out.exists() or list(out.iterdir()) == []


def test_a_batch_of_mixed_sizes_gives_each_image_its_own_detections(checkpoint, shared_data):
    # Images that enter the network at the same padded shape share a forward pass; the others get their own.
    images = [read_image(p) for p in real_images(shared_data, 4)]
    images.append(images[0].copy())  # the same image twice in one batch
    predictor = Predictor(checkpoint)
    alone = [predictor(image)[0] for image in images]
    batched = predictor.predict_batch(images)
    for a, b in zip(alone, batched):
        assert len(a["boxes"]) > 0
        # as sets: with several threads, scores equal to ~1e-6 may come out in either order
        assert_same_detections(b, a, box_tol=1e-3, score_tol=1e-5)
        assert sorted(b["names"]) == sorted(a["names"])
