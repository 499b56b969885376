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


# --- The stated layers (docs/architecture.md) against the import graph -----------------------------------
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"
SIMULATOR_LAYER = (2, 5)
SIMULATOR_USERS = {"demo_oracle.py", "cli.py"}


def _stated_layers() -> dict[str, tuple[int, ...]]:
    """Module path (relative to the package) -> layer, from the module table of docs/architecture.md."""
    layers: dict[str, tuple[int, ...]] = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].replace(".", "").isdigit() or "`" not in cells[1]:
            continue
        layer = tuple(int(part) for part in cells[0].split("."))
        for pattern in cells[1].replace("`", "").split(","):
            matched = sorted(PACKAGE.glob(pattern.strip()))
            assert matched, f"docs/architecture.md names {pattern.strip()!r}, which matches no file"
            for path in matched:
                name = str(path.relative_to(PACKAGE))
                assert name not in layers, f"{name} is listed twice in docs/architecture.md"
                layers[name] = layer
    return layers


def _module_file(module: str) -> str | None:
    """`mlsys_assets.ml.scoring` -> `ml/scoring.py` (a package -> its `__init__.py`); None outside the package."""
    if module != "mlsys_assets" and not module.startswith("mlsys_assets."):
        return None
    parts = module.split(".")[1:]
    if (PACKAGE.joinpath(*parts).with_suffix(".py")).exists():
        return str(Path(*parts).with_suffix(".py"))
    return str(Path(*parts, "__init__.py"))


def _package_imports(path: Path) -> set[str]:
    """The package files a module imports, at any depth of its code (`from pkg import module` included)."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [n if _module_file(n) and (PACKAGE / _module_file(n)).exists() else node.module for n in names]
        targets |= {_module_file(n) for n in names if _module_file(n)}
    return targets - {str(path.relative_to(PACKAGE))}


def _import_graph() -> dict[str, set[str]]:
    return {str(p.relative_to(PACKAGE)): _package_imports(p) for p in _modules()}


def _needs_a_layer(name: str, imports: set[str]) -> bool:
    return not (name.endswith("__init__.py") and not imports)  # an empty or docstring-only package marker


def test_every_module_has_one_stated_layer() -> None:
    layers = _stated_layers()
    missing = [name for name, imports in _import_graph().items() if _needs_a_layer(name, imports)
               and name not in layers]
    assert not missing, f"not in docs/architecture.md's module table: {missing}"


def upward_imports(graph: dict[str, set[str]], layers: dict[str, tuple[int, ...]]) -> list[str]:
    found = []
    for name, imports in sorted(graph.items()):
        for target in sorted(imports):
            if target in layers and name in layers and layers[target] > layers[name]:
                found.append(f"{name} (layer {layers[name]}) imports {target} (layer {layers[target]})")
            if layers.get(target) == SIMULATOR_LAYER and name not in SIMULATOR_USERS \
                    and layers.get(name) != SIMULATOR_LAYER:
                found.append(f"{name} imports the simulator {target}")
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_module_imports_a_higher_layer() -> None:
    assert upward_imports(_import_graph(), _stated_layers()) == []


def test_the_imports_form_no_cycle() -> None:
    assert import_cycles(_import_graph()) == []


def test_the_layer_checks_fail_on_an_upward_import_and_a_cycle() -> None:
    layers = _stated_layers()
    graph = _import_graph()
    graph["storage.py"] = graph["storage.py"] | {"resources.py"}
    graph["ml/gate.py"] = graph["ml/gate.py"] | {"simulation/oracle.py"}
    assert upward_imports(graph, layers) == [
        "ml/gate.py (layer (2, 3)) imports simulation/oracle.py (layer (2, 5))",
        "ml/gate.py imports the simulator simulation/oracle.py",
        "storage.py (layer (1,)) imports resources.py (layer (3,))",
    ]
    assert import_cycles({name: graph[name] for name in ("resources.py", "storage.py")}) == [
        ["resources.py", "storage.py", "resources.py"]]
    assert import_cycles({"a.py": {"b.py"}, "b.py": {"c.py"}, "c.py": {"a.py"}}) == [["a.py", "b.py", "c.py", "a.py"]]


def test_the_foundation_and_the_libraries_import_no_dagster() -> None:
    layers = _stated_layers()
    dagster_users = [name for name, layer in layers.items() if layer < (3,) and name.endswith(".py")
                     and any(m.split(".")[0] == "dagster" for m in _imported_modules(PACKAGE / name))]
    assert dagster_users == []
