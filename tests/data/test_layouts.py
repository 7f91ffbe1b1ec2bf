import shutil

import pytest

from fcos.data.errors import DatasetError
from fcos.data.layouts import load_annotations


def test_detects_coco_folder_json_file_and_yolo(shared_data):
    fruit = shared_data / "fruit"
    coco = load_annotations(fruit, "val")
    assert coco.format == "coco" and len(coco.records) == 13
    assert load_annotations(fruit / "annotations" / "val.json").report.boxes == 25
    yolo = load_annotations(fruit / "yolo", "val")
    assert yolo.format == "yolo" and yolo.report.boxes == 25
    assert load_annotations(fruit / "yolo" / "data.yaml", "val").format == "yolo"


def test_detects_voc(tmp_path, write_image):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("a\n")
    (tmp_path / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>8</width><height>8</height></size>"
        "<object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        "</annotation>"
    )
    write_image(tmp_path / "JPEGImages" / "a.jpg", 8, 8)
    data = load_annotations(tmp_path, "val", class_names=["y", "x"])
    assert data.format == "voc" and data.class_names == ["y", "x"] and data.records[0].labels.tolist() == [1]


def test_coco_json_elsewhere_and_named_like_instances(shared_data, tmp_path):
    fruit = shared_data / "fruit"
    (tmp_path / "annotations").mkdir()
    shutil.copy(fruit / "annotations" / "val.json", tmp_path / "annotations" / "instances_val2017.json")
    (tmp_path / "images").symlink_to(fruit / "images", target_is_directory=True)
    assert load_annotations(tmp_path, "val").report.images == 13
    loose = tmp_path / "loose.json"
    shutil.copy(fruit / "annotations" / "val.json", loose)
    assert load_annotations(loose, image_dir=fruit / "images").report.images == 13
    with pytest.raises(
        DatasetError, match=r"no annotation file for split 'test' \(found: instances_val2017.json\)"
    ):
        load_annotations(tmp_path, "test")


def test_the_official_coco_2017_folder_reads_as_unzipped(shared_data, tmp_path):
    """annotations/ holds captions_, instances_ and person_keypoints_ files per split and the unlabelled
    image_info_test-dev2017.json; the images sit in val2017/ beside it (or in images/val2017/)."""
    fruit = shared_data / "fruit"
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    for kind in ("captions", "instances", "person_keypoints"):
        shutil.copy(fruit / "annotations" / "val.json", annotations / f"{kind}_val2017.json")
    (annotations / "captions_val2017.json").write_text('{"images": [], "annotations": [{"caption": "a"}]}')
    (annotations / "image_info_test-dev2017.json").write_text('{"images": [], "categories": []}')
    (tmp_path / "val2017").symlink_to(fruit / "images", target_is_directory=True)
    data = load_annotations(tmp_path, "val")
    assert data.report.images == 13 and data.report.boxes == 25
    assert data.records[0].path.parent == tmp_path / "val2017"
    with pytest.raises(DatasetError, match=r"no annotation file for split 'test'"):
        load_annotations(tmp_path, "test")  # the test-dev image list is not a labelled split


def test_unknown_layouts_explain_the_three_layouts(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_annotations(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: unknown dataset layout")
    assert all(word in message for word in ("COCO:", "VOC:", "YOLO:", "ImageSets/Main", "data.yaml"))
    with pytest.raises(DatasetError, match="does not exist"):
        load_annotations(tmp_path / "nothing")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(DatasetError, match=r"x\.txt: not a \.json \(COCO\) or \.yaml \(YOLO\) file"):
        load_annotations(tmp_path / "x.txt")


def test_a_yolo_folder_without_data_yaml_is_yolo_for_reading_and_for_its_splits(tmp_path):
    # The layout table is the one place both look: labels/ alone marks a YOLO folder for each.
    from PIL import Image

    from fcos.data.layouts import find_splits, layout_of

    root = tmp_path / "yolo"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(root / "images" / "val" / "a.png")
    (root / "labels" / "val" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    assert layout_of(root).name == "yolo" and find_splits(root) == ["val"]
