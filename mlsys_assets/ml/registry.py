"""The model registry: every version's state in ml.model_registry, and the production pointer.

State changes go through these functions (the gate asset and `mlsys models` both use them), so the
table, its history and the pointer file always agree. Exactly one version per model is `production`.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd

from mlsys_assets.ml.model_store import ModelVersion, write_pointer
from mlsys_assets.resources import transaction

ML_TABLES_DDL = (Path(__file__).parent / "ml_tables.sql").read_text()
STATES = ("candidate", "production", "retired", "rejected")


class RegistryError(ValueError):
    pass


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(ML_TABLES_DDL)


def _set_state(con: duckdb.DuckDBPyConnection, model: str, version: str, state: str, reason: str) -> None:
    con.execute(
        "UPDATE ml.model_registry SET state = ?, state_changed_at = now() WHERE model = ? AND version = ?",
        [state, model, version],
    )
    con.execute("INSERT INTO ml.model_state_history VALUES (?, ?, ?, now(), ?)", [model, version, state, reason])


def register_candidate(con: duckdb.DuckDBPyConnection, version: ModelVersion, card: dict, run_id: str) -> None:
    con.execute(
        """
        INSERT INTO ml.model_registry VALUES
            (?, ?, 'candidate', now(), now(), ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?)
        """,
        [
            version.model, version.version, str(version.path),
            card["training_window"]["first_as_of"], card["training_window"]["last_as_of"],
            card["holdout_as_of"], card["source_partitions"], card["code_version"],
            json.dumps(card["params"]), json.dumps(card["features"]), json.dumps(card["metrics"]), run_id,
        ],
    )
    con.execute("INSERT INTO ml.model_state_history VALUES (?, ?, 'candidate', now(), 'trained')",
                [version.model, version.version])


def production(con: duckdb.DuckDBPyConnection, model: str) -> tuple[str, str] | None:
    """(version, path) of the model's production version, if any."""
    row = con.execute(
        "SELECT version, path FROM ml.model_registry WHERE model = ? AND state = 'production'", [model]
    ).fetchone()
    return (row[0], row[1]) if row else None


def record_gate(con: duckdb.DuckDBPyConnection, model: str, version: str, passed: bool, reason: str) -> None:
    con.execute(
        "UPDATE ml.model_registry SET gate_passed = ?, gate_reason = ? WHERE model = ? AND version = ?",
        [passed, reason, model, version],
    )
    if not passed:
        _set_state(con, model, version, "rejected", reason)


def _write_pointer_from_table(con: duckdb.DuckDBPyConnection, serving_root: Path, reason: str) -> None:
    rows = con.execute("SELECT model, version, path FROM ml.model_registry WHERE state = 'production'").fetchall()
    write_pointer(serving_root, {m: ModelVersion(m, v, Path(p)) for m, v, p in rows}, reason)


def promote(con: duckdb.DuckDBPyConnection, serving_root: Path, model: str, version: str, reason: str) -> None:
    """Make `version` the production version of `model` (the old one retires) and rewrite the pointer."""
    row = con.execute(
        "SELECT state FROM ml.model_registry WHERE model = ? AND version = ?", [model, version]
    ).fetchone()
    if row is None:
        raise RegistryError(f"no {model} version {version!r} in ml.model_registry")
    if row[0] == "production":
        raise RegistryError(f"{version} is already the production {model} model")
    current = production(con, model)
    with transaction(con):
        if current:
            _set_state(con, model, current[0], "retired", f"replaced by {version}")
        con.execute(
            "UPDATE ml.model_registry SET previous_production = ? WHERE model = ? AND version = ?",
            [current[0] if current else None, model, version],
        )
        _set_state(con, model, version, "production", reason)
    _write_pointer_from_table(con, serving_root, f"{model} {version}: {reason}")


def rollback(con: duckdb.DuckDBPyConnection, serving_root: Path, model: str) -> tuple[str, str]:
    """Restore the version that production replaced; returns (retired, restored)."""
    row = con.execute(
        "SELECT version, previous_production FROM ml.model_registry WHERE model = ? AND state = 'production'", [model]
    ).fetchone()
    if row is None:
        raise RegistryError(f"no production {model} model to roll back")
    current, previous = row
    if previous is None:
        raise RegistryError(f"{current} is the first production {model} model: there is nothing to roll back to")
    with transaction(con):
        _set_state(con, model, current, "retired", f"rolled back to {previous}")
        _set_state(con, model, previous, "production", f"rollback from {current}")
    _write_pointer_from_table(con, serving_root, f"{model}: rollback from {current} to {previous}")
    return current, previous


def list_versions(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute(
        """
        SELECT model, version, state, strftime(state_changed_at, '%Y-%m-%d %H:%M') AS changed,
               holdout_as_of, gate_passed, gate_reason
        FROM ml.model_registry ORDER BY model, created_at DESC
        """
    ).df()
