import io
import shutil

import pytest

from fcos.data.check import check_dataset, check_splits
from fcos.data.errors import DatasetError
from fcos.data.layouts import find_splits


def test_check_returns_data_and_prints_summary(shared_data):
    out = io.StringIO()
    data = check_dataset(shared_data / "raccoon", "val", progress=False, out=out)
    assert len(data.records) == 8 and data.class_names == ["raccoon"]
    text = out.getvalue()
    assert "images: 8 (0 without objects)" in text and "boxes: 9 in 1 classes" in text
    assert "all 8 images decode at their declared size" in text


def test_check_opens_every_image(shared_data, tmp_path):
    root = tmp_path / "fruit"
    shutil.copytree(shared_data / "fruit" / "annotations", root / "annotations")
    shutil.copytree(shared_data / "fruit" / "images", root / "images")
    data = check_dataset(root, "val", progress=False, out=io.StringIO())
    last = data.records[-1].path
    last.write_bytes(last.read_bytes()[:500])  # reading the annotations alone would not notice
    with pytest.raises(DatasetError, match=rf"{last.name}: cannot decode the image"):
        check_dataset(root, "val", progress=False, out=io.StringIO())


def _two_broken(root):
    """The fruit val split (copied) with its 3rd image truncated and its 5th replaced by text."""
    data = check_dataset(root, "val", progress=False, out=io.StringIO())
    third, fifth = data.records[2].path, data.records[4].path
    third.write_bytes(third.read_bytes()[:2000])
    fifth.write_text("not an image")
    return data, third, fifth


def test_skip_bad_images_counts_and_names_them(shared_data, tmp_path):
    root = tmp_path / "fruit"
    shutil.copytree(shared_data / "fruit" / "annotations", root / "annotations")
    shutil.copytree(shared_data / "fruit" / "images", root / "images")
    before, third, fifth = _two_broken(root)
    with pytest.raises(DatasetError, match=rf"{third.name}: cannot decode the image"):  # the first, in order
        check_dataset(root, "val", progress=False, out=io.StringIO())
    out = io.StringIO()
    data = check_dataset(root, "val", skip_bad_images=True, progress=False, out=out)
    assert [r.path for r in data.records] == [r.path for r in before.records if r.path not in (third, fifth)]
    lost = len(before.records[2].boxes) + len(before.records[4].boxes)
    kept = len(before.records) - 2
    assert data.report.images == kept and data.report.boxes == before.report.boxes - lost
    text = out.getvalue()
    assert "unreadable images skipped (--skip-bad-images): 2" in text
    assert f"{third}: cannot decode the image" in text and f"{fifth}: not an image" in text
    assert f"images: {kept} (" in text


def test_data_check_cli_skip_flag(shared_data, tmp_path, capsys):
    from fcos.cli import main

    root = tmp_path / "fruit"
    shutil.copytree(shared_data / "fruit" / "annotations", root / "annotations")
    shutil.copytree(shared_data / "fruit" / "images", root / "images")
    _, third, _ = _two_broken(root)
    assert main(["data", "check", "--data", str(root), "--split", "val"]) == 1
    err = capsys.readouterr().err
    assert f"\nerror: {third}: cannot decode the image" in err and "Traceback" not in err
    assert main(["data", "check", "--data", str(root), "--split", "val", "--skip-bad-images"]) == 0
    assert "unreadable images skipped (--skip-bad-images): 2" in capsys.readouterr().out


def _copy_fruit(shared_data, tmp_path):
    root = tmp_path / "fruit"
    shutil.copytree(shared_data / "fruit" / "annotations", root / "annotations")
    shutil.copytree(shared_data / "fruit" / "images", root / "images")
    return root


