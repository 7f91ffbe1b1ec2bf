import numpy as np
import pytest
import torch
from PIL import Image

from fcos.data.dataset import DetectionDataset, decode_image, load_image
from fcos.data.errors import DatasetError
from fcos.data.layouts import load_annotations
from fcos.data.records import DetectionData, ImageRecord, LoadReport
from fcos.data.transforms import Compose, RandomHorizontalFlip, Resize


def _data(records: list[ImageRecord]) -> DetectionData:
    return DetectionData(records, ["a", "b"], [1, 2], LoadReport(), records[0].path.parent, "coco")


def test_samples_from_a_real_dataset(shared_data):
    dataset = DetectionDataset(load_annotations(shared_data / "fruit", "val"))
    assert (
        len(dataset) == 13
        and dataset.num_classes == 3
        and dataset.class_names == ["apple", "banana", "orange"]
    )
    record = dataset.data.records[7]
    image, target = dataset[7]
    assert image.dtype == torch.float32 and image.shape == (3, record.height, record.width)
    assert 0 <= image.min() and image.max() <= 1 and image.max() > 0.5
    assert set(target) == {"boxes", "labels", "image_id", "orig_size"}
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (len(record.boxes), 4)
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == record.labels.tolist()
    assert (
        target["image_id"].dtype == torch.int64
        and target["image_id"].shape == ()
        and int(target["image_id"]) == record.image_id
    )
    assert target["orig_size"].dtype == torch.int64 and target["orig_size"].tolist() == [
        record.height,
        record.width,
    ]
    # The target holds copies: transforms that modify in place cannot corrupt the records.
    target["boxes"] += 1
    assert torch.equal(dataset[7][1]["boxes"], torch.from_numpy(record.boxes))


def test_pixels_are_the_decoded_rgb_values(tmp_path, write_image):
    path = write_image(tmp_path / "x.png", 12, 7)
    image = load_image(ImageRecord(path, 1, 12, 7))
    expected = torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1).float() / 255
    assert torch.equal(image, expected)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_non_rgb_images_become_rgb(tmp_path, write_image, mode):
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = write_image(tmp_path / f"x{suffix}", 12, 7, mode=mode)
    assert Image.open(path).mode == mode
    image = load_image(ImageRecord(path, 1, 12, 7))
    assert image.shape == (3, 7, 12) and image.dtype == torch.float32
    if mode == "L":
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_transforms_are_applied_and_orig_size_kept(tmp_path, write_image):
    path = write_image(tmp_path / "x.png", 40, 20)
    record = ImageRecord(path, 3, 40, 20, [[0, 0, 10, 10]], [1])
    dataset = DetectionDataset(_data([record]), Compose([RandomHorizontalFlip(1.0), Resize(40, 1000)]))
    image, target = dataset[0]
    assert image.shape == (3, 40, 80)
    assert target["boxes"].tolist() == [[60.0, 0.0, 80.0, 20.0]] and target["orig_size"].tolist() == [20, 40]


def test_declared_size_mismatch_names_file_and_both_sizes(tmp_path, write_image):
    path = write_image(tmp_path / "x.png", 40, 20)
    dataset = DetectionDataset(_data([ImageRecord(path, 1, 20, 40)]))
    with pytest.raises(DatasetError, match=r"x\.png: image is 40x20 but the annotations declare 20x40"):
        dataset[0]


def test_truncated_corrupt_and_missing_images(tmp_path, write_image):
    path = write_image(tmp_path / "x.jpg", 64, 64)
    path.write_bytes(path.read_bytes()[:300])  # header intact, pixel data cut
    with pytest.raises(DatasetError, match=r"x\.jpg: cannot decode the image: corrupt or truncated"):
        decode_image(path, 64, 64)
    path.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="not an image in a supported format"):
        decode_image(path, 64, 64)
    with pytest.raises(DatasetError, match=r"nope\.jpg: image file not found"):
        decode_image(tmp_path / "nope.jpg", 64, 64)
