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


def _product_files_containing(needle: str) -> list[str]:
    return sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*")
                  if path.suffix in (".py", ".sql") and needle in path.read_text())


@pytest.mark.parametrize("needle, home", [
    ("MLSYS_DATA_DIR", "storage.py"),  # read once, at run time: every command takes --data-dir alike
    ("online_features.parquet", "storage.py"),
    ("production.json", "storage.py"),
    ("dayofyear(", "features/derived.py"),  # the season formula: SQL and the API's row from one definition
    ("tm_yday", "features/derived.py"),
])
def test_each_of_these_lives_in_one_product_module(needle: str, home: str) -> None:
    assert _product_files_containing(needle) == [home]


def test_files_are_replaced_only_through_the_storage_helper() -> None:
    # model_store publishes a model version folder under a name computed from its content, once.
    assert _product_files_containing("os.replace(") == ["ml/model_store.py", "storage.py"]


@pytest.mark.parametrize("module", ["mlsys_assets.ml.registry", "mlsys_assets.storage", "mlsys_assets.ml.model_store"])
def test_the_plain_modules_the_cli_and_api_use_load_no_dagster(module: str) -> None:
    """`mlsys models promote|rollback` and the API use these without Dagster (a fresh interpreter tells)."""
    import subprocess
    import sys

    probe = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