def test_find_splits_per_layout(shared_data, tmp_path):
    assert find_splits(shared_data / "fruit") == ["train", "val"]  # COCO folder
    assert find_splits(shared_data / "fruit" / "yolo") == ["train", "val"]  # YOLO folder with data.yaml
    assert find_splits(shared_data / "fruit" / "yolo" / "data.yaml") == ["train", "val"]
    assert find_splits(shared_data / "fruit" / "annotations" / "val.json") == ["train"]  # one file, one split
    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "val.txt").write_text("a\n")
    (voc / "ImageSets" / "Main" / "dog_val.txt").write_text("a 1\n")  # a per-class list is not a split
    assert find_splits(voc) == ["val"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no train, val, test split found"):
        find_splits(tmp_path / "empty")


def test_check_splits_checks_val_too(shared_data, tmp_path):
    root = _copy_fruit(shared_data, tmp_path)
    out = io.StringIO()
    checked = check_splits(root, progress=False, out=out)
    assert list(checked) == ["train", "val"] and out.getvalue().count("decode at their declared size") == 2
    assert checked["val"].class_names == checked["train"].class_names
    # a broken validation image is found before any training, naming the file; --split train skips val
    broken = checked["val"].records[-1].path
    broken.write_bytes(broken.read_bytes()[:500])
    with pytest.raises(DatasetError, match=rf"{broken.name}: cannot decode the image"):
        check_splits(root, progress=False, out=io.StringIO())
    assert list(check_splits(root, ["train"], progress=False, out=io.StringIO())) == ["train"]


def test_data_check_cli_default_is_every_split(shared_data, tmp_path, capsys):
    from fcos.cli import main

    root = _copy_fruit(shared_data, tmp_path)
    assert main(["data", "check", "--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert "annotations/train.json" in out and "annotations/val.json" in out
    val = check_splits(root, ["val"], progress=False, out=io.StringIO())["val"]
    val.records[0].path.write_text("not an image")
    assert main(["data", "check", "--data", str(root)]) == 1
    assert f"{val.records[0].path}: not an image" in capsys.readouterr().err
    assert main(["data", "check", "--data", str(root), "--split", "train"]) == 0


def test_skip_bad_images_also_leaves_out_images_that_are_not_there(shared_data, tmp_path, make_voc):
    """A scraped dataset whose annotations name files that never arrived: COCO and VOC."""
    root = _copy_fruit(shared_data, tmp_path)
    before = check_dataset(root, "val", progress=False, out=io.StringIO())
    gone = before.records[1].path
    gone.unlink()
    with pytest.raises(DatasetError, match=rf"{gone.name}: image file not found"):
        check_dataset(root, "val", progress=False, out=io.StringIO())
    out = io.StringIO()
    data = check_dataset(root, "val", skip_bad_images=True, progress=False, out=out)
    assert [r.path for r in data.records] == [r.path for r in before.records if r.path != gone]
    assert data.report.boxes == before.report.boxes - len(before.records[1].boxes)
    assert "unreadable images skipped (--skip-bad-images): 1" in out.getvalue()
    assert f"{gone}: image file not found" in out.getvalue()

    xml = ("<annotation><filename>{}.jpg</filename><size><width>40</width><height>30</height></size><object>"
           "<name>cat</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>20</xmax><ymax>25</ymax></bndbox></object>"
           "</annotation>")
    voc = make_voc({stem: xml.format(stem) for stem in ("a", "b", "c")})
    (voc / "JPEGImages" / "a.jpg").unlink()
    kept = check_dataset(voc, "train", skip_bad_images=True, progress=False, out=io.StringIO())
    assert [r.path.name for r in kept.records] == ["b.jpg", "c.jpg"] and kept.class_names == ["cat"]
    assert kept.report.skipped_images == [f"{voc / 'JPEGImages' / 'a.jpg'}: image file not found (named by "
                                          f"{voc / 'Annotations' / 'a.xml'})"]
    for stem in ("b", "c"):
        (voc / "JPEGImages" / f"{stem}.jpg").unlink()
    with pytest.raises(DatasetError, match=r"none of the 3 images it lists is there"):
        check_dataset(voc, "train", skip_bad_images=True, progress=False, out=io.StringIO())
