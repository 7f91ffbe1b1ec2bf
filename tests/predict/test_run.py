"""fcos predict on folders (recursive), glob patterns and videos, with YOLO labels and crops."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from deploy_helpers import CLASS_NAMES, make_video, real_images
from fcos.cli import main
from fcos.data.images import read_image
from fcos.predict import Predictor, predict_source
from fcos.predict.video import Frame, read_frames, video_info


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor(checkpoint)


@pytest.fixture(scope="module")
def photos(shared_data):
    return real_images(shared_data, 4)


def nested(tmp_path, photos):
    """in/a.jpg, in/sub/a.jpg (same name, another photo), in/sub/deeper/c.png, in/notes.txt"""
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(photos[0], root / "a.jpg")
    shutil.copy(photos[1], root / "sub" / "a.jpg")
    Image.open(photos[2]).save(root / "sub" / "deeper" / "c.png")
    (root / "notes.txt").write_text("not a source")
    return root


def test_recursive_folder_outputs_mirror_it_and_glob_patterns(predictor, photos, tmp_path):
    root = nested(tmp_path, photos)
    out = predict_source(predictor, root, tmp_path / "out", conf=0.3, recursive=True, progress=False)
    drawn = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert drawn == ["a.jpg", "predictions.json", "sub/a.jpg", "sub/deeper/c.png"]
    records = json.loads((out / "predictions.json").read_text())
    assert {r["file_name"] for r in records} == {"a.jpg", "sub/a.jpg", "sub/deeper/c.png"}
    # same file name in two folders: each its own detections, from its own photo
    for name, photo in (("a.jpg", photos[0]), ("sub/a.jpg", photos[1])):
        (det,) = predictor(read_image(photo), conf=0.3)
        mine = sorted((r["score"] for r in records if r["file_name"] == name), reverse=True)
        assert mine == pytest.approx(det["scores"].tolist(), abs=1e-5)
        assert Image.open(out / name).size == Image.open(photo).size
    assert [r["image_id"] for r in records if r["file_name"] == "sub/deeper/c.png"][0] == 3
    flat = predict_source(predictor, root, tmp_path / "flat", conf=0.3, progress=False)
    assert sorted(p.name for p in flat.iterdir()) == ["a.jpg", "predictions.json"]
    pattern = predict_source(predictor, str(root / "**" / "*.jpg"), tmp_path / "glob", conf=0.3, progress=False)
    assert sorted(p.relative_to(pattern).as_posix() for p in pattern.rglob("*.jpg")) == ["a.jpg", "sub/a.jpg"]
    # predicting a folder into a folder inside it, again: the earlier outputs are not predicted
    inside = predict_source(predictor, root, root / "runs", conf=0.3, recursive=True, progress=False)
    inside = predict_source(predictor, root, root / "runs", conf=0.3, recursive=True, progress=False)
    assert {r["file_name"] for r in json.loads((inside / "predictions.json").read_text())} == {
        "a.jpg", "sub/a.jpg", "sub/deeper/c.png"}


def test_save_txt_and_crops_hold_the_detections(predictor, photos, tmp_path):
    root = nested(tmp_path, photos)
    out = predict_source(predictor, root, tmp_path / "out", conf=0.3, recursive=True, save_txt=True, save_crops=True,
                         progress=False)
    image = read_image(root / "sub" / "a.jpg")
    (det,) = predictor(image, conf=0.3)
    assert len(det["scores"]) > 0
    lines = (out / "labels" / "sub" / "a.txt").read_text().splitlines()
    values = np.array([line.split() for line in lines], np.float64)
    assert values[:, 0].astype(int).tolist() == det["labels"].tolist()
    w, h = image.size
    xyxy = np.stack([(values[:, 1] - values[:, 3] / 2) * w, (values[:, 2] - values[:, 4] / 2) * h,
                     (values[:, 1] + values[:, 3] / 2) * w, (values[:, 2] + values[:, 4] / 2) * h], 1)
    assert xyxy == pytest.approx(det["boxes"], abs=2e-3 * max(w, h)) and values[:, 5] == pytest.approx(det["scores"], abs=1e-5)
    assert sorted(p.relative_to(out / "labels").as_posix() for p in (out / "labels").rglob("*.txt")) == [
        "a.txt", "sub/a.txt", "sub/deeper/c.txt"]
    crops = sorted((out / "crops").rglob("sub_a_*.jpg"))
    assert len(crops) == len(det["scores"])
    for k, (box, label) in enumerate(zip(det["boxes"], det["labels"])):
        crop = out / "crops" / CLASS_NAMES[label] / f"sub_a_{k}.jpg"
        x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
        x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
        assert Image.open(crop).size == (x1 - x0, y1 - y0)
    nothing = predict_source(predictor, root / "a.jpg", tmp_path / "none", conf=1.0, save_txt=True, progress=False)
    assert (nothing / "labels" / "a.txt").read_text() == ""  # predicted, nothing found: an empty file


def test_video_annotated_with_per_frame_json_broken_frame_skipped(predictor, photos, tmp_path):
    pytest.importorskip("av")
    source = tmp_path / "in"
    source.mkdir()
    make_video(source / "clip.avi", photos[1], count=8, corrupt=5)
    shutil.copy(photos[0], source / "clip.jpg")  # an image of the same stem: its drawing keeps clip.jpg
    with pytest.warns(UserWarning) as caught:
        out = predict_source(predictor, source, tmp_path / "out", conf=0.2, save_txt=True, progress=False)
    messages = [str(w.message) for w in caught]
    assert any(m.startswith(f"skipping {source / 'clip.avi'} frame 5 (0.50 s): cannot decode the frame") for m in messages)
    assert sorted(p.name for p in out.iterdir()) == ["clip.jpg", "clip.json", "clip.mp4", "labels", "predictions.json"]
    report = json.loads((out / "clip.json").read_text())
    assert (report["file_name"], report["video"], report["fps"]) == ("clip.avi", "clip.mp4", 10.0)
    assert [f["frame"] for f in report["frames"]] == [0, 1, 2, 3, 4, 6, 7]
    assert [s["frame"] for s in report["skipped_frames"]] == [5]
    frames = [f for f in read_frames(source / "clip.avi") if isinstance(f, Frame)]
    for frame, entry in zip(frames, report["frames"]):  # each frame's detections are the predictor's on it
        (det,) = predictor(frame.image, conf=0.2)
        assert [d["score"] for d in entry["detections"]] == pytest.approx(det["scores"].tolist(), abs=1e-5)
        assert {d["category_name"] for d in entry["detections"]} <= set(CLASS_NAMES)
        assert (out / "labels" / f"clip_{frame.index}.txt").read_text().count("\n") == len(det["scores"])
    assert sum(len(f["detections"]) for f in report["frames"]) > 0
    info = video_info(out / "clip.mp4")
    assert (info["frames"], info["fps"], info["width"], info["height"]) == (7, 10.0, 96, 64)
    drawn = [f.image for f in read_frames(out / "clip.mp4")]
    assert any(np.abs(np.asarray(d, float) - np.asarray(f.image, float)).max() > 100 for d, f in zip(drawn, frames))


def test_cli_options_and_broken_videos(checkpoint, photos, tmp_path, capsys):
    pytest.importorskip("av")
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(photos[0], source / "a.jpg")
    (source / "junk.mp4").write_bytes(b"not a video " * 30)
    with pytest.warns(UserWarning) as caught:
        code = main(["predict", "--weights", str(checkpoint), "--source", str(source), "--out", str(tmp_path / "a"),
                     "--conf", "0.3", "--no-progress"])
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and messages[0].startswith(f"skipping {source / 'junk.mp4'}: cannot open the video: ")
    assert messages[1] == "skipped 1 of 2 files that could not be read: ['junk.mp4']"
    assert code == 0 and sorted(p.name for p in (tmp_path / "a").iterdir()) == ["a.jpg", "predictions.json"]
    code = main(["predict", "--weights", str(checkpoint), "--source", str(source / "junk.mp4"), "--out", str(tmp_path / "b")])
    assert code == 1 and capsys.readouterr().err.startswith(f"error: {source / 'junk.mp4'}: cannot open the video")
    code = main(["predict", "--weights", str(checkpoint), "--source", str(source / "a.jpg"), "--out", str(tmp_path / "c"),
                 "--conf", "0.3", "--hide-labels", "--line-width", "1"])
    assert code == 0
    plain = np.asarray(Image.open(tmp_path / "a" / "a.jpg"), float)
    bare = np.asarray(Image.open(tmp_path / "c" / "a.jpg"), float)
    original = np.asarray(read_image(source / "a.jpg"), float)
    # boxes only, 1 px wide: far fewer pixels changed than with tags and the default width
    assert 0 < (np.abs(bare - original).max(-1) > 60).sum() < 0.5 * (np.abs(plain - original).max(-1) > 60).sum()


def test_images_sharing_a_stem_keep_their_own_labels_and_an_unsuffixed_image_is_drawn(predictor, photos, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(photos[0], source / "a.jpg")
    Image.open(photos[1]).save(source / "a.png")
    shutil.copy(photos[2], tmp_path / "d")  # a JPEG without a suffix, given as a single file
    out = predict_source(predictor, source, tmp_path / "out", conf=0.3, save_txt=True, save_crops=True, progress=False)
    for name, photo in (("a_jpg", photos[0]), ("a_png", photos[1])):  # before: both wrote labels/a.txt
        (det,) = predictor(read_image(photo), conf=0.3)
        assert (out / "labels" / f"{name}.txt").read_text().count("\n") == len(det["scores"]) > 0
        assert len(list((out / "crops").rglob(f"{name}_*.jpg"))) == len(det["scores"])
    assert not (out / "labels" / "a.txt").exists()
    single = predict_source(predictor, tmp_path / "d", tmp_path / "single", conf=0.3, progress=False)
    assert Image.open(single / "d").format == "PNG" and Image.open(single / "d").size == Image.open(photos[2]).size


def test_frames_numbered_without_padding_are_taken_in_numeric_order(tmp_path):
    from fcos.predict.sources import list_sources

    for i in (1, 2, 10, 11, 100):
        Image.new("RGB", (8, 8)).save(tmp_path / f"frame_{i}.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "frame_010b.jpg")
    names = [f.name.as_posix() for f in list_sources(tmp_path)]
    assert names == ["frame_1.jpg", "frame_2.jpg", "frame_10.jpg", "frame_010b.jpg", "frame_11.jpg", "frame_100.jpg"]


def test_cli_source_problems_are_one_line_errors(checkpoint, photos, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no image here")
    code = main(["predict", "--weights", str(checkpoint), "--source", str(empty), "--out", str(tmp_path / "o")])
    assert code == 1 and capsys.readouterr().err.startswith("error: no images (")
    shutil.copy(photos[0], empty / "a.jpg")
    code = main(["predict", "--weights", str(checkpoint), "--source", str(empty), "--out", str(empty)])
    assert code == 1 and f"error: out_dir {empty} holds the sources" in capsys.readouterr().err
    # a long thin image: predicted (before, interpolate to 0 px raised a RuntimeError), boxes inside it
    Image.fromarray(np.full((5, 3000, 3), 128, np.uint8)).save(tmp_path / "thin.png")
    code = main(["predict", "--weights", str(checkpoint), "--source", str(tmp_path / "thin.png"),
                 "--out", str(tmp_path / "t")])
    boxes = [r["bbox"] for r in json.loads((tmp_path / "t" / "predictions.json").read_text())]
    assert code == 0 and all(x >= 0 and y >= 0 and x + w <= 3000.01 and y + h <= 5.01 for x, y, w, h in boxes)
    # too small for the model at these settings: named, one line
    code = main(["predict", "--weights", str(checkpoint), "--source", str(empty / "a.jpg"), "--out", str(tmp_path / "s"),
                 "--tta", "--tta-scales", "0.01"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"error: {empty / 'a.jpg'}: ") and "Traceback" not in err
