"""``fcos predict`` over files: a predictor run on every image and video frame a source names
(:mod:`fcos.predict.sources`: a file, a folder, optionally recursive, a glob pattern, a video), and what it writes
into the output folder, mirroring the sources' relative paths:

=============================  ===============================================================
``<name>``                     each image with its detections drawn (:func:`fcos.utils.draw.draw_detections`)
``predictions.json``           the images' detections, COCO results format (one record per detection)
``<name stem>.mp4``            each video, annotated (H.264; :mod:`fcos.predict.video`)
``<name stem>.json``           each video's detections per frame: ``frames: [{frame, time, detections}]``
``labels/<name stem>.txt``     with ``save_txt``: YOLO labels per image; ``<stem>_<frame>.txt`` per video frame
``crops/<class>/<stem>_k.jpg`` with ``save_crops``: each detection's crop (:mod:`fcos.predict.save`)
(``a.jpg`` beside ``a.png``)   their labels and crops under ``a_jpg`` and ``a_png``
=============================  ===============================================================

Broken inputs are named and skipped, the rest predicted (as ultralytics' predict mode does): an image
that cannot be decoded, a video that cannot be opened, a frame that cannot be decoded. A single source
file that cannot be read raises instead. Progress bars count files and, inside a video, frames.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fcos.data.images import IMAGE_SUFFIXES, MAX_PIXELS, ImageError, read_image
from fcos.predict.predictor import Predictor
from fcos.predict.save import save_crops, write_labels
from fcos.predict.sources import SourceFile, list_sources
from fcos.predict.video import (
    VIDEO_SUFFIXES,
    BrokenFrame,
    VideoError,
    VideoWriter,
    read_frames,
    require_av,
    video_info,
)
from fcos.utils.files import save_image, write_json

__all__ = ["PredictInputError", "list_images", "predict_source"]


class PredictInputError(ValueError):
    """What ``predict_source`` was given cannot be predicted: a source with no images or videos, an
    ``out_dir`` whose drawn outputs would overwrite the sources, or a folder none of whose files could be
    read. The CLI prints it as one line."""


def list_images(source: str | Path, *, recursive: bool = False) -> list[Path]:
    """The image files ``source`` names (a file, a folder's images, a pattern's), sorted as predicted."""
    return [f.path for f in list_sources(source, recursive=recursive) if not f.video]


def predict_source(
    predictor: Predictor,
    source: str | Path,
    out_dir: str | Path,
    conf: float | None = None,
    *,
    recursive: bool = False,
    save_txt: bool = False,
    save_crops: bool = False,
    line_width: int | None = None,
    show_labels: bool = True,
    show_conf: bool = True,
    progress: bool = True,
) -> Path:
    """Run ``predictor`` on what ``source`` names and write the outputs of the module doc to ``out_dir``.

    ``predictions.json`` records: ``image_id`` (1-based position among the images, in natural order of
    path), ``file_name`` (that path), ``category_id`` (the checkpoint's ``category_ids``),
    ``category_name``, ``bbox`` [x, y, w, h] in original pixels and ``score``.

    A single unreadable source file raises :class:`fcos.data.images.ImageError` or
    :class:`fcos.predict.video.VideoError` naming it. Otherwise broken files (empty, truncated, corrupt, not an
    image whatever the suffix, too many pixels, too small for the model) and broken video frames are
    skipped with a warning naming each and why, then a warning with the count; PredictInputError if
    nothing could be read (or no file, or out_dir holds the sources). A failed write raises
    :class:`fcos.utils.files.WriteError` naming the file. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    files = list_sources(source, recursive=recursive, exclude=out_dir)
    if not files:
        raise PredictInputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) or videos ({', '.join(VIDEO_SUFFIXES)}), "
                         f"any case, in {source}")
    single = Path(source).is_file()
    outputs = _video_outputs(files)
    stems = _image_stems(files)
    for item in files:
        target = out_dir / outputs.get(item.name, item.name)
        if target.resolve() == item.path.resolve():
            raise PredictInputError(f"out_dir {out_dir} holds the sources: drawn output would overwrite {item.path}")
    if any(f.video for f in files):
        require_av()  # a missing extra stops here, before any work, with one line naming it
    draw = {"line_width": line_width, "show_labels": show_labels, "show_conf": show_conf}
    extras = {"save_txt": save_txt, "save_crops": save_crops}
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    image_id = 0
    bar = tqdm(files, desc="predict", unit="file", disable=not progress or len(files) < 2, dynamic_ncols=True)
    for item in bar:
        try:
            if item.video:
                _predict_video(predictor, item, out_dir, outputs[item.name], conf, draw, extras, progress)
            else:
                image_id += 1
                records += _predict_image(predictor, item, image_id, out_dir, stems[item.name], conf, draw, extras)
        except ValueError as exc:  # ImageError, VideoError, an image too small for the model
            if single and isinstance(exc, ImageError | VideoError):
                raise
            if single:  # an image the model cannot take at these settings (e.g. too small): one line, named
                raise PredictInputError(f"{item.path}: {exc}") from exc
            problem = exc.problem if isinstance(exc, ImageError | VideoError) else exc
            warnings.warn(f"skipping {item.path}: {problem}", stacklevel=2)
            skipped.append(item.name.as_posix())
    if skipped:
        warnings.warn(f"skipped {len(skipped)} of {len(files)} files that could not be read: {skipped}", stacklevel=2)
        if len(skipped) == len(files):
            raise PredictInputError(f"none of the {len(files)} files in {source} could be read")
    write_json(out_dir / "predictions.json", records)
    return out_dir


