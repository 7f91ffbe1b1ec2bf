"""fcos predict's sources: a file, a folder (recursive or not), a glob pattern; names that mirror them."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcos.predict.sources import is_pattern, list_sources


@pytest.fixture
def tree(tmp_path) -> Path:
    for name in ("a.jpg", "B.PNG", "notes.txt", "clip.MP4", "sub/a.jpg", "sub/deeper/c.webp", "sub/deeper/d.avi",
                 "runs/old.jpg"):
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path / "in"


def names(files):
    return [(f.name.as_posix(), f.video) for f in files]


def test_folder_flat_and_recursive(tree):
    assert names(list_sources(tree)) == [("B.PNG", False), ("a.jpg", False), ("clip.MP4", True)]
    assert names(list_sources(tree, recursive=True)) == [
        ("B.PNG", False), ("a.jpg", False), ("clip.MP4", True), ("runs/old.jpg", False), ("sub/a.jpg", False),
        ("sub/deeper/c.webp", False), ("sub/deeper/d.avi", True)]
    # the output folder inside the searched one is left out; the searched folder itself never is
    assert "runs/old.jpg" not in [n for n, _ in names(list_sources(tree, recursive=True, exclude=tree / "runs"))]
    assert len(list_sources(tree, exclude=tree)) == 3
    for f in list_sources(tree, recursive=True):
        assert f.path == tree / f.name


def test_glob_patterns_name_files_from_their_fixed_folders(tree, monkeypatch):
    assert names(list_sources(str(tree / "**" / "*.jpg"))) == [("a.jpg", False), ("runs/old.jpg", False), ("sub/a.jpg", False)]
    assert names(list_sources(str(tree / "sub" / "*" / "*"))) == [("deeper/c.webp", False), ("deeper/d.avi", True)]
    monkeypatch.chdir(tree)
    assert names(list_sources("*.*")) == [("B.PNG", False), ("a.jpg", False), ("clip.MP4", True)]  # not notes.txt
    assert is_pattern("*.jpg") and not is_pattern(tree / "a.jpg")
    with pytest.raises(FileNotFoundError, match=r"no file matches the pattern '\*\.gif'"):
        list_sources("*.gif")


def test_single_files_and_missing_sources(tree, tmp_path):
    (single,) = list_sources(tree / "sub" / "a.jpg")
    assert single.name == Path("a.jpg") and not single.video
    assert list_sources(tree / "notes.txt")[0].video is False  # a named file is a source whatever its suffix
    assert list_sources(tree / "clip.MP4")[0].video is True
    with pytest.raises(FileNotFoundError, match="neither a file, a folder nor a glob pattern"):
        list_sources(tmp_path / "nowhere")
    star = tmp_path / "odd[1]"  # an existing folder whose name looks like a pattern is that folder
    star.mkdir()
    (star / "x.jpg").write_bytes(b"x")
    assert names(list_sources(star)) == [("x.jpg", False)]


def test_every_jpeg_suffix_pillow_reads_is_a_source(tmp_path):
    from PIL import Image

    for name in ("a.jfif", "b.jpe", "c.JPG", "d.txt"):
        Image.new("RGB", (8, 8)).save(tmp_path / name, format="JPEG")
    assert [f.name.as_posix() for f in list_sources(tmp_path)] == ["a.jfif", "b.jpe", "c.JPG"]
