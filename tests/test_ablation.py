"""The augmentation ablation harness runs end to end (tiny model, 2 updates; no figures)."""

from __future__ import annotations

import json

import pytest

from bench.ablation import VARIANTS, main, table
from fcos.weights.checkpoint import load_checkpoint


def test_quick_ablation_trains_each_variant_and_writes_the_table(shared_data, tmp_path, capsys):
    code = main(["--quick", "--data-root", str(shared_data), "--datasets", "raccoon", "--variants", "none", "all",
                 "--out", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "ablation.json").read_text())
    runs = result["runs"]
    assert [r["variant"] for r in runs] == ["none", "all"] and result["updates"] == 2
    assert all(r["updates"] == 2 and 0.0 <= r["AP"] <= 1.0 and r["dataset"] == "raccoon" for r in runs)
    assert runs[0]["augmentation"] == {"hflip": 0.0, "photometric": False, "multi_scale": None, "scale_jitter": None,
                                       "mosaic": 0.0}
    assert runs[1]["augmentation"]["mosaic"] == VARIANTS["all"]["mosaic"]
    model = load_checkpoint(tmp_path / "raccoon" / "all" / "last.pt")["config"]  # the stated tiny model
    assert (model["backbone"]["name"], model["fpn"]["channels"], model["head"]["num_convs"]) == ("resnet18", 32, 1)
    assert (model["input"]["min_size"], model["input"]["max_size"], model["num_classes"]) == (128, 213, 1)
    out = capsys.readouterr().out
    assert "| variant | raccoon AP | raccoon AP50 |" in out and "| all | " in out


def test_table_leaves_missing_cells_empty():
    records = [{"dataset": "fruit", "variant": "none", "AP": 0.5, "AP50": 0.75},
               {"dataset": "raccoon", "variant": "all", "AP": 0.25, "AP50": 0.5}]
    assert table(records).splitlines()[2:] == ["| none | 0.500 | 0.750 |  |  |", "| all |  |  | 0.250 | 0.500 |"]


def test_absent_datasets_are_named(tmp_path):
    with pytest.raises(SystemExit, match="not found"):
        main(["--data-root", str(tmp_path), "--datasets", "fruit"])
