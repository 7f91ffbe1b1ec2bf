"""Helpers for the deployment tests: a tiny untrained detector that still produces many detections, real
images, and a real server on a free loopback port (``free_port`` also serves the engine's process-group tests)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from fcos import FCOS, official
from fcos.weights.checkpoint import model_checkpoint, save_checkpoint

CLASS_NAMES = ["apple", "banana", "orange"]


def make_checkpoint(path: Path, seed: int = 0, **changes) -> Path:
    """resnet18, 32 FPN channels, one conv per tower, images resized to 256..320 px. The raised
    classification bias makes an untrained model return plenty of detections; the raised box bias
    gives boxes of a visible size."""
    torch.manual_seed(seed)
    config = official(num_classes=3, backbone="resnet18", **{
        "fpn.channels": 32, "head.norm_groups": 16, "head.num_convs": 1, "input.min_size": 256, "input.max_size": 320, **changes})
    model = FCOS(config).eval()
    with torch.no_grad():
        model.head.cls_logits.bias.uniform_(-3, 0)
        model.head.box_pred.bias.uniform_(1.0, 3.0)
    return save_checkpoint(model_checkpoint(model, CLASS_NAMES, [11, 22, 33]), path)


def real_images(shared_data: Path, count: int) -> list[Path]:
    """``count`` real images, alternating fruit and raccoon, spread over each folder."""
    fruit = sorted((shared_data / "fruit" / "images").glob("*.jpg"))
    raccoon = sorted((shared_data / "raccoon" / "images").glob("*.jpg"))
    half = count // 2
    picks = fruit[:: max(1, len(fruit) // half)][:half] + raccoon[:: max(1, len(raccoon) // (count - half))][: count - half]
    assert len(picks) == count
    return picks


def assert_same_detections(a: dict, b: dict, box_tol: float = 0.5, score_tol: float = 1e-4) -> None:
    """Same detections up to numeric noise: equal counts and a one-to-one match with the same label,
    boxes within ``box_tol`` px and scores within ``score_tol`` (near-equal scores may swap order)."""
    import numpy as np

    assert len(a["scores"]) == len(b["scores"]), (len(a["scores"]), len(b["scores"]))
    used = np.zeros(len(b["scores"]), dtype=bool)
    for box, score, label in zip(a["boxes"], a["scores"], a["labels"]):
        close = (
            ~used
            & (np.asarray(b["labels"]) == label)
            & (np.abs(np.asarray(b["boxes"]) - box).max(axis=1) <= box_tol)
            & (np.abs(np.asarray(b["scores"]) - score) <= score_tol)
        )
        assert close.any(), f"no match for label {label} box {box} score {score}"
        used[np.flatnonzero(close)[0]] = True


def dense_scene(shared_data: Path, cols: int = 8, rows: int = 6, tile: int = 140):
    """A dense real scene: the fruit images (train then val, repeated as needed) shrunk into a ``cols`` x
    ``rows`` mosaic of ``tile``-px cells, with their boxes. Returns (PIL image, boxes [N, 4], labels [N])."""
    import numpy as np
    from PIL import Image

    from fcos.data import load_annotations
    from fcos.data.images import read_image

    records = [r for split in ("train", "val") for r in load_annotations(shared_data / "fruit", split).records]
    canvas = Image.new("RGB", (cols * tile, rows * tile), (90, 90, 90))
    boxes, labels = [], []
    for k in range(cols * rows):
        record = records[k % len(records)]
        scale = tile / max(record.width, record.height)
        x0, y0 = (k % cols) * tile, (k // cols) * tile
        image = read_image(record.path, exif=False).resize((round(record.width * scale), round(record.height * scale)))
        canvas.paste(image, (x0, y0))
        boxes.append(record.boxes * scale + np.array([x0, y0, x0, y0], np.float32))
        labels.append(record.labels)
    return canvas, np.concatenate(boxes), np.concatenate(labels)


def make_video(path: Path, source_image: Path, count: int = 12, size: tuple[int, int] = (96, 64), fps: int = 10,
               codec: str = "mjpeg", corrupt: int | None = None) -> list:
    """A tiny video of ``count`` frames panning across a real image (PyAV); MJPEG in AVI by default, each
    frame its own JPEG, so ``corrupt=k`` can overwrite frame k's data with garbage. Returns the PIL frames."""
    import av
    from PIL import Image

    image = Image.open(source_image).convert("RGB").resize((size[0] + 4 * count, size[1] + 20))
    frames = [image.crop((4 * k, 10, 4 * k + size[0], 10 + size[1])) for k in range(count)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    if corrupt is not None:
        data = bytearray(path.read_bytes())
        starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]  # JPEG SOI markers
        assert len(starts) == count, len(starts)
        data[starts[corrupt] + 2 : starts[corrupt] + 600] = bytes((37 * i) % 251 for i in range(598))
        path.write_bytes(bytes(data))
    return frames


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def uvicorn_thread(config: Any) -> Iterator[None]:
    """A uvicorn server of ``config`` (a ``uvicorn.Config``) running in a thread: started on entry
    (within 30 s), asked to stop and joined on exit."""
    import uvicorn

    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield
    finally:
        server.should_exit = True
        thread.join(10)
