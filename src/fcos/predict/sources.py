"""What ``fcos predict --source`` accepts, resolved into the files to predict (as ultralytics' predict
mode and mmdetection's image demo take them):

- an image or video file;
- a folder: the images and videos directly inside it, or in all its subfolders with ``recursive``;
- a glob pattern (``photos/*.jpg``, ``'data/**/*.png'`` with ``**`` for any depth; quote it in a shell).

Images are the suffixes of :data:`fcos.data.images.IMAGE_SUFFIXES`, videos of
:data:`fcos.predict.video.VIDEO_SUFFIXES`, in any case; other files in a folder or a pattern's matches are not
sources. Each file gets the relative path its outputs keep (``name``): from the folder, or from the
pattern's fixed leading folders, so ``a/x.jpg`` and ``b/x.jpg`` never overwrite each other.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from fcos.data.images import IMAGE_SUFFIXES
from fcos.predict.video import VIDEO_SUFFIXES

__all__ = ["SourceFile", "is_pattern", "list_sources"]

_MAGIC = ("*", "?", "[")


@dataclass(frozen=True)
class SourceFile:
    """A file to predict: ``path`` on disk, ``name`` the relative path of its outputs, ``video`` its kind."""

    path: Path
    name: Path
    video: bool


def is_pattern(source: str | Path) -> bool:
    """A glob pattern (it has ``*``, ``?`` or ``[``) that is not itself an existing path."""
    text = str(source)
    return any(c in text for c in _MAGIC) and not Path(text).exists()


def _kind(path: Path) -> bool | None:
    """True for a video suffix, False for an image suffix, None for neither."""
    suffix = path.suffix.lower()
    return True if suffix in VIDEO_SUFFIXES else False if suffix in IMAGE_SUFFIXES else None


def list_sources(source: str | Path, *, recursive: bool = False, exclude: str | Path | None = None) -> list[SourceFile]:
    """The files ``source`` names (module doc), sorted by relative path in natural order (``frame_2``
    before ``frame_10``).

    A single file is a source whatever its suffix (a video by its suffix, else an image). ``exclude``: a
    folder whose files are not sources when it lies inside the searched folder (the output folder of a
    recursive search: earlier drawn images are not predicted again).

    Raises:
        FileNotFoundError: ``source`` is neither a file, a folder, nor a pattern matching any file.
    """
    text = str(source)
    if is_pattern(text):
        base = _fixed_prefix(text)
        paths = [Path(p) for p in glob.glob(text, recursive=True)]
        if not paths:
            raise FileNotFoundError(f"source not found: no file matches the pattern {text!r}")
    else:
        path = Path(text)
        if path.is_file():
            return [SourceFile(path, Path(path.name), bool(_kind(path)))]
        if not path.is_dir():
            raise FileNotFoundError(f"source not found: {path} (neither a file, a folder nor a glob pattern)")
        base = path
        paths = list(path.rglob("*") if recursive else path.iterdir())
    skip = Path(exclude).resolve() if exclude is not None else None
    if skip is not None and base.resolve() not in skip.parents:
        skip = None  # only a folder strictly inside the searched one is left out
    files = []
    for path in paths:
        kind = _kind(path)
        if kind is None or not path.is_file() or (skip is not None and skip in path.resolve().parents):
            continue
        files.append(SourceFile(path, Path(os.path.relpath(path, base)), kind))
    return sorted(files, key=lambda f: natural_key(f.name.as_posix()))


def natural_key(text: str) -> list[str | int]:
    """Sort key that reads runs of digits as numbers: ``frame_2`` before ``frame_10``, as frames numbered
    by ffmpeg's ``%d`` must be tracked; zero-padded names keep their order."""
    # re.split with a group alternates text and digits, text first: lists compare str with str, int with int
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", text))]


def _fixed_prefix(pattern: str) -> Path:
    """The leading folders of a pattern before its first wildcard: ``data/**/*.jpg`` -> ``data``."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if any(c in part for c in _MAGIC):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")
