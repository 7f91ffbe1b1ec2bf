"""``fcos data show``: the grid shows training's first samples, augmented as training augments them."""

from __future__ import annotations

from PIL import Image

from fcos.cli import main
from fcos.config import InputConfig
from fcos.data import DetectionDataset, build_loader, load_annotations
from fcos.data.pipeline import training_pipeline
from fcos.data.show import show_samples
from fcos.engine.train_config import cpu_from_scratch


def test_grid_counts_equal_the_training_loaders_first_batch(shared_data, tmp_path):
    data = load_annotations(shared_data / "fruit", "train")
    config = cpu_from_scratch(data=str(shared_data / "fruit"), seed=5, mosaic=1.0, scale_jitter=(0.5, 1.5), min_visible=0.6)
    inputs = InputConfig(min_size=160, max_size=267)
    report = show_samples(data, tmp_path / "grid.png", augment=True, count=4, augmentation=config.augmentation(),
                          seed=config.seed, input_config=inputs, cell=100)
    pipeline = training_pipeline(inputs, config.augmentation(), records=data.records)
    _, targets = next(iter(build_loader(DetectionDataset(data, pipeline), 4, shuffle=True, seed=5)))
    assert report.samples == 4
    assert report.boxes == sum(len(t["boxes"]) for t in targets)
    assert report.dropped == sum(int(t["boxes_dropped"]) for t in targets)
    with Image.open(report.out) as grid:  # 2 x 2 tiles of 100 px, each with a caption strip below
        assert grid.format == "PNG" and grid.width > 2 * 100 and 2 * 100 + 2 * 12 < grid.height < 2 * 100 + 2 * 40
    plain = show_samples(data, tmp_path / "plain.png", count=4, seed=config.seed)
    shown = {int(t["image_id"]) for t in targets}  # without --augment: the same images, as annotated
    assert plain.dropped == 0 and plain.boxes == sum(len(r.boxes) for r in data.records if r.image_id in shown)


def test_cli_writes_the_png_and_says_what_it_shows(shared_data, tmp_path, capsys):
    out = tmp_path / "samples.png"
    code = main(["data", "show", "--data", str(shared_data / "raccoon"), "--augment", "--count", "3", "--img-size", "160",
                 "--multi-scale", "128-160", "--mosaic", "1", "--out", str(out)])
    assert code == 0 and out.is_file()
    assert f"wrote {out}: 3 samples" in capsys.readouterr().out
    assert main(["data", "show", "--data", str(shared_data / "raccoon"), "--split", "val", "--count", "2",
                 "--out", str(tmp_path / "val.png")]) == 0
