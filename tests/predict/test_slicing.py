"""Sliced prediction: the tile grid by hand, boxes mapped back exactly (a stub network that returns one
known box per view), merging on hand cases, and a tile at least as large as the image giving the
whole-image prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fcos.predict import Predictor
from fcos.predict.merge import merge_detections
from fcos.predict.options import InferenceOptions, TileInfo, parse_slice
from fcos.predict.slicing import View, axis_starts, map_back, tile_grid


@pytest.mark.parametrize(("length", "tile", "overlap", "starts"), [
    (1000, 512, 0.2, [0, 410, 488]),  # step 512 - 102 = 410; the last flush with the border
    (1024, 512, 0.0, [0, 512]),  # exact cover: no extra tile
    (1025, 512, 0.0, [0, 512, 513]),
    (512, 512, 0.2, [0]),  # one tile: the whole axis
    (300, 512, 0.2, [0]),  # smaller than a tile
    (1280, 512, 0.25, [0, 384, 768]),  # 768 + 512 = 1280: the grid's last start is already flush
])
def test_axis_starts_by_hand(length, tile, overlap, starts):
    assert axis_starts(length, tile, overlap) == starts


def test_grid_covers_the_image_row_by_row_with_whole_tiles():
    windows = tile_grid(600, 1000, (512, 512), 0.2)
    assert windows == [(0, 0, 512, 512), (410, 0, 922, 512), (488, 0, 1000, 512),
                       (0, 88, 512, 600), (410, 88, 922, 600), (488, 88, 1000, 600)]
    covered = np.zeros((600, 1000), bool)
    for x0, y0, x1, y1 in windows:
        assert (x1 - x0, y1 - y0) == (512, 512)
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert tile_grid(300, 200, (512, 512), 0.2) == [(0, 0, 200, 300)]
    assert tile_grid(100, 700, (64, 512), 0.5) == [(x, y, x + 512, y + 64) for y in (0, 32, 36) for x in (0, 188)]
    with pytest.raises(ValueError, match="overlap"):
        tile_grid(100, 100, (32, 32), 1.0)


def test_map_back_offsets_and_unflips():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    assert map_back(boxes, View((100, 50, 612, 562))).tolist() == [[110.0, 70.0, 130.0, 90.0]]
    # mirrored view of a 512-wide window: x' = 512 - x, then the offset
    assert map_back(boxes, View((100, 50, 612, 562), flip=True)).tolist() == [[100 + 482.0, 70.0, 100 + 502.0, 90.0]]


def test_merging_hand_cases():
    # An object cut by a tile border: its two halves, and the whole box from the neighbouring tile.
    halves = torch.tensor([[100.0, 10, 150, 50], [150, 10, 200, 50]])
    whole = torch.tensor([[100.0, 10, 200, 50]])
    other = torch.tensor([[400.0, 10, 440, 50]])  # a distinct object
    boxes = torch.cat((halves, whole, other))
    scores = torch.tensor([0.6, 0.5, 0.9, 0.8])
    labels = torch.tensor([0, 0, 0, 0])
    b, s, _ = merge_detections(boxes, scores, labels, "nmm", 0.5)
    assert b.tolist() == [[100.0, 10, 200, 50], [400, 10, 440, 50]] and s.tolist() == pytest.approx([0.9, 0.8])
    # two halves that only touch (no intersection) are two boxes to either merger
    b, _, _ = merge_detections(halves, scores[:2], labels[:2], "nmm", 0.5)
    assert len(b) == 2
    # a half inside the whole box (IoU 0.5, intersection over the smaller 1): NMS at 0.6 keeps both, nmm merges
    b, _, _ = merge_detections(torch.cat((whole, halves[:1])), torch.tensor([0.9, 0.6]), labels[:2], "nms", 0.6)
    assert len(b) == 2
    b, _, _ = merge_detections(torch.cat((whole, halves[:1])), torch.tensor([0.9, 0.6]), labels[:2], "nmm", 0.6)
    assert b.tolist() == [[100.0, 10, 200, 50]]
    # another class never merges
    b, _, l = merge_detections(torch.cat((whole, halves[:1])), torch.tensor([0.9, 0.6]), torch.tensor([0, 1]), "nmm", 0.5)
    assert len(b) == 2 and sorted(l.tolist()) == [0, 1]
    # overlapping boxes of one class under NMS: the best stays
    b, s, _ = merge_detections(torch.tensor([[0.0, 0, 100, 100], [5, 5, 100, 100]]), torch.tensor([0.5, 0.7]),
                               torch.tensor([2, 2]), "nms", 0.5)
    assert b.tolist() == [[5.0, 5, 100, 100]] and s.tolist() == pytest.approx([0.7])
    empty = merge_detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), "nmm")
    assert empty[0].shape == (0, 4)


def test_slice_values_parse():
    assert parse_slice(["512"]) == (512, 512) and parse_slice(["384", "640"]) == (384, 640)
    assert parse_slice(["auto"]) == "auto" and parse_slice(["none"]) is None and parse_slice(640) == (640, 640)
    for bad in (["big"], ["16"], ["1", "2", "3"]):
        with pytest.raises(ValueError, match="--slice"):
            parse_slice(bad)
    assert InferenceOptions(slice=256).tiles(None) == (256, 256)
    assert InferenceOptions().tiles(TileInfo((512, 512), 0.5)) == (1024, 1024)  # auto: the model's own
    assert InferenceOptions().tiles(None) is None and InferenceOptions().plain is False
    assert InferenceOptions(slice=256).with_full_image() and not InferenceOptions().with_full_image()


class OneBoxPerView:
    """A stub network: every view gets one box at (10, 20, 30, 40) in its own pixels, scored by its
    position in the batch (so the merge keeps all: they never overlap)."""

    batched = True

    def __init__(self) -> None:
        self.calls: list[tuple[int, tuple[int, int], float]] = []

    def detect(self, images, scale=1.0):
        self.calls.append((len(images), tuple(images[0].shape[-2:]), scale))
        return [(torch.tensor([[10.0, 20.0, 30.0, 40.0]]), torch.tensor([0.9]), torch.tensor([1])) for _ in images]


@pytest.mark.filterwarnings("ignore:slicing .* shows objects at")  # tiny tiles on purpose
def test_boxes_come_back_in_original_pixels(checkpoint):
    predictor = Predictor(checkpoint, options=InferenceOptions(slice=(64, 96), slice_overlap=0.0, full_image=False,
                                                              slice_batch=4, merge="nms"))
    stub = predictor.runner = OneBoxPerView()
    image = torch.zeros(3, 128, 192)  # 2 x 2 tiles of 64 x 96
    boxes, scores, labels = predictor.detect(image)
    expected = sorted([[x + 10.0, y + 20.0, x + 30.0, y + 40.0] for y in (0, 64) for x in (0, 96)])
    assert sorted(boxes.tolist()) == expected and labels.tolist() == [1] * 4
    assert stub.calls == [(4, (64, 96), 1.0)]  # one batch of four equal tiles
    # with the whole image and test-time flips: each view's box mapped back through its flip
    predictor = predictor.with_options(InferenceOptions(slice=(64, 96), slice_overlap=0.0, full_image=True, tta=True,
                                                        merge="nms", merge_iou=0.99))
    predictor.runner = OneBoxPerView()
    boxes, _, _ = predictor.detect(image)
    flipped = [[x + 96 - 30.0, y + 20.0, x + 96 - 10.0, y + 40.0] for y in (0, 64) for x in (0, 96)]
    whole = [[10.0, 20.0, 30.0, 40.0], [192 - 30.0, 20.0, 192 - 10.0, 40.0]]
    # identical boxes of two views (the whole image's and a corner tile's) are one after the merge
    assert sorted(map(tuple, boxes.tolist())) == sorted(set(map(tuple, expected + flipped + whole)))


def test_a_tile_as_large_as_the_image_is_the_whole_image_prediction(checkpoint, shared_data):
    from PIL import Image

    image = np.asarray(Image.open(shared_data / "fruit" / "images" / "apple_1.jpg").convert("RGB"))
    whole = Predictor(checkpoint, options=InferenceOptions(slice=None))(image)[0]
    tiled = Predictor(checkpoint, options=InferenceOptions(slice=max(image.shape[:2]) + 10))(image)[0]
    assert len(whole["boxes"]) > 10
    for key in ("boxes", "scores", "labels"):
        assert np.array_equal(whole[key], tiled[key])


def test_slicing_a_whole_image_model_at_another_scale_says_so(checkpoint):
    with pytest.warns(UserWarning, match=r"train it with --tile"):
        Predictor(checkpoint, options=InferenceOptions(slice=64))  # 64 px tiles upscaled to 256: 4x the scale


def test_cli_predict_and_eval_compare_sliced(checkpoint, shared_data, tmp_path, capsys):
    from fcos.cli import main

    image = shared_data / "raccoon" / "images" / "raccoon-183.jpg"
    assert main(["predict", "--weights", str(checkpoint), "--source", str(image), "--out", str(tmp_path / "p"),
                 "--slice", "640", "480", "--merge", "nmm", "--slice-batch", "2", "--no-progress"]) == 0
    assert (tmp_path / "p" / "predictions.json").is_file()
    code = main(["eval", "--weights", str(checkpoint), "--data", str(shared_data / "fruit"), "--compare",
                 "--slice", "320", "--tta", "--no-plots", "--workers", "0", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "whole image" in out and "tiles 320x320 (overlap 0.2) + whole image, TTA flip" in out
    assert out.count("ms/image") == 1 and "APs" in out
    # a whole-image model compared with itself: one row and a note, not two identical rows
    code = main(["eval", "--weights", str(checkpoint), "--data", str(shared_data / "fruit"), "--compare",
                 "--no-plots", "--workers", "0", "--device", "cpu", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0 and "one mode to evaluate; add --slice SIZE or --tta" in captured.out
    assert "ms/image" not in captured.out and "eval:" not in captured.err  # no table; no progress bar
    with pytest.raises(SystemExit):
        main(["predict", "--weights", str(checkpoint), "--source", str(image), "--slice", "big"])
    assert "--slice takes auto, none, SIZE or H W" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:slicing .* shows objects at")
def test_a_large_image_is_cut_without_a_float_copy_of_it(checkpoint, monkeypatch):
    # 3000 x 4000 uint8 (36 MB; as float 144 MB): 512 px tiles overlapping 0.2 are 8 rows x 10 columns,
    # converted to float two at a time; the whole-image view is shrunk in uint8 before its conversion.
    import fcos.predict.predictor as module

    image = np.random.default_rng(0).integers(0, 255, (3000, 4000, 3), dtype=np.uint8)
    predictor = Predictor(checkpoint, options=InferenceOptions(slice=512, slice_batch=2, full_image=True))
    converted, calls = [], []
    as_float = module.as_float
    monkeypatch.setattr(module, "as_float", lambda x: converted.append(x.numel()) or as_float(x))
    detect = predictor.runner.detect
    predictor.runner.detect = lambda images, scale=1.0: calls.append(len(images)) or detect(images, scale)
    predictor(image)
    assert len(converted) == 8 * 10 + 1 and calls == [2] * 40 + [1]
    # never the whole image: its view, twice the model's input (256..320: 3000 x 4000 at 0.08), is 480 x 640
    assert set(converted) == {3 * 512 * 512, 3 * 480 * 640}


@pytest.mark.filterwarnings("ignore:slicing .* shows objects at")
def test_the_tile_progress_bar_shows_only_for_many_tiles_and_never_with_progress_off(checkpoint, capsys):
    from fcos.predict.predictor import PROGRESS_TILES

    options = InferenceOptions(slice=(32, 32), slice_overlap=0.0, full_image=False, slice_batch=8)
    image = torch.zeros(3, 32 * 9, 32 * 8)  # 72 tiles > PROGRESS_TILES
    assert 9 * 8 > PROGRESS_TILES
    for progress, shown in ((True, True), (False, False)):
        predictor = Predictor(checkpoint, options=options, progress=progress)
        predictor.runner = OneBoxPerView()
        predictor.detect(image)
        assert ("tiles:" in capsys.readouterr().err) == shown
        predictor.with_options(options).detect(torch.zeros(3, 64, 64))  # 4 tiles: never a bar
        assert "tiles:" not in capsys.readouterr().err
        assert predictor.with_options(options).progress == progress  # kept by with_options
