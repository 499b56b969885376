"""The Postgres instance example of docs/scaling.md: quoted unchanged, and accepted by Dagster.

Nothing here needs dagster-postgres or dagster-k8s (neither is installed). Dagster's own instance
loader validates the whole file; the `storage: postgres:` block is then processed with `pg_config()`,
the schema that dagster-postgres's storage classes declare as their `config_type`, which is what
resolves the `env:` values when a real instance loads. The run coordinator and run launcher named
by the file are Dagster core classes, so they are built for real. Only the connection to a
Postgres server (and, for the commented Kubernetes launcher, dagster-k8s's own field checks) are
left untested.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DefaultRunLauncher, QueuedRunCoordinator
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.config import pg_config

from mlsys_assets.resources import WAREHOUSE_POOL

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "dagster-postgres.yaml"
DOC = REPO / "docs" / "scaling.md"
LOCAL_INSTANCE = REPO / ".dagster" / "dagster.yaml"

PG_ENV = {
    "DAGSTER_PG_HOST": "postgres.internal",
    "DAGSTER_PG_PORT": "6432",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "s3cret",
}


@pytest.fixture
def pg_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)
    return PG_ENV


def example_text() -> str:
    return EXAMPLE.read_text()


def quoted_block(doc: str) -> str:
    """The fenced block between the begin/end markers that name the example file."""
    match = re.search(
        r"<!-- begin docs/examples/dagster-postgres\.yaml -->\n```yaml\n(.*?)```\n<!-- end docs/examples/dagster-postgres\.yaml -->",
        doc,
        re.DOTALL,
    )
    assert match, "docs/scaling.md must quote the example between its begin/end markers"
    return match.group(1)


def load_instance_config(tmp_path: Path, config: dict[str, Any] | str) -> dict[str, Any]:
    """Validate `config` as $DAGSTER_HOME/dagster.yaml with Dagster's own instance loader."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    (home / "dagster.yaml").write_text(text)
    value, custom_class = dagster_instance_config(str(home))
    assert custom_class is None
    return dict(value)


def k8s_alternative() -> dict[str, Any]:
    """The commented-out `run_launcher:` block of the example, uncommented."""
    lines = example_text().splitlines()
    start = lines.index("# run_launcher:")
    block = []
    for line in lines[start:]:
        if not (line == "# run_launcher:" or line.startswith("#   ")):
            break
        block.append(line[2:])
    return yaml.safe_load("\n".join(block))


def test_doc_quotes_the_example_unchanged() -> None:
    quoted = quoted_block(DOC.read_text())
    assert quoted == example_text()
    assert yaml.safe_load(quoted) == yaml.safe_load(example_text())


def test_example_is_a_valid_instance_config(tmp_path: Path, pg_env: dict[str, str]) -> None:
    config = load_instance_config(tmp_path, example_text())

    # The storage block, processed the way dagster-postgres processes it: env values resolved, typed.
    storage = process_config(pg_config(), config["storage"]["postgres"])
    assert storage.success, storage.errors
    db = storage.value["postgres_db"]
    assert (db["hostname"], db["port"], db["db_name"], db["username"], db["password"]) == (
        "postgres.internal", 6432, "dagster", "dagster", "s3cret"
    )

    # What a DagsterInstance would be built from: Postgres storage classes, and the core classes
    # for coordinator and launcher, instantiated with their config validated.
    ref = InstanceRef.from_dir(str(tmp_path / "dagster_home"))
    assert (ref.storage_data.module_name, ref.storage_data.class_name) == ("dagster_postgres", "DagsterPostgresStorage")
    assert ref.run_storage_data.class_name == "PostgresRunStorage"
    assert ref.event_storage_data.class_name == "PostgresEventLogStorage"
    assert ref.schedule_storage_data.class_name == "PostgresScheduleStorage"
    assert isinstance(ref.run_coordinator, QueuedRunCoordinator)
    assert isinstance(ref.run_launcher, DefaultRunLauncher)

    # Same one-writer rule as the local instance; the pool the assets use is the default-limited one.
    local = yaml.safe_load(LOCAL_INSTANCE.read_text())
    assert WAREHOUSE_POOL == "warehouse"
    assert config["concurrency"]["pools"]["default_limit"] == 1 == local["concurrency"]["pools"]["default_limit"]
    assert ref.settings["concurrency"]["runs"]["tag_concurrency_limits"] == [{"key": "dagster/backfill", "limit": 1}]
    assert config["telemetry"] == {"enabled": False}


def test_commented_k8s_launcher_is_accepted_by_the_instance_schema(tmp_path: Path, pg_env: dict[str, str]) -> None:
    alternative = k8s_alternative()
    assert alternative["run_launcher"]["module"] == "dagster_k8s.launcher"
    assert alternative["run_launcher"]["class"] == "K8sRunLauncher"
    config = yaml.safe_load(example_text())
    config["run_launcher"] = alternative["run_launcher"]
    value = load_instance_config(tmp_path, config)
    # The instance schema checks module/class/config shape; the fields inside `config` are checked by
    # dagster-k8s when the instance loads, which cannot happen here.
    assert value["run_launcher"]["config"]["instance_config_map"] == "dagster-instance"


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    config = yaml.safe_load(example_text())
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


def _without(path: tuple[str, ...]) -> dict[str, Any]:
    config = yaml.safe_load(example_text())
    node = config
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return config


BROKEN = {
    "typo in a postgres_db key": _with(("storage", "postgres", "postgres_db", "hostnme"), "x"),
    "missing required hostname": _without(("storage", "postgres", "postgres_db", "hostname")),
    "typo in a top-level key": {**yaml.safe_load(EXAMPLE.read_text()), "run_coordinater": {"module": "dagster", "class": "QueuedRunCoordinator"}},
    "typo in the pools block": _with(("concurrency", "pools", "default_limt"), 1),
    "negative pool limit": _with(("concurrency", "pools", "default_limit"), -1),
    "unknown pool granularity": _with(("concurrency", "pools", "granularity"), "step"),
    "run limit in two places": _with(("run_coordinator", "config", "max_concurrent_runs"), 4),
    "two storage backends": _with(("storage", "sqlite"), {"base_dir": "/tmp"}),
    "tag limit without a limit": _with(("concurrency", "runs", "tag_concurrency_limits"), [{"key": "dagster/backfill"}]),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_instance_schema_rejects_mistakes(tmp_path: Path, pg_env: dict[str, str], name: str) -> None:
    with pytest.raises(DagsterInvalidConfigError):
        load_instance_config(tmp_path, BROKEN[name])


def test_storage_processing_rejects_missing_or_bad_env(tmp_path: Path, pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_instance_config(tmp_path, example_text())
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    assert not process_config(pg_config(), config["storage"]["postgres"]).success
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "s3cret")
    monkeypatch.setenv("DAGSTER_PG_PORT", "not-a-port")
    assert not process_config(pg_config(), config["storage"]["postgres"]).success


def test_coordinator_config_typo_is_rejected_when_the_instance_builds_it(tmp_path: Path, pg_env: dict[str, str]) -> None:
    broken = _with(("run_coordinator", "config", "dequeue_num_worker"), 4)
    load_instance_config(tmp_path, broken)  # the instance schema keeps class config permissive...
    ref = InstanceRef.from_dir(str(tmp_path / "dagster_home"))
    with pytest.raises(DagsterInvalidConfigError):
        ref.run_coordinator  # ...the class's own schema refuses it
