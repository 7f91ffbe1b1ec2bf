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
    # alone (torch re-raises worker errors as ``type(exc)(message)``); it stays a DatasetError.
    def __init__(
        self,
        path: str | Path,
        problem: str = "",
        *,
        line: int | None = None,
        annotation_id: int | None = None,
    ) -> None:
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


def _rebuild(path: str | Path, problem: str, line: int | None, annotation_id: int | None) -> DatasetError:
    return DatasetError(path, problem, line=line, annotation_id=annotation_id)
