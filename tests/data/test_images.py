"""fcos.data.images: awkward but valid images decode to the right RGB pixels in datasets, predict and serve
alike; EXIF orientation follows the declared size in datasets; bombs are refused from the header; broken
files are named errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from image_files import BOMB_SIDE, bomb, encode, jpeg_with_orientation, png_bytes
from PIL import Image

from fcos.data.dataset import DetectionDataset, decode_image
from fcos.data.errors import DatasetError
from fcos.data.images import (
    IMAGE_SUFFIXES,
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    open_image,
    read_image,
)
from fcos.data.layouts import load_annotations
from fcos.data.records import DetectionData, ImageRecord, LoadReport
from fcos.data.yolo import read_yolo

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8)  # [H, W, 3]
# Flat 4x4 colour blocks: JPEG reproduces them within a few levels (the 8x8 DCT of a smooth tile).
BLOCKS = np.kron(RNG.integers(30, 226, (4, 6, 3)), np.ones((4, 4, 1))).astype(np.uint8)  # 16 x 24
GRAY_BLOCKS = np.repeat(BLOCKS[..., :1], 3, axis=2)


def _palette_with_transparency() -> tuple[bytes, np.ndarray]:
    image = Image.new("P", (16, 12))
    palette = RNG.integers(0, 256, (8, 3), dtype=np.uint8)
    image.putpalette(palette.reshape(-1).tolist())
    index = RNG.integers(0, 8, (12, 16), dtype=np.uint8)
    image.putdata(index.reshape(-1).tolist())
    return encode(image, "PNG", transparency=bytes([0, 128, 255, 255, 255, 255, 255, 255])), palette[index]


def _cases() -> dict[str, tuple[str, bytes, np.ndarray, int]]:
    """name -> (suffix, file bytes, expected RGB [H, W, 3] uint8, tolerance in levels)."""
    gray = PIXELS[..., 0]
    alpha = RNG.integers(0, 256, gray.shape, dtype=np.uint8)
    sixteen = RNG.integers(0, 65536, (12, 16, 3), dtype=np.uint16)
    sixteen[0, :3] = [[65535, 65535, 65535], [65280, 1000, 0], [255, 256, 40000]]
    palette_file, palette_rgb = _palette_with_transparency()
    rgba = np.dstack([PIXELS, alpha])
    rgba[:4, :, 3] = 0  # fully transparent rows keep their stored colour
    cmyk = Image.fromarray(BLOCKS).convert("CMYK")
    return {
        "grayscale": (".png", encode(Image.fromarray(gray), "PNG"), np.dstack([gray] * 3), 0),
        "grayscale_alpha": (".png", png_bytes(np.dstack([gray, alpha])), np.dstack([gray] * 3), 0),
        "palette_transparency": (".png", palette_file, palette_rgb, 0),
        "rgba": (".png", encode(Image.fromarray(rgba), "PNG"), PIXELS, 0),
        "gray_16bit": (".png", png_bytes(sixteen[..., 0], 16), np.dstack([sixteen[..., 0] >> 8] * 3), 0),
        "rgb_16bit": (".png", png_bytes(sixteen, 16), sixteen >> 8, 0),
        "gray_alpha_16bit": (".png", png_bytes(np.dstack([sixteen[..., 0], sixteen[..., 1]]), 16),
                             np.dstack([sixteen[..., 0] >> 8] * 3), 0),
        "tiff_16bit": (".tif", encode(Image.fromarray(sixteen[..., 2]), "TIFF"), np.dstack([sixteen[..., 2] >> 8] * 3), 0),
        "cmyk_jpeg": (".jpg", encode(cmyk, "JPEG", quality=98, subsampling=0), BLOCKS, 6),
        "webp_lossless": (".webp", encode(Image.fromarray(PIXELS), "WEBP", lossless=True), PIXELS, 0),
        # lossy WebP halves the chroma resolution: a gray picture isolates the decoding from that loss
        "webp_lossy": (".webp", encode(Image.fromarray(GRAY_BLOCKS), "WEBP", quality=100), GRAY_BLOCKS, 8),
        "gif": (".gif", encode(Image.fromarray(palette_rgb), "GIF"), palette_rgb, 0),
        "upper_case_suffix": (".PNG", encode(Image.fromarray(PIXELS), "PNG"), PIXELS, 0),
        # JPEG stored sideways (as a phone writes it) with orientation 6: upright = stored turned clockwise
        "exif_rotated_jpeg": (".jpg", jpeg_with_orientation(Image.fromarray(BLOCKS), 6, quality=98, subsampling=0),
                              np.rot90(BLOCKS, k=-1), 6),
    }


CASES = _cases()


def via_dataset(path: Path, expected: np.ndarray) -> Image.Image:
    height, width = expected.shape[:2]
    return decode_image(path, width, height)


def via_predict(path: Path, expected: np.ndarray) -> Image.Image:
    from fcos.predict import read_image as predict_read_image

    return predict_read_image(path)


def via_serve(path: Path, expected: np.ndarray) -> Image.Image:
    uploads = pytest.importorskip("fcos.serve.uploads", reason="the serve extra (fastapi) is not installed")
    upload = uploads.open_upload(path.read_bytes(), conf=0.3, max_pixels=40_000_000, min_side=1)
    return uploads.decode_upload(upload)


@pytest.mark.parametrize("entry", [via_dataset, via_predict, via_serve], ids=["dataset", "predict", "serve"])
@pytest.mark.parametrize("case", list(CASES))
def test_awkward_images_decode_to_the_right_rgb_everywhere(tmp_path, case, entry):
    suffix, data, expected, tolerance = CASES[case]
    path = tmp_path / f"image{suffix}"
    path.write_bytes(data)
    rgb = entry(path, expected)
    assert rgb.mode == "RGB" and rgb.size == (expected.shape[1], expected.shape[0])
    error = np.abs(np.asarray(rgb, dtype=np.int16) - expected.astype(np.int16))
    assert error.max() <= tolerance, (case, error.max())


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 255, 256, 1000, 32768, 65535]], np.uint16)
    got = np.asarray(read_image(png_bytes(values, 16)))[0, :, 0]
    assert got.tolist() == [0, 0, 1, 3, 128, 255]  # Pillow's own convert("RGB") gives [0, 255, 255, ...]


def test_one_suffix_list_in_any_case(tmp_path):
    from fcos import predict

    assert predict.IMAGE_SUFFIXES is IMAGE_SUFFIXES and all(s == s.lower() for s in IMAGE_SUFFIXES)
    for name in ("a.JPG", "b.Png", "c.webp", "d.TIFF", "e.gif"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in predict.list_images(tmp_path)] == ["a.JPG", "b.Png", "c.webp", "d.TIFF", "e.gif"]


def test_yolo_reads_upper_case_suffixes(make_yolo):
    root = make_yolo({"a": "0 0.5 0.5 0.5 0.5\n"})
    (root / "images" / "train" / "a.png").rename(root / "images" / "train" / "a.PNG")
    (data := read_yolo(root, "train"))
    assert [r.path.name for r in data.records] == ["a.PNG"] and len(data.records[0].boxes) == 1


# --- EXIF orientation in datasets: the declared size says which pixels the annotations describe ------


@pytest.fixture
def sideways_jpeg(tmp_path) -> Path:
    """Stored 24 x 16 (w x h) with orientation 6: upright it is 16 x 24."""
    path = tmp_path / "phone.jpg"
    path.write_bytes(jpeg_with_orientation(Image.fromarray(BLOCKS), 6, quality=98, subsampling=0))
    return path


def _close(image: Image.Image, expected: np.ndarray) -> bool:
    got = np.asarray(image, dtype=np.int16)
    return got.shape == expected.shape and np.abs(got - expected).max() <= 6


def test_declared_rotated_size_gets_the_rotated_pixels(sideways_jpeg):
    assert _close(decode_image(sideways_jpeg, 16, 24), np.rot90(BLOCKS, k=-1).astype(np.int16))


def test_declared_stored_size_gets_the_stored_pixels(sideways_jpeg):
    assert _close(decode_image(sideways_jpeg, 24, 16), BLOCKS.astype(np.int16))


def test_declared_other_size_names_both_sizes(sideways_jpeg):
    with pytest.raises(DatasetError, match=r"phone\.jpg: image is 24x16 \(16x24 after its EXIF rotation\) "
                                           r"but the annotations declare 20x20"):
        decode_image(sideways_jpeg, 20, 20)


def test_rotation_that_keeps_the_size_is_applied(tmp_path):
    path = tmp_path / "upside_down.jpg"
    path.write_bytes(jpeg_with_orientation(Image.fromarray(BLOCKS), 3, quality=98, subsampling=0))
    assert _close(decode_image(path, 24, 16), np.rot90(BLOCKS, k=2).astype(np.int16))


def test_yolo_labels_describe_the_upright_image(tmp_path, sideways_jpeg):
    """Ultralytics normalises labels by the EXIF-corrected size and trains on the upright image."""
    root = tmp_path / "yolo"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    sideways_jpeg.rename(root / "images" / "train" / "phone.jpg")
    (root / "labels" / "train" / "phone.txt").write_text("0 0.25 0.5 0.5 0.25\n")  # left half, middle
    (root / "data.yaml").write_text("names: [thing]\n")
    data = read_yolo(root, "train")
    record = data.records[0]
    assert (record.width, record.height) == (16, 24)
    assert record.boxes.tolist() == [[0.0, 9.0, 8.0, 15.0]]
    image, _ = DetectionDataset(data)[0]
    assert image.shape == (3, 24, 16)
    expected = np.rot90(BLOCKS, k=-1).astype(np.float32) / 255
    assert np.abs(image.permute(1, 2, 0).numpy() - expected).max() <= 6 / 255


def test_coco_dataset_with_rotated_declared_size(make_coco, sideways_jpeg):
    path = make_coco(images=[{"id": 1, "file_name": "phone.jpg", "width": 16, "height": 24}])
    sideways_jpeg.replace(path.parent.parent / "images" / "phone.jpg")
    image, target = DetectionDataset(load_annotations(path))[0]
    assert image.shape == (3, 24, 16) and target["orig_size"].tolist() == [24, 16]


# --- broken files and bombs -------------------------------------------------------------------------


def _broken_files() -> dict[str, tuple[bytes, type[ImageError], str]]:
    jpeg = encode(Image.fromarray(PIXELS), "JPEG")
    png = encode(Image.fromarray(PIXELS), "PNG")
    return {
        "empty.jpg": (b"", CorruptImageError, "empty file"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], CorruptImageError, "cannot decode the image: corrupt or truncated"),
        "truncated.png": (png[: len(png) - 40], CorruptImageError, "cannot decode the image: corrupt or truncated"),
        "garbage.png": (os.urandom(3000), NotAnImageError, "not an image"),
        "report.jpg": (b"%PDF-1.4 a document with the wrong suffix", NotAnImageError, "not an image"),
        "photo.webp": (b"RIFF\x10\x00\x00\x00WEBPVP8 broken", CorruptImageError, "cannot decode the image"),
    }


@pytest.mark.parametrize("name", list(_broken_files()))
def test_broken_files_are_named_errors(tmp_path, name):
    data, error, message = _broken_files()[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(error, match=message) as info:
        read_image(path)
    assert str(info.value).startswith(f"{path}: ")
    with pytest.raises(DatasetError, match=rf"{name}: .*{message}"):
        decode_image(path, 16, 12)


def test_valid_image_with_another_formats_suffix_decodes_by_content(tmp_path):
    path = tmp_path / "really_a_png.jpg"
    path.write_bytes(encode(Image.fromarray(PIXELS), "PNG"))
    assert np.array_equal(np.asarray(read_image(path)), PIXELS)


def test_missing_file():
    with pytest.raises(ImageError, match=r"nope\.jpg: image file not found"):
        read_image(Path("nope.jpg"))


@pytest.mark.parametrize("fmt", ["png", "jpeg", "gif", "bmp", "webp"])
def test_bombs_are_refused_from_the_header_everywhere(tmp_path, make_yolo, fmt):
    data = bomb(fmt)
    assert len(data) < 1000
    with pytest.raises(ImageTooLargeError, match=r"declares .*[\d,]{11} pixels; the limit is 178,956,970"):
        open_image(data)  # WebP's largest side is 16,383: 268,435,456 pixels; the others 1,600,000,000
    path = tmp_path / f"bomb.{fmt}"
    path.write_bytes(data)
    with pytest.raises(ImageTooLargeError):
        read_image(path)
    with pytest.raises(DatasetError, match=r"bomb\.\w+: .*[\d,]{11} pixels; the limit"):
        decode_image(path, BOMB_SIDE, BOMB_SIDE)
    root = make_yolo({"a": ""})
    (root / "images" / "train" / "a.png").write_bytes(data)
    with pytest.raises(DatasetError, match=r"a\.png: .*[\d,]{11} pixels; the limit"):
        read_yolo(root, "train")  # the header read of the annotation load refuses it already


def test_own_pixel_limit_below_pillows(tmp_path):
    data = png_bytes(np.zeros((300, 200), np.uint8))
    with pytest.raises(ImageTooLargeError, match=r"declares 200x300 = 60,000 pixels; the limit is 50,000"):
        open_image(data, max_pixels=50_000)
    assert read_image(data, max_pixels=60_000).size == (200, 300)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])  # a TIFF's load checks Pillow's limit again
def test_own_pixel_limit_above_pillows(monkeypatch, fmt):
    """--max-pixels for a mosaic larger than Pillow's own limit (Pillow refuses above twice it, before the
    check by max_pixels): here Pillow's limit is lowered to 1,000 so that a 200x300 image stands for one."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    data = encode(Image.fromarray(np.zeros((300, 200, 3), np.uint8)), fmt)
    with pytest.raises(ImageTooLargeError, match=r"declares 60,000 pixels; the limit is 1,500"):
        open_image(data, max_pixels=1_500)  # Pillow's refusal, in fcos's words and limit
    assert read_image(data, max_pixels=60_000).size == (200, 300)
    with pytest.raises(ImageTooLargeError, match=r"declares 200x300 = 60,000 pixels; the limit is 59,999"):
        open_image(data, max_pixels=59_999)  # still checked by the caller's own limit


