"""The CLI end to end on a real dataset: train -> eval -> predict, each a subprocess like a user runs it."""

import json
import shutil
import subprocess
import sys

import pytest

from fcos.weights.checkpoint import load_checkpoint, save_checkpoint


def fcos(*args, timeout=600):
    proc = subprocess.run([sys.executable, "-m", "fcos", *map(str, args)], capture_output=True, text=True, timeout=timeout)
    return proc


@pytest.mark.slow
def test_train_eval_predict_round_trip(shared_data, tmp_path):
    run = tmp_path / "run"
    proc = fcos("train", "--data", shared_data / "fruit", "--out", run, "--backbone", "resnet18", "--img-size", 128,
                "--fpn-channels", 32, "--head-convs", 1, "--recipe", "cpu", "--batch-size", 4, "--max-iters", 4,
                "--workers", 0, "--no-progress", "--conv3x3", "winograd")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done: AP" in proc.stdout
    assert "conv3x3: winograd" in (run / "config.yaml").read_text()
    for name in ("config.yaml", "metrics.jsonl", "loss_curve.png", "val_predictions.png", "last.pt", "best.pt"):
        assert (run / name).is_file(), name

    proc = fcos("eval", "--weights", run / "last.pt", "--data", shared_data / "fruit", "--json", tmp_path / "m.json", "--workers", 0,
                "--out", tmp_path / "eval")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name for p in (tmp_path / "eval").iterdir()} == {"pr_curves.png", "confusion_matrix.png", "per_class.csv",
                                                               "per_class.json"}
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl", "per_class"} <= set(metrics)
    assert set(metrics["per_class"]) == {"apple", "banana", "orange"}
    assert "per-class AP" in proc.stdout and "banana" in proc.stdout

    # Four updates leave every score under the decoder's threshold: lift the classification prior of the
    # trained checkpoint so prediction has boxes to write (the plumbing is what is tested here).
    state = load_checkpoint(run / "last.pt")
    state["model"]["head.cls_logits.bias"] += 4.0
    save_checkpoint(state, run / "lifted.pt")
    images = tmp_path / "images"
    images.mkdir()
    for name in ("apple_1.jpg", "banana_1.jpg", "mixed_1.jpg"):
        shutil.copy(shared_data / "fruit" / "images" / name, images)
    proc = fcos("predict", "--weights", run / "lifted.pt", "--source", images, "--out", tmp_path / "pred", "--conf", 0.0)
    assert proc.returncode == 0, proc.stderr[-3000:]
    predictions = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert {p["file_name"] for p in predictions} <= {"apple_1.jpg", "banana_1.jpg", "mixed_1.jpg"} and predictions
    assert {"image_id", "category_id", "category_name", "bbox", "score"} <= set(predictions[0])
    assert len(list((tmp_path / "pred").glob("*.jpg"))) + len(list((tmp_path / "pred").glob("*.png"))) == 3


def test_errors_are_one_line_messages(tmp_path):
    proc = fcos("eval", "--weights", tmp_path / "missing.pt", "--data", tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "not found" in proc.stderr
    proc = fcos("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "error:" in proc.stderr
