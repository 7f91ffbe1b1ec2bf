import os
import subprocess
import sys
from pathlib import Path

import pytest

from fcos.cli import main
from fcos.data.layouts import load_annotations

SRC = Path(__file__).resolve().parents[2] / "src"


def test_data_check_prints_counts(shared_data, capsys):
    assert main(["data", "check", "--data", str(shared_data / "fruit"), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "images: 13" in out and "apple 10, banana 8, orange 7" in out


def test_data_check_broken_dataset_exits_1_with_the_message(make_coco, coco_ann, capsys):
    path = make_coco(annotations=[coco_ann(17, [1, 1, 5, 5], category_id=99)])
    assert main(["data", "check", "--data", str(path.parent.parent)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: annotation id 17: category_id 99 is not in categories" in err
    assert "Traceback" not in err


def test_data_shapes_writes_a_loadable_dataset(tmp_path, capsys):
    assert (
        main(["data", "shapes", "--out", str(tmp_path / "s"), "--train", "6", "--val", "2", "--size", "96"])
        == 0
    )
    assert str(tmp_path / "s") in capsys.readouterr().out
    train = load_annotations(tmp_path / "s", "train")
    assert len(train.records) == 6 and train.records[0].width == 96
    assert len(load_annotations(tmp_path / "s", "val").records) == 2
    # --occlusion reaches the generator: the same seed, other images; a share outside [0, 1] is argparse's error.
    assert main(["data", "shapes", "--out", str(tmp_path / "o"), "--train", "6", "--val", "2", "--size", "96",
                 "--occlusion", "1"]) == 0
    assert any((tmp_path / "o" / "images" / p.name).read_bytes() != p.read_bytes()
               for p in (tmp_path / "s" / "images").iterdir())
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "shapes", "--out", str(tmp_path / "x"), "--occlusion", "1.5"])
    assert exit_info.value.code == 2 and "--occlusion: expected a number in [0, 1], got 1.5" in capsys.readouterr().err


def test_subprocess_exit_codes_and_no_traceback(make_coco, coco_ann):
    path = make_coco(annotations=[coco_ann(3, [90, 1, 5, 5])])
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    run = subprocess.run(
        [sys.executable, "-m", "fcos", "data", "check", "--data", str(path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 1, run.stderr
    assert "annotation id 3: bbox [90.0, 1.0, 5.0, 5.0] lies entirely outside the 40x30 image" in run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""


def test_data_convert_split_and_stats_from_the_cli(shared_data, tmp_path, capsys):
    yolo = tmp_path / "yolo"
    assert main(["data", "convert", "--data", str(shared_data / "fruit"), "--to", "yolo", "--out", str(yolo)]) == 0
    assert load_annotations(yolo, "val").report.boxes == load_annotations(shared_data / "fruit", "val").report.boxes
    split = tmp_path / "split"
    assert main(["data", "split", "--data", str(yolo), "--split", "train", "--val", "0.4", "--out", str(split)]) == 0
    assert len(load_annotations(split, "train")) + len(load_annotations(split, "val")) == 25
    assert main(["data", "stats", "--data", str(split), "--out", str(tmp_path / "stats")]) == 0
    assert (tmp_path / "stats" / "stats.json").is_file() and list((tmp_path / "stats").glob("*.png"))
    capsys.readouterr()
    assert main(["data", "convert", "--data", str(shared_data / "fruit"), "--to", "yolo", "--out", str(yolo)]) == 1
    assert "error:" in capsys.readouterr().err  # the output folder is not empty: one line, no traceback