_NO_ALLOCATION = """
import resource, sys
from pathlib import Path
from fcos.data.dataset import decode_image
from fcos.data.errors import DatasetError
from fcos.data.images import ImageTooLargeError, read_image
from fcos.predict import read_image as predict_read_image

# Allow 300 MB more address space than the process has now: decoding any bomb needs gigabytes.
vm = int(next(line for line in open("/proc/self/status") if line.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 300 * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
try:
    bytearray(2**30)
    sys.exit("the address-space limit does not hold: the test would prove nothing")
except MemoryError:
    pass
for path in map(Path, sys.argv[1:]):
    for read in (read_image, predict_read_image, lambda p: decode_image(p, 40000, 40000)):
        try:
            read(path)
        except (ImageTooLargeError, DatasetError) as exc:
            assert "pixels; the limit is 178,956,970" in str(exc), exc
        else:
            sys.exit(f"{path} was decoded")
print("refused", len(sys.argv) - 1)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux")
def test_bombs_allocate_nothing(tmp_path):
    paths = []
    for fmt in ("png", "jpeg", "gif", "bmp", "webp"):
        paths.append(tmp_path / f"bomb.{fmt}")
        paths[-1].write_bytes(bomb(fmt))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_NO_ALLOCATION), *map(str, paths)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "refused 5" in proc.stdout, proc.stderr[-3000:]


def test_check_names_the_broken_file(tmp_path):
    """Also in a Dataset: DatasetError naming the file (not a Pillow exception from deep inside)."""
    good = tmp_path / "good.png"
    good.write_bytes(encode(Image.fromarray(PIXELS), "PNG"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(encode(Image.fromarray(PIXELS), "PNG")[:-40])
    records = [ImageRecord(good, 1, 16, 12), ImageRecord(broken, 2, 16, 12)]
    dataset = DetectionDataset(DetectionData(records, ["a"], [1], LoadReport(), tmp_path, "coco"))
    assert dataset[0][0].shape == (3, 12, 16)
    with pytest.raises(DatasetError, match=r"broken\.png: cannot decode the image"):
        dataset[1]


def test_a_folder_is_not_an_image(tmp_path):
    (tmp_path / "album.jpg").mkdir()
    with pytest.raises(ImageError, match=r"album\.jpg: cannot read the file: Is a directory"):
        read_image(tmp_path / "album.jpg")
