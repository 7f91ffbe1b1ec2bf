"""Writing files that people and resumed runs rely on: atomically, or not at all, with one clear error.

Every write of a checkpoint, ``metrics.jsonl``, a run folder's config and plots, ``predictions.json`` and
drawn images goes through here. A write that fails (no space left, the file size limit, a read-only
folder, a missing or unwritable path) raises :class:`WriteError` naming the file and the reason, and:

- :func:`atomic_write` (and the helpers built on it) never leaves a half-written file at ``path``: the
  bytes go to a temporary file in the same folder, are flushed and fsynced, then renamed over ``path``
  (POSIX rename is atomic), and the folder is fsynced so the rename survives a power cut. On failure the
  temporary file is removed and the previous ``path`` is untouched;
- :func:`append_line` (metrics logs) truncates the file back to its previous length when an append
  fails half-way, so the log stays whole lines.

A process killed between the two steps leaves at worst a stray ``.<name>.*.tmp`` file beside ``path``.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "WriteError",
    "append_line",
    "atomic_write",
    "check_output",
    "save_image",
    "staged_path",
    "write_json",
    "write_text",
]

_HINTS = {
    errno.ENOSPC: "no space left on the device",
    getattr(errno, "EDQUOT", -1): "disk quota exceeded",
    errno.EFBIG: "file size limit reached (ulimit -f, or the file system's largest file)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


_UMASK = os.umask(0)  # read once, at import: os.umask can only be read by setting it
os.umask(_UMASK)


class WriteError(OSError):
    """A file could not be written, e.g. ``"cannot write runs/a/last.pt: no space left on the device"``.

    Attributes: ``path`` (the file), ``reason`` (in words); ``errno`` as the underlying OSError had it.
    """

    def __init__(self, path: str | Path, reason: str, code: int | None = None) -> None:
        super().__init__(f"cannot write {path}: {reason}")
        self.path, self.reason, self.errno = Path(path), reason, code

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"

    def __reduce__(self) -> tuple:
        return (type(self), (self.path, self.reason, self.errno))

    @classmethod
    def from_error(cls, path: str | Path, error: BaseException) -> WriteError:
        """The WriteError for an OSError (or a library's error) met while writing ``path``."""
        if isinstance(error, WriteError):
            return error
        code = getattr(error, "errno", None)
        reason = _HINTS.get(code) or getattr(error, "strerror", None) or str(error) or type(error).__name__
        return cls(path, reason, code)


class _Recorder:
    """A file proxy that remembers the first OSError of ``write`` (torch.save turns it into a vague RuntimeError)
    and hides ``fileno``: Pillow's encoders write to a file descriptor directly and ignore short writes (a
    full disk, the file size limit), which would leave a truncated image; through ``write`` they fail."""

    def __init__(self, file: IO[Any]) -> None:
        self.file, self.error = file, None

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fcos.utils.files: write through the file object")

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.file.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def check_output(path: str | Path) -> Path:
    """``path`` as a file to write, its folder made: WriteError naming it if it is a folder or its folder
    cannot be made. For writers that check before long work (an export) rather than fail after it."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(path, "it is a folder; give a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError.from_error(path, exc) from None
    return path


@contextlib.contextmanager
def staged_path(path: str | Path) -> Iterator[str]:
    """``with staged_path(out) as tmp: library.save(tmp)``: :func:`atomic_write` for libraries that write
    to a path (``onnx.save``). ``tmp`` sits beside ``path`` with a new file's usual mode and replaces it
    when the block ends without error; otherwise it is removed and ``path`` keeps its previous content.

    Raises:
        WriteError: naming ``path``, before the block if it cannot be written there, or for an OSError in it.
    """
    path = check_output(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private: a model file must be readable by a service
    except OSError as exc:
        raise WriteError.from_error(path, exc) from None
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError.from_error(path, exc) from exc
        raise


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """``with atomic_write(path) as f: f.write(...)``: ``path`` holds all of it, or its previous content.

    Raises:
        WriteError: naming ``path`` (any OSError, or an error of a library writing into ``f``).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; the result gets a new file's usual mode
    except OSError as exc:
        raise WriteError.from_error(path, exc) from None
    recorder = None
    try:
        with os.fdopen(fd, mode) as file:
            recorder = _Recorder(file)
            yield recorder
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        cause = recorder.error if recorder is not None and recorder.error is not None else exc
        if isinstance(cause, OSError) and not isinstance(exc, WriteError):
            raise WriteError.from_error(path, cause) from exc
        raise
    _fsync_folder(path.parent)


def write_text(path: str | Path, text: str) -> Path:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


def write_json(path: str | Path, value: Any, indent: int | None = 1) -> Path:
    """Replace ``path`` with ``value`` as JSON atomically."""
    return write_text(path, json.dumps(value, indent=indent))


def save_image(image: Any, path: str | Path, **params: Any) -> Path:
    """Save a PIL image atomically, in the format its suffix names, PNG where it names none (an image file
    without a suffix, read by its content) (``params`` go to ``Image.save``)."""
    from PIL import Image

    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_write(path) as f:
        image.save(f, format=image_format, **params)
    return path


def append_line(path: str | Path, line: str) -> None:
    """Append one line (a newline is added). On failure the file is cut back to its previous length."""
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as exc:
        raise WriteError.from_error(path, exc) from None
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # no half line: a resumed run parses every line
            raise WriteError.from_error(path, exc) from None
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable (POSIX); not possible on every platform or file system, so best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
