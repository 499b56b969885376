"""The layering of mlsys_assets, read from the source: product code uses Dagster's public API only, and the
automation package sits above the asset layers (they never import it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mlsys_assets
from mlsys_assets.automation import tags

PACKAGE = Path(mlsys_assets.__file__).parent
# What may import the automation package: the package itself, the Definitions and the CLI's runs.
ABOVE_THE_ASSETS = {"automation", "definitions.py", "runs.py", "cli.py"}


def _imported_modules(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
    return modules


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_dagster_import(path):
    private = [m for m in _imported_modules(path) if m.startswith("dagster._")]
    assert not private, f"{path.relative_to(PACKAGE)} imports Dagster's private {private}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_asset_layers_do_not_import_the_automation(path):
    if path.relative_to(PACKAGE).parts[0] in ABOVE_THE_ASSETS:
        return
    upward = [m for m in _imported_modules(path) if m.startswith("mlsys_assets.automation")]
    assert not upward, f"{path.relative_to(PACKAGE)} imports {upward} from the layer above it"


def test_the_run_tags_are_dagsters():
    # The one private import left, in a test: Dagster exports these names nowhere else (automation/tags.py).
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
        RUN_KEY_TAG,
    )

    assert tags.RUN_KEY_TAG == RUN_KEY_TAG
    assert tags.ASSET_PARTITION_RANGE_START_TAG == ASSET_PARTITION_RANGE_START_TAG
    assert tags.ASSET_PARTITION_RANGE_END_TAG == ASSET_PARTITION_RANGE_END_TAG
