"""A broken image in a training set: the run stops with one line naming the file (also when a DataLoader
worker process meets it), or, with --skip-bad-images, leaves it out, says so, and trains on the rest."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fcos.cli import main
from fcos.data import generate_shapes, load_annotations

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def tiny_train(data, out, *extra):
    return ["train", "--data", str(data), "--out", str(out), "--backbone", "resnet18", "--img-size", "128",
            "--fpn-channels", "32", "--head-convs", "1", "--recipe", "cpu", "--batch-size", "2", "--max-iters", "2",
            "--val-split", "none", "--no-progress", *extra]


@pytest.fixture
def broken_shapes(tmp_path):
    """Six 96-px shapes images; the 4th is cut short (its header is intact: annotation loading passes)."""
    root = generate_shapes(tmp_path / "shapes", num_train=6, num_val=1, image_size=96)
    broken = load_annotations(root, "train").records[3].path
    broken.write_bytes(broken.read_bytes()[:1500])
    return root, broken


def test_broken_image_met_by_a_worker_is_one_line(broken_shapes, tmp_path):
    root, broken = broken_shapes
    proc = subprocess.run([sys.executable, "-m", "fcos", *tiny_train(root, tmp_path / "run", "--workers", "1")],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "DataLoader worker" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {broken}: cannot decode the image"), proc.stderr[-3000:]


def test_skip_bad_images_trains_on_the_rest(broken_shapes, tmp_path, capsys):
    root, broken = broken_shapes
    assert main(tiny_train(root, tmp_path / "run", "--workers", "0", "--skip-bad-images")) == 0
    out = capsys.readouterr().out
    assert "images: 5 (" in out and "unreadable images skipped (--skip-bad-images): 1" in out
    assert f"{broken}: cannot decode the image" in out
    assert (tmp_path / "run" / "last.pt").is_file()


def test_a_broken_validation_image_keeps_the_updates_made(tmp_path, capsys):
    """Met at the first evaluation, after the updates: they are saved in last.pt and the run resumes."""
    root = generate_shapes(tmp_path / "shapes", num_train=4, num_val=2, image_size=96)
    broken = load_annotations(root, "val").records[1].path
    broken.write_bytes(broken.read_bytes()[:1500])
    args = [a for a in tiny_train(root, tmp_path / "run", "--workers", "0") if a not in ("--val-split", "none")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {broken}: cannot decode the image") and "the 2 updates so far are in" in err
    from fcos.weights.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "run" / "last.pt")["iteration"] == 2


def test_a_dataset_without_the_validation_split_says_how_to_go_on(tmp_path, capsys):
    root = generate_shapes(tmp_path / "shapes", num_train=2, num_val=1, image_size=96)
    (root / "annotations" / "val.json").unlink()
    args = [a for a in tiny_train(root, tmp_path / "run") if a not in ("--val-split", "none")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no annotation file for split 'val'" in err
    assert "--val-split none" in err and not (tmp_path / "run" / "last.pt").exists()