def _video_outputs(files: Sequence[SourceFile]) -> dict[Path, Path]:
    """Each video's annotated file name: ``<stem>.mp4`` beside its source's relative path, unless an
    image or another video already takes it (``clip.avi`` beside ``clip.mp4`` -> ``clip_avi.mp4``)."""
    taken = {f.name for f in files if not f.video}
    names = {}
    for item in files:
        if item.video:
            name = item.name.with_suffix(".mp4")
            if name in taken and name != item.name:
                name = item.name.with_name(f"{item.name.stem}_{item.name.suffix.lstrip('.').lower()}.mp4")
            taken.add(name)
            names[item.name] = name
    return names


def _image_stems(files: Sequence[SourceFile]) -> dict[Path, Path]:
    """Each image's name for its labels and crops: its relative path without suffix, unless another image
    shares it (``a.jpg`` beside ``a.png`` -> ``a_jpg``, ``a_png``: neither overwrites the other)."""
    images = [f.name for f in files if not f.video]
    shared = Counter(name.with_suffix("") for name in images)
    return {name: name.with_suffix("") if shared[name.with_suffix("")] == 1
            else name.with_name(f"{name.stem}_{name.suffix.lstrip('.').lower()}") for name in images}


def _predict_image(predictor: Predictor, item: SourceFile, image_id: int, out_dir: Path, stem: Path,
                   conf: float | None, draw: dict[str, Any], extras: dict[str, bool]) -> list[dict[str, Any]]:
    from fcos.utils.draw import draw_detections

    image = read_image(item.path, max_pixels=getattr(getattr(predictor, "options", None), "max_pixels", MAX_PIXELS))
    (det,) = predictor(image, conf=conf)
    save_image(draw_detections(image, det["boxes"], det["labels"], det["scores"], predictor.class_names, **draw),
               out_dir / item.name)
    _save_extras(image, det, predictor.class_names, out_dir, stem, extras)
    return _coco_records(det, image_id, item.name.as_posix(), predictor.category_ids)


def _predict_video(predictor: Predictor, item: SourceFile, out_dir: Path, output: Path, conf: float | None,
                   draw: dict[str, Any], extras: dict[str, bool], progress: bool) -> None:
    from fcos.utils.draw import draw_detections

    info = video_info(item.path)
    frames: list[dict[str, Any]] = []
    broken: list[dict[str, Any]] = []
    with VideoWriter(out_dir / output, info["fps"]) as writer:
        bar = tqdm(read_frames(item.path), total=info["frames"], desc=item.name.as_posix(), unit="frame", leave=False,
                   disable=not progress, dynamic_ncols=True)
        for frame in bar:
            if isinstance(frame, BrokenFrame):
                warnings.warn(f"skipping {item.path} frame {frame.index} ({frame.time:.2f} s): {frame.problem}", stacklevel=3)
                broken.append({"frame": frame.index, "time": round(frame.time, 4), "problem": frame.problem})
                continue
            (det,) = predictor(frame.image, conf=conf)
            writer.write(draw_detections(frame.image, det["boxes"], det["labels"], det["scores"], predictor.class_names,
                                         **draw))
            stem = output.with_suffix("")
            _save_extras(frame.image, det, predictor.class_names, out_dir, stem.with_name(f"{stem.name}_{frame.index}"), extras)
            detections = _coco_records(det, 0, "", predictor.category_ids)
            for record in detections:
                del record["image_id"], record["file_name"]
            frames.append({"frame": frame.index, "time": round(frame.time, 4), "detections": detections})
        if writer.frames == 0:
            raise VideoError(item.path, f"no frame could be decoded ({len(broken)} broken)" if broken
                             else "the video holds no frame")
    write_json(out_dir / output.with_suffix(".json"),
               {"file_name": item.name.as_posix(), "video": output.as_posix(), "fps": info["fps"], "width": info["width"],
                "height": info["height"], "frames": frames, "skipped_frames": broken})


def _save_extras(image: Any, det: dict[str, Any], class_names: Sequence[str], out_dir: Path, stem: Path,
                 extras: dict[str, bool]) -> None:
    """YOLO labels and crops of one image or frame; ``stem``: its relative path without suffix."""
    if extras["save_txt"]:
        write_labels(out_dir / "labels" / stem.with_name(stem.name + ".txt"), det["boxes"], det["labels"], det["scores"],
                     image.size)
    if extras["save_crops"]:
        save_crops(image, det["boxes"], det["labels"], class_names, out_dir / "crops", stem.as_posix().replace("/", "_"))


def _coco_records(det: dict[str, Any], image_id: int, file_name: str, category_ids: Sequence[int]) -> list[dict[str, Any]]:
    """COCO results (``fcos.evaluation.coco.to_coco_results``) plus file and class names, rounded for JSON."""
    import torch

    from fcos.evaluation.coco import to_coco_results

    prediction = {"image_id": image_id, "boxes": torch.from_numpy(det["boxes"]), "scores": torch.from_numpy(det["scores"]),
                  "labels": torch.from_numpy(det["labels"])}
    records = to_coco_results([prediction], category_ids)
    for record, name in zip(records, det["names"], strict=True):
        record.update(file_name=file_name, category_name=name, bbox=[round(v, 2) for v in record["bbox"]],
                      score=round(record["score"], 5))
    return records
