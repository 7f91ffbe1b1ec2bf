"""The layering contract in pyproject.toml ([tool.importlinter], docs/architecture.md) holds: no module
imports a layer above its own, data and model never import each other, the library never imports the CLI."""

from pathlib import Path

from importlinter.cli import lint_imports

REPO = Path(__file__).resolve().parents[1]


def test_import_contract_is_kept(capsys):
    code = lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out[-3000:]
