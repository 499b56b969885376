"""The model registry: every version's state in ml.model_registry, and the production pointer.

State changes go through these functions (the gate asset and `mlsys models` both use them), so the
table, its history and the pointer file always agree. Exactly one version per model is `production`.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd

from mlsys_assets.ml.gate import SERVE_BTYD
from mlsys_assets.ml.model_store import ModelVersion, pointer_path, save_version, write_pointer
from mlsys_assets.ml.targets import TARGETS
from mlsys_assets.storage import transaction

ML_TABLES_DDL = (Path(__file__).parent / "ml_tables.sql").read_text()
# evaluated: the model a backtest fitted at its newest cutoff, kept for lineage; its refit is the candidate.
STATES = ("candidate", "evaluated", "production", "retired", "rejected")


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


def register_candidate(con: duckdb.DuckDBPyConnection, version: ModelVersion, card: dict, run_id: str,
                       state: str = "candidate", refit_of: str | None = None) -> None:
    window = card.get("training_window", {})
    con.execute(
        """
        INSERT INTO ml.model_registry BY NAME SELECT
            ? AS model, ? AS version, ? AS state, now() AS state_changed_at, now() AS created_at, ? AS path,
            ? AS train_as_of_first, ? AS train_as_of_last, ? AS holdout_as_of, ? AS source_partitions,
            ? AS code_version, ? AS params, ? AS features, ? AS metrics, ? AS run_id, ? AS kind, ? AS refit_of
        """,
        [
            version.model, version.version, state, str(version.path),
            window.get("first_as_of"), window.get("last_as_of"), card.get("holdout_as_of"),
            card.get("source_partitions"), card.get("code_version"), json.dumps(card.get("params", {})),
            json.dumps(card["features"]), json.dumps(card.get("metrics", {})), run_id, card.get("kind", "catboost"),
            refit_of,
        ],
    )
    reason = "backtested at the newest cutoff" if state == "evaluated" else (
        f"refit of {refit_of} on every matured example" if refit_of else "trained")
    con.execute("INSERT INTO ml.model_state_history VALUES (?, ?, ?, now(), ?)", [version.model, version.version, state, reason])


def supersede_unevaluated(con: duckdb.DuckDBPyConnection, model: str, keep: str) -> None:
    """Candidates that never reached a gate (a run that failed after training) are not left dangling."""
    stale = [row[0] for row in con.execute(
        "SELECT version FROM ml.model_registry WHERE model = ? AND state = 'candidate' AND gate_passed IS NULL "
        "AND version <> ?", [model, keep]).fetchall()]
    for version in stale:
        _set_state(con, model, version, "rejected", f"superseded by {keep} before it was evaluated")


def production(con: duckdb.DuckDBPyConnection, model: str) -> tuple[str, str] | None:
    """(version, path) of the model's production version, if any."""
    row = con.execute(
        "SELECT version, path FROM ml.model_registry WHERE model = ? AND state = 'production'", [model]
    ).fetchone()
    return (row[0], row[1]) if row else None


def record_gate(con: duckdb.DuckDBPyConnection, model: str, version: str, passed: bool, action: str,
                reason: str) -> None:
    """The gate's result on a version's row; `action` is its decision's: gate.PROMOTE, SERVE_BTYD or KEEP_PRODUCTION."""
    con.execute(
        "UPDATE ml.model_registry SET gate_passed = ?, gate_action = ?, gate_reason = ? "
        "WHERE model = ? AND version = ?",
        [passed, action, reason, model, version],
    )
    if not passed:
        _set_state(con, model, version, "rejected", reason)


def write_pointer_from_table(con: duckdb.DuckDBPyConnection, serving_root: Path, reason: str) -> None:
    rows = con.execute("SELECT model, version, path FROM ml.model_registry WHERE state = 'production'").fetchall()
    write_pointer(serving_root, {m: ModelVersion(m, v, Path(p)) for m, v, p in rows}, reason)


def promote(con: duckdb.DuckDBPyConnection, serving_root: Path, model: str, version: str, reason: str,
            write: bool = True) -> None:
    """Make `version` the production version of `model` (the old one retires) and rewrite the pointer
    (with write=False the caller writes it once for several promotions: `write_pointer_from_table`)."""
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
    if write:
        write_pointer_from_table(con, serving_root, f"{model} {version}: {reason}")


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
    write_pointer_from_table(con, serving_root, f"{model}: rollback from {current} to {previous}")
    return current, previous


def list_versions(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute(
        """
        SELECT model, version, state, strftime(state_changed_at, '%Y-%m-%d %H:%M') AS changed,
               kind, holdout_as_of, gate_passed, gate_reason
        FROM ml.model_registry WHERE state <> 'evaluated' ORDER BY model, created_at DESC
        """
    ).df()


def btyd_card(name: str, horizon_days: int | None, **lineage) -> dict:
    """The card of a servable BG/NBD + Gamma-Gamma version: its forecasts are the snapshot's btyd_* column
    (refitted for every as-of day), so a version is this card (and a monitoring reference), no model file."""
    target = TARGETS[name]
    return {"kind": "btyd", "role": "fallback", "target": target.label, "features": [target.btyd_column],
            "categorical_features": [], "label_window_days": horizon_days, "training_window": {}, "metrics": {},
            "params": {"model": "BG/NBD + Gamma-Gamma, fitted per as-of day on that day's buyers (features/snapshot.py)"},
            **lineage}


def ensure_every_target_served(con: duckdb.DuckDBPyConnection, models_root: Path, serving_root: Path,
                               horizon_days: int, run_id: str) -> list[str]:
    """Before any model has been trained, BG/NBD + Gamma-Gamma serves: a shop gets forecasts as soon as it
    has a snapshot. Returns the versions promoted."""
    promoted = []
    pointer = pointer_path(serving_root)
    named = json.loads(pointer.read_text()).get("models", {}) if pointer.exists() else {}
    for name in TARGETS:
        if production(con, name) or name in named:
            continue
        version = save_version(models_root, name, None, btyd_card(name, horizon_days, note="no model trained yet"))
        register_candidate(con, version, version.card(), run_id)
        record_gate(con, name, version.version, True, SERVE_BTYD, "no model trained yet: the classic model serves")
        promote(con, serving_root, name, version.version, "no model trained yet: BG/NBD + Gamma-Gamma serves", write=False)
        promoted.append(version)
    if promoted:
        # Whatever the pointer already names keeps serving beside the new entries.
        serving = {m: ModelVersion(m, e["version"], Path(e["path"])) for m, e in named.items()}
        write_pointer(serving_root, {**serving, **{v.model: v for v in promoted}},
                      "no model trained yet: BG/NBD + Gamma-Gamma serves")
    return [v.version for v in promoted]
