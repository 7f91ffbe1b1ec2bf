import io
import shutil

import pytest

from fcos.data.check import check_dataset
from fcos.data.errors import DatasetError


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
