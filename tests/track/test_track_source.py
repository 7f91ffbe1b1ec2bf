"""``track_source`` end to end on a generated sequence with a stub predictor (its ground truth, jittered):
the three outputs, IDs that follow the objects, broken frames named and coasted over, no detections,
videos as sources, and one real (untrained) Predictor."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from track_helpers import GroundTruthPredictor, mjpeg_video, tiny_checkpoint

from fcos.data.mot import read_mot
from fcos.data.shapes_video import generate_shapes_video
from fcos.track import TrackerConfig, TrackInputError, evaluate_mot, track_source

av = pytest.importorskip("av")
pytest.importorskip("trackeval")


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    from fcos.predict.video import VideoWriter

    return generate_shapes_video(tmp_path_factory.mktemp("seq") / "clip", frames=48, size=128, objects=6,
                                 crossings=2, min_object=20, max_object=36, seed=1, image_format="png",
                                 video_writer=VideoWriter)


def test_a_sequence_folder_gives_video_mot_file_and_tracks_json(sequence, tmp_path):
    predictor = GroundTruthPredictor(sequence.gt, sequence.frames)
    summary = track_source(predictor, sequence.root, tmp_path / "out", progress=False)
    assert summary.name == "clip" and summary.gt == sequence.gt and summary.fps == 25.0
    assert (summary.frames, summary.skipped) == (48, 0) and predictor.calls == list(range(1, 49))
    assert set(predictor.confs) == {0.1}  # the predictor is asked for ByteTrack's low-score detections too
    assert summary.detect_ms > 0 and 0 < summary.track_ms < 50
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"clip.mp4", "clip.txt", "clip_tracks.json"}
    metrics = evaluate_mot(sequence.gt, summary.mot)
    assert metrics.idf1 > 0.9 and metrics.id_switches == 0 and metrics.mota > 0.8
    assert summary.tracks == metrics.tracker_tracks == read_mot(sequence.gt).ids.max()  # one ID per object
    doc = json.loads(summary.json.read_text())
    mot = read_mot(summary.mot)
    assert doc["frames"] == 48 and doc["fps"] == 25.0 and (doc["width"], doc["height"]) == (128, 128)
    assert doc["class_names"] == ["rectangle", "ellipse", "triangle"] and doc["config"] == TrackerConfig().to_dict()
    assert doc["video"] == "clip.mp4" and doc["mot"] == "clip.txt" and doc["skipped_frames"] == []
    assert len(doc["tracks"]) == summary.tracks and sum(t["frames"] for t in doc["tracks"]) == len(mot) == summary.boxes
    for track in doc["tracks"]:  # the JSON and the MOT file tell the same story
        rows = mot.ids == track["id"]
        assert track["class"] == doc["class_names"][track["label"]]
        assert (track["first_frame"], track["last_frame"]) == (mot.frames[rows].min(), mot.frames[rows].max())
        np.testing.assert_allclose(np.array(track["boxes"])[:, 1:5], mot.boxes[rows], atol=0.011)
    with av.open(str(summary.video)) as container:
        assert container.streams.video[0].frames == 48


def test_a_broken_frame_is_named_skipped_and_tracks_survive_it(sequence, tmp_path):
    frames = tmp_path / "frames"
    shutil.copytree(sequence.frames, frames)
    data = (frames / "000020.png").read_bytes()
    (frames / "000020.png").write_bytes(data[: len(data) // 2])  # a cut-off file
    predictor = GroundTruthPredictor(sequence.gt, sequence.frames)
    with pytest.warns(UserWarning, match=r"skipping frame 20: .*frames/000020\.png: cannot decode the image"):
        summary = track_source(predictor, frames, tmp_path / "out", fps=30, save_video=False, progress=False)
    assert (summary.name, summary.frames, summary.skipped, summary.video, summary.fps) == ("frames", 48, 1, None, 30.0)
    assert 20 not in predictor.calls and len(predictor.calls) == 47
    doc = json.loads(summary.json.read_text())
    assert [s["frame"] for s in doc["skipped_frames"]] == [20]
    assert doc["skipped_frames"][0]["problem"].startswith(f"{frames / '000020.png'}: cannot decode the image")
    mot = read_mot(summary.mot)
    assert 20 not in mot.frames.tolist()
    both = [i for i in np.unique(mot.ids) if {19, 21} <= set(mot.frames[mot.ids == i].tolist())]
    assert both and summary.tracks == read_mot(sequence.gt).ids.max()  # IDs on both sides; no new ones
    assert not (tmp_path / "out" / "frames.mp4").exists()


def test_a_broken_video_frame_is_named_skipped_and_tracks_survive_it(sequence, tmp_path):
    video = mjpeg_video(tmp_path / "walk.avi", sequence.frames, corrupt=29)  # the 30th frame
    predictor = GroundTruthPredictor(sequence.gt, sequence.frames)
    with pytest.warns(UserWarning, match=r"skipping frame 30: .*walk\.avi: cannot decode the frame"):
        summary = track_source(predictor, video, tmp_path / "out", progress=False)
    assert (summary.name, summary.frames, summary.skipped) == ("walk", 48, 1)
    assert predictor.calls == [t for t in range(1, 49) if t != 30]  # each frame seen as itself
    mot = read_mot(summary.mot)
    assert 30 not in mot.frames.tolist() and {29, 31} <= set(mot.frames.tolist())
    assert summary.tracks == read_mot(sequence.gt).ids.max()
    with av.open(str(summary.video)) as container:
        assert container.streams.video[0].frames == 47  # the broken frame is left out


def test_no_detections_give_empty_valid_outputs(sequence, tmp_path):
    predictor = GroundTruthPredictor(sequence.gt, empty=True)
    summary = track_source(predictor, sequence.video, tmp_path / "out", progress=False)
    assert (summary.name, summary.frames, summary.tracks, summary.boxes) == ("clip", 48, 0, 0)
    assert summary.mot.read_text() == "" and len(read_mot(summary.mot)) == 0
    doc = json.loads(summary.json.read_text())
    assert doc["tracks"] == [] and doc["frames"] == 48
    with av.open(str(summary.video)) as container:
        assert container.streams.video[0].frames == 48
    assert evaluate_mot(sequence.gt, summary.mot).mota == 0.0


def test_a_video_source_and_a_glob_of_frames(sequence, tmp_path):
    # the video: frames in decoding order (the stub counts its calls: H.264 changes the pixels)
    summary = track_source(GroundTruthPredictor(sequence.gt), sequence.video, tmp_path / "v", save_video=False,
                           progress=False)
    assert summary.name == "clip" and evaluate_mot(sequence.gt, summary.mot).idf1 > 0.9
    pattern = str(sequence.frames / "00001*.png")  # frames 10..19 by name: numbered 1..10 here
    predictor = GroundTruthPredictor(sequence.gt)
    summary = track_source(predictor, pattern, tmp_path / "g", save_video=False, progress=False, conf=0.3)
    assert summary.name == "img1" and summary.frames == 10 and set(predictor.confs) == {0.3}
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(sequence.video, mixed / "a.mp4")
    shutil.copy(sequence.frames / "000001.png", mixed / "b.png")
    with pytest.raises(TrackInputError, match="mixed holds 1 video and images: track one video, or one folder"):
        track_source(predictor, mixed, tmp_path / "x", progress=False, save_video=False)
    with pytest.raises(FileNotFoundError):
        track_source(predictor, tmp_path / "missing.mp4", tmp_path / "x", progress=False)
    # only some classes: the others' detections never reach the tracker
    only = track_source(GroundTruthPredictor(sequence.gt, sequence.frames), sequence.root, tmp_path / "c",
                        classes=["ellipse"], save_video=False, progress=False)
    gt = read_mot(sequence.gt)
    assert only.tracks == len(np.unique(gt.ids[gt.classes == 2]))
    assert {t["class"] for t in json.loads(only.json.read_text())["tracks"]} == {"ellipse"}
    with pytest.raises(TrackInputError, match=r"unknown classes \['person'\]; the model has \['rectangle', 'ellipse'"):
        track_source(predictor, sequence.root, tmp_path / "x", classes=["person"], progress=False)


def test_a_real_predictor_plugs_in(sequence, tmp_path):
    from fcos.predict import Predictor

    predictor = Predictor(tiny_checkpoint(tmp_path / "tiny.pt"))
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in sorted(p.name for p in sequence.frames.iterdir())[:6]:
        shutil.copy(sequence.frames / name, frames / name)
    summary = track_source(predictor, frames, tmp_path / "out", progress=False)
    doc = json.loads(summary.json.read_text())
    assert summary.frames == 6 and doc["class_names"] == ["rectangle", "ellipse", "triangle"]
    mot = read_mot(summary.mot)  # whatever an untrained model finds: valid rows, classes from its names
    assert len(mot) == summary.boxes and all(t["class"] in doc["class_names"] for t in doc["tracks"])


def test_the_cli_runs_a_checkpoint_with_tracker_and_linking_flags(sequence, tmp_path, capsys):
    from fcos.cli import main

    weights = tiny_checkpoint(tmp_path / "tiny.pt")
    assert main(["track", "--weights", str(weights), "--source", str(sequence.root), "--out", str(tmp_path / "out"),
                 "--no-video", "--no-progress", "--high-score", "0.4", "--new-track-score", "0.5",
                 "--link-gap", "40", "--link-distance", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "clip: 48 frames (0 skipped)" in out and "MOTA" in out and "IDF1" in out  # the sequence's own gt
    doc = json.loads((tmp_path / "out" / "clip_tracks.json").read_text())
    assert doc["config"]["high_score"] == 0.4 and doc["config"]["new_track_score"] == 0.5
    assert doc["link"] == {"link_gap": 40, "link_distance": 1.5, "link_size_ratio": 2.0}
    assert doc["video"] is None and not (tmp_path / "out" / "clip.mp4").exists()


def test_the_cli_names_bad_settings_and_sources_without_a_traceback(sequence, tmp_path, capsys):
    from fcos.cli import main

    weights = tiny_checkpoint(tmp_path / "tiny.pt")
    common = ["track", "--weights", str(weights), "--out", str(tmp_path / "out"), "--no-video", "--no-progress"]
    for flags in (["--link-gap", "-1"], ["--high-score", "2"]):  # refused by the flags' parsers
        with pytest.raises(SystemExit) as refusal:
            main([*common, "--source", str(sequence.root), *flags])
        assert refusal.value.code == 2
    assert main([*common, "--source", str(sequence.root), "--high-score", "0.7"]) == 2  # above new_track_score
    assert main([*common, "--source", str(sequence.root), "--classes", "person"]) == 1
    assert main([*common, "--source", str(tmp_path / "empty_dir_*.png")]) == 1
    (tmp_path / "empty").mkdir()
    assert main([*common, "--source", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "argument --link-gap: must be at least 0, got -1" in err and "argument --high-score: must be in [0, 1], got 2" in err
    assert "fcos track: error: TrackerConfig needs low_score <= high_score <= new_track_score, got 0.1, 0.7, 0.6" in err
    assert "unknown classes ['person']" in err and f"no frames or video in {tmp_path / 'empty'}" in err
    assert "Traceback" not in err


def test_the_cli_lets_a_bug_surface(sequence, tmp_path, monkeypatch):
    # only the input errors track_source names become one line: any other ValueError is a bug and keeps its traceback
    import fcos.track
    from fcos.cli import main

    def broken(*args, **kwargs):
        raise ValueError("a bug deep inside")

    monkeypatch.setattr(fcos.track, "track_source", broken)
    weights = tiny_checkpoint(tmp_path / "tiny.pt")
    with pytest.raises(ValueError, match="a bug deep inside"):
        main(["track", "--weights", str(weights), "--source", str(sequence.root), "--out", str(tmp_path / "o")])


def test_a_missing_ground_truth_file_is_named_before_any_frame_is_tracked(sequence, tmp_path, monkeypatch, capsys):
    import fcos.track
    from fcos.cli import main

    def tracked(*args, **kwargs):
        raise AssertionError("tracked before the --eval file was checked")

    monkeypatch.setattr(fcos.track, "track_source", tracked)
    weights = tiny_checkpoint(tmp_path / "tiny.pt")
    assert main(["track", "--weights", str(weights), "--source", str(sequence.root), "--out", str(tmp_path / "o"),
                 "--eval", str(tmp_path / "gt.txt")]) == 1
    assert capsys.readouterr().err == f"error: --eval {tmp_path / 'gt.txt'}: ground-truth file not found\n"


def test_classes_match_exactly_or_by_the_one_name_equal_ignoring_case():
    from fcos.track.run import _class_indices

    assert _class_indices(["Ellipse", "rectangle"], ["rectangle", "ellipse"]).tolist() == [1, 0]
    assert _class_indices(["car"], ["Car", "car"]).tolist() == [1]  # exact wins
    with pytest.raises(TrackInputError, match=r"unknown classes \['CAR'\]"):
        _class_indices(["CAR"], ["Car", "car"])  # two names equal ignoring case: ambiguous
