"""fcos.utils.files: a write that fails (file size limit, read-only folder) leaves the previous file whole, no
stray temporary file, and raises one WriteError naming the path. The limits are real: RLIMIT_FSIZE (with
SIGXFSZ ignored, as a disk that fills up answers) or a read-only folder, in a subprocess."""

from __future__ import annotations

import errno
import json
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from fcos.utils.files import (
    WriteError,
    append_line,
    atomic_write,
    check_output,
    save_image,
    staged_path,
    write_json,
    write_text,
)
from fcos.weights.checkpoint import load_checkpoint, save_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LIMIT = 40_000  # bytes: RLIMIT_FSIZE of the writing process


def limited(limit: int = LIMIT):
    """preexec_fn: files of the child may not grow past ``limit``; writes past it fail with EFBIG."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # inherited through exec: EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def leftovers(folder: Path, *keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_atomic_write_replaces_or_keeps(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"v": 1})
    with pytest.raises(ZeroDivisionError), atomic_write(path, "w") as f:
        f.write('{"v": ')
        _ = 1 / 0  # the writer fails half-way
    assert json.loads(path.read_text()) == {"v": 1} and leftovers(tmp_path, "a.json") == []
    write_text(path, "new")
    assert path.read_text() == "new" and leftovers(tmp_path, "a.json") == []
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # a new file's usual mode, not mkstemp's 0600


def test_unwritable_places_name_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    for write in (lambda p: write_text(p, "x"), lambda p: append_line(p, "x"),
                  lambda p: save_checkpoint({"model": {}, "config": {}}, p)):
        with pytest.raises(WriteError, match=rf"cannot write {blocker}/sub/out: ") as info:
            write(blocker / "sub" / "out")
        assert isinstance(info.value, OSError) and info.value.path == blocker / "sub" / "out"
    back = pickle.loads(pickle.dumps(WriteError(tmp_path / "x", "no space left on the device", errno.ENOSPC)))
    assert str(back) == f"cannot write {tmp_path / 'x'}: no space left on the device" and back.errno == errno.ENOSPC


def test_staged_path_for_libraries_that_write_to_a_path(tmp_path):
    path = tmp_path / "model.onnx"
    with staged_path(path) as tmp:
        Path(tmp).write_bytes(b"first")
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_bytes() == b"first" and path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    with pytest.raises(ZeroDivisionError), staged_path(path) as tmp:
        Path(tmp).write_bytes(b"half")
        _ = 1 / 0
    assert path.read_bytes() == b"first" and leftovers(tmp_path, "model.onnx") == []
    (tmp_path / "folder.onnx").mkdir()
    ran = []
    with pytest.raises(WriteError, match=rf"cannot write {tmp_path / 'folder.onnx'}: it is a folder"):
        with staged_path(tmp_path / "folder.onnx"):
            ran.append(1)  # never: the long work inside must not run for a place it cannot be written to
    assert ran == [] and check_output(tmp_path / "new" / "m.xml") == tmp_path / "new" / "m.xml"


_WRITER = """
import json, sys
from pathlib import Path
import torch
from PIL import Image
from fcos.weights.checkpoint import save_checkpoint
from fcos.utils.files import WriteError, append_line, save_image, write_json

folder = Path(sys.argv[1])
attempts = {
    "last.pt": lambda p: save_checkpoint({"model": {"w": torch.zeros(100_000)}, "config": {}, "iteration": 4}, p),
    "metrics.jsonl": lambda p: append_line(p, json.dumps({"iteration": 5, "pad": "x" * 100_000})),
    "predictions.json": lambda p: write_json(p, [{"score": 0.5, "pad": "x" * 100_000}]),
    "drawn.png": lambda p: save_image(Image.effect_noise((300, 300), 64).convert("RGB"), p),
    # ~48 kB of JPEG, which Pillow's encoder writes to the file descriptor in one call, ignoring a short
    # write: given the descriptor, it would leave a truncated drawing to be renamed into place
    "drawn.jpg": lambda p: save_image(Image.effect_noise((300, 300), 64).convert("RGB"), p, quality=75),
}
for name, attempt in attempts.items():
    try:
        attempt(folder / name)
    except WriteError as exc:
        print(json.dumps({"name": name, "message": str(exc), "errno": exc.errno}))
    else:
        print(json.dumps({"name": name, "message": None}))
"""


def _previous_files(folder: Path) -> dict[str, bytes]:
    save_checkpoint({"model": {"w": torch.ones(3)}, "config": {}, "iteration": 2}, folder / "last.pt")
    append_line(folder / "metrics.jsonl", json.dumps({"iteration": 1}))
    append_line(folder / "metrics.jsonl", json.dumps({"iteration": 2}))
    write_json(folder / "predictions.json", [])
    save_image(Image.new("RGB", (8, 8), (1, 2, 3)), folder / "drawn.png")
    save_image(Image.new("RGB", (8, 8), (1, 2, 3)), folder / "drawn.jpg")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _run_writer(argv: list[str], **kwargs) -> list[dict]:
    proc = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=300, **kwargs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _assert_failed_cleanly(folder: Path, before: dict[str, bytes], results: list[dict], reason: str) -> None:
    assert {r["name"] for r in results} == set(before)
    for result in results:
        assert result["message"] == f"cannot write {folder / result['name']}: {reason}", result
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # every previous file whole, no .tmp
    assert load_checkpoint(folder / "last.pt")["iteration"] == 2
    assert [json.loads(line)["iteration"] for line in (folder / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="POSIX resource limits")
def test_file_size_limit_keeps_every_previous_file(tmp_path):
    before = _previous_files(tmp_path)
    results = _run_writer([sys.executable, "-c", textwrap.dedent(_WRITER), str(tmp_path)], preexec_fn=limited())
    _assert_failed_cleanly(tmp_path, before, results, "file size limit reached (ulimit -f, or the file system's largest file)")
    assert all(r["errno"] == errno.EFBIG for r in results)


def read_only_command(folder: Path, argv: list[str]) -> list[str]:
    """``argv`` run with ``folder`` read-only: by its permissions, or, for root (whom permissions do not
    stop), by a read-only bind mount in a private mount namespace."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return argv
    if not shutil.which("unshare"):
        pytest.skip("running as root without unshare: no way to make a folder read-only")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("running as root without the right to make a mount namespace (a read-only folder needs one)")
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, str(folder), *argv]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux permissions and mount namespaces")
def test_read_only_folder_keeps_every_previous_file(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    before = _previous_files(folder)
    try:
        results = _run_writer(read_only_command(folder, [sys.executable, "-c", textwrap.dedent(_WRITER), str(folder)]))
    finally:
        folder.chmod(0o755)
    reasons = {"read-only file system", "permission denied"}
    assert all(r["message"].rsplit(": ", 1)[1] in reasons for r in results), results
    _assert_failed_cleanly(folder, before, results, results[0]["message"].rsplit(": ", 1)[1])
