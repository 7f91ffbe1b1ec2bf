import os
import subprocess
import sys
from pathlib import Path

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
