"""Video files for ``fcos predict``: reading frames, one by one, and writing an annotated video, with
PyAV (FFmpeg's libraries in the wheel: ``pip install 'fcos[video]'``).

- Frames are decoded packet by packet: a packet FFmpeg cannot decode (a corrupt or cut-off frame) is
  reported as a :class:`BrokenFrame` naming the video, the frame's position and time, and the frames
  after it are still read (as ultralytics and mmdetection's video demos go on past a bad frame).
- A file FFmpeg cannot open at all (not a video, empty, no video stream) is a :class:`VideoError`.
- Written videos are H.264 (libx264, yuv420p) in MP4, at the source's frame rate, written atomically
  through :func:`fcos.utils.files.atomic_write` (a failed write is a :class:`~fcos.utils.files.WriteError` and
  leaves no partial file). H.264 wants even sides: an odd width or height gets one black column or row.

Video frames are RGB like every image in fcos (``frame.to_image()``: FFmpeg's YUV to RGB conversion).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from PIL import Image

from fcos.utils.files import atomic_write
from fcos.utils.optional import require

__all__ = [
    "VIDEO_SUFFIXES",
    "BrokenFrame",
    "Frame",
    "VideoError",
    "VideoWriter",
    "is_video_file",
    "read_frames",
    "require_av",
    "video_info",
]

# ultralytics' VID_FORMATS less .gif (an image here: its first frame, fcos.data.images).
VIDEO_SUFFIXES = (".asf", ".avi", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".ts", ".webm", ".wmv")  # lower case
DEFAULT_FPS = 25.0  # when the container states no frame rate


class VideoError(ValueError):
    """A video that cannot be read at all, e.g. ``"clips/a.mp4: cannot open the video: Invalid data found ..."``."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class Frame:
    """A decoded frame: ``index`` counts decoded and broken frames from 0; ``time`` in seconds."""

    index: int
    time: float
    image: Image.Image


@dataclass(frozen=True)
class BrokenFrame:
    """A frame (packet) FFmpeg could not decode; ``problem`` says why."""

    index: int
    time: float
    problem: str


def is_video_file(path: str | Path) -> bool:
    """A file whose suffix, in any case, is one of :data:`VIDEO_SUFFIXES`."""
    path = Path(path)
    return path.suffix.lower() in VIDEO_SUFFIXES and path.is_file()


def require_av() -> Any:
    """The ``av`` module, or :class:`~fcos.utils.optional.MissingExtraError` naming the ``video`` extra."""
    return require("av", "reading and writing videos")


@contextlib.contextmanager
def _open(path: Path) -> Iterator[tuple[Any, Any]]:
    av = require_av()
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise VideoError(path, f"cannot open the video: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        if not container.streams.video:
            raise VideoError(path, "no video stream in the file")
        yield container, container.streams.video[0]
    finally:
        container.close()


def video_info(path: str | Path) -> dict[str, Any]:
    """``{"frames": N or None, "fps": float, "width", "height"}`` from the container's header."""
    with _open(Path(path)) as (_, stream):
        rate = stream.average_rate or stream.guessed_rate
        return {"frames": int(stream.frames) or None, "fps": float(rate) if rate else DEFAULT_FPS,
                "width": int(stream.codec_context.width), "height": int(stream.codec_context.height)}


def read_frames(path: str | Path) -> Iterator[Frame | BrokenFrame]:
    """Every frame of the first video stream in order, as RGB :class:`Frame` s, with a
    :class:`BrokenFrame` where a packet cannot be decoded. Raises :class:`VideoError` when the file
    cannot be opened; a container damaged part-way ends with one BrokenFrame naming the problem."""
    av = require_av()
    path = Path(path)
    with _open(path) as (container, stream):
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or DEFAULT_FPS)
        index = 0
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError as exc:  # the container itself is damaged here: nothing more to read
                yield BrokenFrame(index, index / rate, f"cannot read the rest of the video ({exc})")
                return
            time = float(packet.pts * packet.time_base) if packet.pts is not None and packet.time_base else index / rate
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                yield BrokenFrame(index, time, f"cannot decode the frame ({exc})")
                index += 1
                continue
            for frame in frames:
                yield Frame(index, float(frame.time) if frame.time is not None else index / rate, frame.to_image())
                index += 1


class VideoWriter:
    """``with VideoWriter(path, fps) as writer: writer.write(pil_image)``: an H.264 MP4 of the frames
    (all of one size, that of the first), written atomically."""

    def __init__(self, path: str | Path, fps: float, *, crf: int = 23) -> None:
        self.path, self.fps, self.crf = Path(path), fps, crf
        self.frames = 0
        self._stack = contextlib.ExitStack()
        self._container: Any = None
        self._stream: Any = None

    def __enter__(self) -> VideoWriter:
        av = require_av()
        file = self._stack.enter_context(atomic_write(self.path))
        self._container = av.open(file, mode="w", format="mp4")
        self._stack.callback(self._container.close)
        return self

    def write(self, image: Image.Image) -> None:
        av = require_av()
        if self._stream is None:
            stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            stream.width, stream.height = image.width + image.width % 2, image.height + image.height % 2
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(self.crf), "preset": "veryfast"}
            self._stream = stream
        if image.size != (self._stream.width, self._stream.height):
            canvas = Image.new("RGB", (self._stream.width, self._stream.height))
            canvas.paste(image.convert("RGB"), (0, 0))
            image = canvas
        for packet in self._stream.encode(av.VideoFrame.from_image(image.convert("RGB"))):
            self._container.mux(packet)
        self.frames += 1

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if error is not None:  # the caller's error: close and discard the file
            self._stack.__exit__(kind, error, traceback)
            return
        with self._stack:  # closes the container (its trailer), then puts the file in place
            if self._stream is None:
                raise VideoError(self.path, "no frame to write")
            for packet in self._stream.encode():  # flush the encoder's delayed frames
                self._container.mux(packet)
