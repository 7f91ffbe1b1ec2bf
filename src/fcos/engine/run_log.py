"""``metrics.jsonl``, a run's log: one JSON record per line, written and read only here.

Records: ``{"event": "train", "iteration", "epoch", <mean losses>, "lr", "images_per_s"}`` every
``log_every`` updates, ``{"event": "val", "iteration", "epoch", <COCO metrics>, "per_class"}`` after each
validation, and ``{"event": "done", ...the run's summary}`` at the end. Lines are appended and flushed
to disk one at a time (:func:`fcos.utils.files.append_line`); a line cut short by a crash is skipped
when reading, and dropped when a resumed run rewinds the log to its checkpoint (:meth:`RunLog.rewind`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fcos.utils.files import append_line, write_text

__all__ = ["RunLog"]


class RunLog:
    """The ``metrics.jsonl`` of a run folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def of(cls, run_folder: str | Path) -> RunLog:
        return cls(Path(run_folder) / "metrics.jsonl")

    def append(self, record: Mapping[str, Any]) -> None:
        append_line(self.path, json.dumps(record))

    def records(self, event: str | None = None) -> Iterator[dict[str, Any]]:
        """The whole records in order (``event``: only those of that kind); a line cut short is skipped."""
        if not self.path.is_file():
            return
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and (event is None or record.get("event") == event):
                yield record

    def rewind(self, iteration: int) -> None:
        """Forget the records of updates past ``iteration`` (the checkpoint a run resumes from): a crash
        between checkpoints loses those updates, and the resumed run logs them again."""
        if self.path.is_file():
            kept = [json.dumps(r) + "\n" for r in self.records() if r.get("iteration", 0) <= iteration]
            write_text(self.path, "".join(kept))
