"""Videos read frame by frame (a broken frame named and skipped) and written atomically, with PyAV."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from deploy_helpers import make_video, real_images
from fcos.predict.video import (
    BrokenFrame,
    Frame,
    VideoError,
    VideoWriter,
    is_video_file,
    read_frames,
    video_info,
)
from fcos.utils.files import WriteError
from fcos.utils.optional import MissingExtraError

pytest.importorskip("av")


@pytest.fixture(scope="module")
def photo(shared_data):
    return real_images(shared_data, 2)[0]


def difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean())


def test_frames_in_order_with_times_and_their_pixels(photo, tmp_path):
    path = tmp_path / "clip.avi"
    frames = make_video(path, photo, count=8, fps=10)
    assert is_video_file(path) and video_info(path) == {"frames": 8, "fps": 10.0, "width": 96, "height": 64}
    read = list(read_frames(path))
    assert [f.index for f in read] == list(range(8)) and all(isinstance(f, Frame) for f in read)
    assert [f.time for f in read] == pytest.approx([k / 10 for k in range(8)])
    for frame, original in zip(read, frames):
        assert frame.image.mode == "RGB" and frame.image.size == (96, 64)
        assert difference(frame.image, original) < 10  # MJPEG at its default quality: lossy, close
    # each decoded frame is the one at its position (the pan moves 4 px per frame)
    assert difference(read[3].image, frames[3]) < difference(read[3].image, frames[5])


def test_a_broken_frame_is_named_and_the_rest_are_read(photo, tmp_path):
    path = tmp_path / "bad.avi"
    make_video(path, photo, count=8, corrupt=5)
    read = list(read_frames(path))
    assert [type(f).__name__ for f in read] == ["Frame"] * 5 + ["BrokenFrame"] + ["Frame"] * 2
    assert read[5].index == 5 and read[5].time == pytest.approx(0.5) and "cannot decode the frame" in read[5].problem
    cut = tmp_path / "cut.avi"
    data = (tmp_path / "bad.avi").read_bytes()
    make_video(cut, photo, count=8)
    cut.write_bytes(cut.read_bytes()[: len(data) // 2])  # a copy cut short: the frames before the cut survive
    read = list(read_frames(cut))
    assert 1 <= sum(isinstance(f, Frame) for f in read) < 8


@pytest.mark.parametrize("content", [b"", b"not a video at all " * 20])
def test_unreadable_files_are_video_errors_naming_them(tmp_path, content):
    path = tmp_path / "junk.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match=r"junk\.mp4: cannot open the video"):
        list(read_frames(path))
    with pytest.raises(VideoError, match="cannot open"):
        video_info(tmp_path / "missing.mp4")


def test_writer_round_trip_odd_sizes_and_atomic_failures(photo, tmp_path):
    frames = [Image.open(photo).convert("RGB").resize((95, 63)).rotate(10 * k) for k in range(6)]
    out = tmp_path / "sub" / "out.mp4"
    with VideoWriter(out, fps=12.5) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.frames == 6
    info = video_info(out)
    assert (info["frames"], info["fps"], info["width"], info["height"]) == (6, 12.5, 96, 64)  # padded to even sides
    read = [f.image.crop((0, 0, 95, 63)) for f in read_frames(out)]
    assert len(read) == 6 and all(difference(a, b) < 8 for a, b in zip(read, frames))
    assert difference(read[0], frames[3]) > 2 * difference(read[0], frames[0])
    with pytest.raises(VideoError, match="no frame to write"), VideoWriter(tmp_path / "empty.mp4", 10):
        pass
    with pytest.raises(RuntimeError, match="stop"), VideoWriter(tmp_path / "failed.mp4", 10) as writer:
        writer.write(frames[0])
        raise RuntimeError("stop")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WriteError, match="out.mp4"), VideoWriter(blocker / "out.mp4", 10) as writer:
        writer.write(frames[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "sub"]  # no partial or temporary file
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out.mp4"]


def test_without_pyav_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'fcos\[video\]'"):
        list(read_frames(tmp_path / "a.mp4"))
    assert BrokenFrame(0, 0.0, "x").problem == "x"
