"""The layering contracts in pyproject.toml ([tool.importlinter], docs/architecture.md) hold: no module
imports a layer above its own (deployment and evaluation never import training), the network never
imports its assignment, losses or decoding, data's readers sit below its pipelines, the library never
imports the CLI.

``lint-imports`` runs in its own process: in-process, its console writer outlived pytest's captured
stdout when another test in the same worker had run first ("I/O operation on closed file")."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout
