"""The box rules every reader applies, so COCO, VOC and YOLO data are judged the same way.

- NaN / infinite coordinate          -> DatasetError (the file is broken)
- width or height <= 0 (degenerate)  -> dropped, counted in the report
- entirely outside the image         -> DatasetError (almost always a wrong image or swapped axes)
- partly outside the image           -> clipped to the image, counted in the report (overshoots below
                                        ROUNDING px under their own reason: normalised YOLO coordinates
                                        written with 6 decimals routinely land a hair past the border)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from fcos.data.errors import DatasetError
from fcos.data.records import LoadReport

__all__ = ["CLIPPED", "CLIPPED_ROUNDING", "DEGENERATE", "ROUNDING", "fit_box"]

DEGENERATE = "degenerate box (width or height <= 0)"
CLIPPED = "box partly outside the image"
ROUNDING = 0.01  # px
CLIPPED_ROUNDING = f"box past the image border by under {ROUNDING} px (rounding)"


def fit_box(
    box: Sequence[float],
    width: int,
    height: int,
    report: LoadReport,
    path: str | Path,
    *,
    line: int | None = None,
    annotation_id: int | None = None,
    shown: str | None = None,
) -> tuple[float, float, float, float] | None:
    """Check one xyxy pixel box against a width x height image.

    Args:
        box: (x1, y1, x2, y2) pixels.
        report: receives the clipped / dropped counts.
        path, line, annotation_id: where the box was read, for the error message.
        shown: how the box appears in the file (e.g. a COCO ``bbox [x, y, w, h]``), for the message.

    Returns:
        The (possibly clipped) box, or None when it was dropped as degenerate.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    shown = shown or f"box [{x1:g}, {y1:g}, {x2:g}, {y2:g}]"
    where = {"line": line, "annotation_id": annotation_id}
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise DatasetError(path, f"{shown} has a NaN or infinite coordinate", **where)
    if x2 <= x1 or y2 <= y1:
        report.dropped[DEGENERATE] += 1
        return None
    if x1 >= width or y1 >= height or x2 <= 0 or y2 <= 0:
        raise DatasetError(path, f"{shown} lies entirely outside the {width}x{height} image", **where)
    fitted = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    overshoot = max(-x1, -y1, x2 - width, y2 - height)
    if overshoot > 0:
        report.clipped[CLIPPED_ROUNDING if overshoot < ROUNDING else CLIPPED] += 1
    return fitted
