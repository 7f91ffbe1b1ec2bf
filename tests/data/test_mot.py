"""MOTChallenge text files: exact lines written, round trips, and errors naming the file and line."""

from __future__ import annotations

import numpy as np
import pytest

from fcos.data.errors import DatasetError
from fcos.data.mot import read_mot, read_sequence, write_mot, write_mot_gt, write_seqinfo


def test_results_round_trip_with_exact_lines(tmp_path):
    path = write_mot(tmp_path / "seq.txt", frames=[3, 1, 1], ids=[7, 2, 1],
                     boxes=[[10, 20, 40, 60], [0.5, 1.25, 2.5, 3.125], [5, 5, 6, 7]], scores=[0.9, 0.5, 0.123456])
    assert path.read_text().splitlines() == [  # by frame, then id; x, y, w, h
        "1,1,5.00,5.00,1.00,2.00,0.1235,-1,-1,-1",
        "1,2,0.50,1.25,2.00,1.88,0.5000,-1,-1,-1",
        "3,7,10.00,20.00,30.00,40.00,0.9000,-1,-1,-1",
    ]
    read = read_mot(path)
    assert read.frames.tolist() == [1, 1, 3] and read.ids.tolist() == [1, 2, 7]
    np.testing.assert_allclose(read.boxes, [[5, 5, 6, 7], [0.5, 1.25, 2.5, 3.13], [10, 20, 40, 60]])
    np.testing.assert_allclose(read.conf, [0.1235, 0.5, 0.9])
    assert read.classes.tolist() == [-1, -1, -1] and read.visibility.tolist() == [-1, -1, -1]
    empty = write_mot(tmp_path / "empty.txt", [], [], np.zeros((0, 4)), [])
    assert empty.read_text() == "" and len(read_mot(empty)) == 0 and read_mot(empty).boxes.shape == (0, 4)


def test_ground_truth_round_trip_and_short_rows(tmp_path):
    path = write_mot_gt(tmp_path / "gt" / "gt.txt", [2, 1], [1, 1], [[1, 2, 11, 22], [0, 0, 4, 4]], [3, 3],
                        [0.5, 1.0], [0, 1])
    assert path.read_text().splitlines() == ["1,1,0.00,0.00,4.00,4.00,1,3,1.000", "2,1,1.00,2.00,10.00,20.00,0,3,0.500"]
    gt = read_mot(path)
    assert gt.classes.tolist() == [3, 3] and gt.conf.tolist() == [1, 0] and gt.visibility.tolist() == [1.0, 0.5]
    assert len(gt.select(gt.conf > 0)) == 1
    short = tmp_path / "short.txt"
    short.write_text("1, 4, 10, 10, 5, 5\n\n2 , -1, 0, 0, 1, 1, 0.3\n")  # spaces, a blank line, 6 and 7 columns
    read = read_mot(short)
    assert read.ids.tolist() == [4, -1] and read.conf.tolist() == [1.0, 0.3] and read.classes.tolist() == [-1, -1]
    np.testing.assert_allclose(read.boxes[0], [10, 10, 15, 15])


@pytest.mark.parametrize(("text", "message"), [
    ("1,1,0,0,5,5\n1,2,0,0,5\n", r"bad\.txt line 2: expected 6 to 10 comma-separated numbers, got 5"),
    ("1,1,0,0,5,5,1,1,1,1,1\n", r"line 1: expected 6 to 10 .* got 11"),
    ("1,1,a,0,5,5\n", r"line 1: not a number in '1,1,a,0,5,5'"),
    ("0,1,0,0,5,5\n", r"line 1: the frame must be a whole number from 1, got 0"),
    ("1.5,1,0,0,5,5\n", r"the frame must be a whole number from 1, got 1.5"),
    ("1,2.5,0,0,5,5\n", r"the id must be a whole number, got 2.5"),
    ("1,1,0,0,-5,5\n", r"width and height must not be negative, got -5, 5"),
    ("1,1,0,nan,5,5\n", r"a value is not finite"),
    ("1,3,0,0,5,5\n2,3,0,0,5,5\n1,3,1,1,5,5\n", r"line 3: frame 1 has id 3 twice \(also line 1\)"),
])
def test_malformed_rows_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_mot(path)


def test_detections_may_repeat_id_minus_one_and_missing_files_are_named(tmp_path):
    path = tmp_path / "det.txt"
    path.write_text("1,-1,0,0,5,5,0.9\n1,-1,9,9,5,5,0.8\n")
    assert len(read_mot(path)) == 2
    with pytest.raises(DatasetError, match=r"missing\.txt: cannot read the MOT file"):
        read_mot(tmp_path / "missing.txt")


def test_sequence_folders(tmp_path):
    assert read_sequence(tmp_path) is None  # neither img1/ nor seqinfo.ini
    (tmp_path / "seq" / "img1").mkdir(parents=True)
    plain = read_sequence(tmp_path / "seq")
    assert (plain.name, plain.frames, plain.gt, plain.fps) == ("seq", tmp_path / "seq" / "img1", None, None)
    write_seqinfo(tmp_path / "seq", name="walk", fps=12.5, length=40, width=96, height=64)
    write_mot_gt(tmp_path / "seq" / "gt" / "gt.txt", [1], [1], [[0, 0, 1, 1]], [1], [1.0], [1])
    seq = read_sequence(tmp_path / "seq")
    assert (seq.name, seq.fps, seq.length, seq.width, seq.height) == ("walk", 12.5, 40, 96, 64)
    assert seq.gt == tmp_path / "seq" / "gt" / "gt.txt"
    (tmp_path / "seq" / "seqinfo.ini").write_text("[Sequence]\nframeRate=fast\n")
    with pytest.raises(DatasetError, match=r"seqinfo\.ini: frameRate must be a number, got 'fast'"):
        read_sequence(tmp_path / "seq")
