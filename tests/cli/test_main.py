"""``fcos.cli.main``: how a command's warnings read on the terminal."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import fcos
from fcos.cli import _one_line_warnings


def test_fcos_warnings_are_one_line_and_others_keep_pythons_format():
    inside = str(Path(fcos.__file__).parent / "predict" / "run.py")
    with _one_line_warnings():
        ours = warnings.formatwarning("skipping x.jpg: truncated", UserWarning, inside, 107, "warnings.warn(...)")
        theirs = warnings.formatwarning("old API", UserWarning, "/elsewhere/lib.py", 3, "x = 1")
        deprecation = warnings.formatwarning("use y", DeprecationWarning, inside, 40, "warnings.warn(...)")
    assert ours == "warning: skipping x.jpg: truncated\n"
    assert theirs.startswith("/elsewhere/lib.py:3: UserWarning: old API")
    assert "DeprecationWarning: use y" in deprecation  # for developers: where it comes from
    assert warnings.formatwarning("a", UserWarning, inside, 1, "") != "warning: a\n"  # restored afterwards


def test_a_skipped_file_reads_as_a_warning_line(checkpoint, shared_data, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.jpg").write_bytes(next((shared_data / "fruit").rglob("*.jpg")).read_bytes())
    (source / "broken.jpg").write_text("not an image")
    run = subprocess.run([sys.executable, "-m", "fcos", "predict", "--weights", str(checkpoint), "--source",
                          str(source), "--out", str(tmp_path / "out"), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("warning: ")]
    assert lines[0].startswith(f"warning: skipping {source / 'broken.jpg'}: not an image")
    assert lines[1] == "warning: skipped 1 of 2 files that could not be read: ['broken.jpg']"
    assert "UserWarning" not in run.stderr and "warnings.warn" not in run.stderr
