"""The one exception every dataset reader raises: :class:`DatasetError`.

A reader never lets a ``KeyError``, ``IndexError``, ``JSONDecodeError`` or XML ``ParseError`` escape:
those name a Python detail, not the file and the line a user has to fix.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A problem in a dataset file, e.g. ``"/d/annotations/train.json: annotation id 17: category_id 99 ..."``.

    Args:
        path: the file (or folder) at fault.
        problem: what is wrong, in words.
        line: 1-based line number in ``path``, where the format has lines (YOLO labels, JSON syntax).
        annotation_id: the COCO annotation id (or VOC object number) at fault.
    """

    # `problem` has a default so that DataLoader workers can rebuild the exception from its message
    # alone: torch re-raises a worker's error in the main process as ``type(exc)(text)``, where the text
    # is "Caught DatasetError in DataLoader worker process N. Original Traceback ...". It stays a
    # DatasetError whose message is the original one line (what the CLI prints); the worker's traceback
    # is kept in ``worker_traceback``.
    def __init__(
        self,
        path: str | Path,
        problem: str = "",
        *,
        line: int | None = None,
        annotation_id: int | None = None,
    ) -> None:
        self.worker_traceback: str | None = None
        if not problem and isinstance(path, str) and path.startswith("Caught DatasetError"):
            self.worker_traceback, path = path, _original_message(path)
        self.path = Path(path) if problem else path
        self.problem = problem
        self.line = line
        self.annotation_id = annotation_id
        super().__init__(self._format())

    def _format(self) -> str:
        if not self.problem:
            return str(self.path)
        where = str(self.path)
        if self.line is not None:
            where += f" line {self.line}"
        if self.annotation_id is not None:
            where += f": annotation id {self.annotation_id}"
        return f"{where}: {self.problem}"

    def __str__(self) -> str:
        return self._format()

    def __reduce__(self) -> tuple:
        # Pickling (DataLoader workers, multiprocessing) must keep path/line/annotation_id.
        return (_rebuild, (self.path, self.problem, self.line, self.annotation_id))


def _original_message(worker_text: str) -> str:
    """The last line of a worker's traceback text: ``fcos.data.errors.DatasetError: <message>``."""
    marker = f"{DatasetError.__module__}.{DatasetError.__qualname__}: "
    at = worker_text.rfind(marker)
    return worker_text[at + len(marker):].strip() if at >= 0 else worker_text.strip().splitlines()[-1]


def _rebuild(path: str | Path, problem: str, line: int | None, annotation_id: int | None) -> DatasetError:
    return DatasetError(path, problem, line=line, annotation_id=annotation_id)
