import math

import pytest

from fcos.data.errors import DatasetError
from fcos.data.geometry import CLIPPED, CLIPPED_ROUNDING, DEGENERATE, fit_box
from fcos.data.records import LoadReport


def test_inside_box_is_unchanged_and_uncounted():
    report = LoadReport()
    assert fit_box((1, 2, 30, 20), 40, 30, report, "f") == (1.0, 2.0, 30.0, 20.0)
    assert not report.clipped and not report.dropped


def test_partly_outside_is_clipped_and_counted():
    report = LoadReport()
    assert fit_box((-5, 2, 45, 31), 40, 30, report, "f") == (0.0, 2.0, 40.0, 30.0)
    assert fit_box((0, 0, 40.001, 30), 40, 30, report, "f") == (0.0, 0.0, 40.0, 30.0)
    assert report.clipped == {CLIPPED: 1, CLIPPED_ROUNDING: 1}


@pytest.mark.parametrize("box", [(5, 5, 5, 10), (5, 5, 10, 5), (10, 5, 5, 10)])
def test_degenerate_is_dropped_and_counted(box):
    report = LoadReport()
    assert fit_box(box, 40, 30, report, "f") is None
    assert report.dropped == {DEGENERATE: 1}


@pytest.mark.parametrize(
    "box,problem",
    [
        ((40, 0, 50, 10), "entirely outside the 40x30 image"),
        ((-20, 0, 0, 10), "entirely outside"),
        ((0, 30, 10, 35), "entirely outside"),
        ((0, math.nan, 10, 10), "NaN or infinite"),
        ((0, 0, math.inf, 10), "NaN or infinite"),
    ],
)
def test_bad_boxes_raise_with_location(box, problem):
    with pytest.raises(DatasetError, match=problem) as info:
        fit_box(box, 40, 30, LoadReport(), "labels/x.txt", line=4)
    assert str(info.value).startswith("labels/x.txt line 4: box [")
