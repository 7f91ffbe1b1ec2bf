"""The synthetic tracking sequence: deterministic, MOTChallenge layout, and the crossings, occlusions,
entries and exits it promises, checked on its ground truth and pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fcos.data.mot import read_mot, read_sequence
from fcos.data.shapes_video import generate_shapes_video
from fcos.track.bytetrack import box_iou

SMALL = {"frames": 60, "size": 128, "objects": 6, "crossings": 2, "min_object": 20, "max_object": 36}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return generate_shapes_video(tmp_path_factory.mktemp("sv") / "clip", seed=3, image_format="png", **SMALL)


def test_same_seed_same_files_other_seed_other_files(video, tmp_path):
    again = generate_shapes_video(tmp_path / "clip", seed=3, image_format="png", **SMALL)
    assert again.gt.read_bytes() == video.gt.read_bytes()
    assert all((again.frames / n).read_bytes() == (video.frames / n).read_bytes() for n in ("000001.png", "000060.png"))
    other = generate_shapes_video(tmp_path / "other", seed=4, image_format="png", **SMALL)
    assert other.gt.read_bytes() != video.gt.read_bytes()


def test_layout_and_sequence_info(video):
    assert sorted(p.name for p in video.frames.iterdir())[:2] == ["000001.png", "000002.png"]
    assert len(list(video.frames.iterdir())) == 60 and video.video is None
    with Image.open(video.frames / "000007.png") as image:
        assert image.size == (128, 128) and image.mode == "RGB"
    seq = read_sequence(video.root)
    assert (seq.name, seq.fps, seq.length, seq.width, seq.height, seq.gt) == ("clip", 25.0, 60, 128, 128, video.gt)


def test_ground_truth_has_identities_crossings_occlusions_entries_and_exits(video):
    gt = read_mot(video.gt)
    assert len(gt) == video.boxes and set(gt.ids.tolist()) <= set(range(1, 7)) and set(gt.classes.tolist()) <= {1, 2, 3}
    assert len(set(gt.classes.tolist())) == 3  # every class
    assert (gt.boxes >= 0).all() and (gt.boxes <= 128).all() and (gt.boxes[:, 2:] > gt.boxes[:, :2]).all()
    assert ((gt.visibility >= 0) & (gt.visibility <= 1)).all()
    assert (gt.conf == (gt.visibility >= 0.25)).all()  # mark 0 = less than a quarter seen
    firsts, lasts = [], []
    for track in np.unique(gt.ids):
        frames = gt.frames[gt.ids == track]
        assert (np.diff(frames) == 1).all(), track  # one unbroken appearance
        assert len(set(gt.classes[gt.ids == track].tolist())) == 1  # an object keeps its class
        firsts.append(frames[0])
        lasts.append(frames[-1])
    assert max(firsts) > 1 and min(lasts) < 60  # some enter, some leave
    # crossings: objects 1 and 2 (and 3 and 4) overlap on some frame
    for a, b in ((1, 2), (3, 4)):
        both = np.intersect1d(gt.frames[gt.ids == a], gt.frames[gt.ids == b])
        ious = [box_iou(gt.boxes[(gt.ids == a) & (gt.frames == t)], gt.boxes[(gt.ids == b) & (gt.frames == t)])[0, 0]
                for t in both]
        assert max(ious) > 0.05, (a, b)
    # occlusion: boxes wholly inside the frame that are partly hidden
    inside = (gt.boxes[:, :2] > 0).all(1) & (gt.boxes[:, 2:] < 128).all(1)
    assert (inside & (gt.visibility < 0.9)).sum() > 10


def test_a_fully_visible_object_is_drawn_inside_its_box(video):
    gt = read_mot(video.gt)
    background = np.asarray(Image.open(video.frames / "000001.png"), np.float32)
    row = np.flatnonzero(gt.visibility == 1.0)[0]
    t, (x0, y0, x1, y1) = gt.frames[row], gt.boxes[row].astype(int)
    pixels = np.asarray(Image.open(video.frames / f"{t:06d}.png"), np.float32)
    crop = pixels[y0:y1, x0:x1]
    # the box is tight: its border rows and columns each hold object pixels, of one saturated colour
    centre = crop[(y1 - y0) // 2, (x1 - x0) // 2]
    near = np.abs(crop - centre).max(-1) < 40
    assert near[0].any() and near[-1].any() and near[:, 0].any() and near[:, -1].any()
    assert near.mean() > 0.4 and background.shape == pixels.shape


def test_video_writer_and_argument_checks(tmp_path):
    written = []

    class Writer:  # fcos.video.VideoWriter's interface
        def __init__(self, path, fps):
            self.path, self.fps = path, fps

        def __enter__(self):
            return self

        def __exit__(self, *args):
            written.append((self.path.name, self.fps))

        def write(self, image):
            written.append(image.size)

    out = generate_shapes_video(tmp_path / "v", frames=3, size=64, objects=2, crossings=1, min_object=12,
                                max_object=20, fps=10, video_writer=Writer)
    assert out.video == tmp_path / "v" / "v.mp4" and written == [(64, 64)] * 3 + [("v.mp4", 10)]
    assert (tmp_path / "v" / "img1" / "000003.jpg").is_file()
    with pytest.raises(ValueError, match="crossings <= objects // 2"):
        generate_shapes_video(tmp_path / "x", objects=2, crossings=2)
    with pytest.raises(ValueError, match="max_object <= size / 2"):
        generate_shapes_video(tmp_path / "x", size=64, max_object=40)
    nothing = generate_shapes_video(tmp_path / "empty", frames=2, size=64, objects=0, crossings=0, min_object=12,
                                    max_object=20)
    assert nothing.boxes == 0 and nothing.gt.read_text() == ""
