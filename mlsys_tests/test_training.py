"""Training examples never see the holdout's future and label exactly (A, A+H]; training is
deterministic for a seed; every model version carries its card and lineage."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from mlsys_assets.automation.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from mlsys_assets.features.assets import customer_daily
from mlsys_assets.features.snapshot import BTYD_FEATURES, FEATURES
from mlsys_assets.ingest.assets import raw_transactions
from mlsys_assets.ml import model_store
from mlsys_assets.ml.assets import LtvModelConfig, code_version, ltv_model, model_spec, training_examples
from mlsys_assets.ml.backtest import cutoff_days, run_backtest, train_days
from mlsys_assets.ml.targets import TARGETS
from mlsys_assets.ml.metrics import SPEND_METRICS, spend_metrics
from mlsys_assets.ml.model_store import version_from_path
from mlsys_assets.resources import ForecastSettings

H = 30  # the shop fixture's horizon (SHOP_HORIZON_DAYS)


def _range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: first.isoformat(), ASSET_PARTITION_RANGE_END_TAG: last.isoformat()}


def _examples(shop) -> pd.DataFrame:
    return shop.frame("SELECT * FROM ml.training_examples ORDER BY as_of, customer_id")


def _next_second() -> None:
    """Version ids have one-second resolution: start the next training in a later second."""
    time.sleep(1.02 - time.time() % 1)


# --- label windows -----------------------------------------------------------------------------------


def test_backtest_cutoffs_are_spaced_by_the_horizon_and_labels_are_exact(ltv_versions):
    shop, result = ltv_versions["shop"], ltv_versions["examples_result"]
    examples = _examples(shop)
    metadata = {k: v.value for k, v in result.asset_materializations_for_node("ml__training_examples")[0].metadata.items()}
    cutoffs = [dt.date.fromisoformat(d) for d in metadata["backtest_cutoffs"]]
    last_delivery = shop.query("SELECT max(delivery_date) FROM raw.transactions")[0][0]
    grid = sorted(examples["as_of"].dt.date.unique())

    assert len(cutoffs) == 3 and metadata["label_window_days"] == H
    assert cutoffs[-1] == grid[-1] == last_delivery - dt.timedelta(days=H)  # the newest label window has fully arrived
    assert all(later - earlier >= dt.timedelta(days=H) for earlier, later in zip(cutoffs, cutoffs[1:]))
    assert all(len(train_days(grid, cutoff, H)) >= 2 for cutoff in cutoffs)
    assert sorted(examples.loc[examples["split"] == "holdout", "as_of"].dt.date.unique()) == [cutoffs[-1]]
    # Every label is what raw.transactions holds for (A, A+H], computed independently here.
    expected = shop.frame(
        """SELECT e.as_of, e.customer_id, coalesce(sum(t.amount), 0)::DOUBLE AS label_spend,
                  count(t.transaction_id) AS label_transactions
           FROM ml.training_examples e LEFT JOIN raw.transactions t
             ON t.customer_id = e.customer_id AND t.event_date > e.as_of AND t.event_date <= e.as_of + ?::INTEGER
           GROUP BY ALL ORDER BY ALL""", [H])
    np.testing.assert_allclose(examples["label_spend"], expected["label_spend"])
    assert list(examples["label_transactions"]) == list(expected["label_transactions"])
    assert list(examples["churned"]) == list((expected["label_transactions"] == 0).astype(int))


def test_a_backtest_forecast_never_sees_labels_that_ended_after_its_cutoff(ltv_versions):
    """Poison every label whose window ends after a cutoff: that cutoff's forecasts must not move."""
    shop = ltv_versions["shop"]
    examples = _examples(shop)
    grid = sorted(examples["as_of"].dt.date.unique())
    cutoff = cutoff_days(grid, H, 3)[-2]
    spec = model_spec(TARGETS["ltv"], LtvModelConfig(iterations=30))
    clean, _ = run_backtest(spec, examples, examples, [cutoff], H)
    poisoned = examples.copy()
    unknown_then = poisoned["as_of"] + pd.Timedelta(days=H) > pd.Timestamp(cutoff)
    poisoned.loc[unknown_then, "label_spend"] = poisoned.loc[unknown_then, "label_spend"] * 50 + 1000
    leaked, _ = run_backtest(spec, poisoned, poisoned, [cutoff], H)
    # (The cutoff's own actuals are poisoned too: they are what the forecast is graded on, not trained on.)
    pd.testing.assert_frame_equal(clean.drop(columns="actual"), leaked.drop(columns="actual"))
    # The same poison before the cutoff does move the forecast: the test can see a leak.
    poisoned.loc[~unknown_then, "label_spend"] = poisoned.loc[~unknown_then, "label_spend"] * 50 + 1000
    moved, _ = run_backtest(spec, poisoned, poisoned, [cutoff], H)
    assert not np.allclose(clean["catboost"], moved["catboost"])


def test_labels_cover_the_days_after_the_as_of_day_through_the_horizon(write_transactions, resources, instance, query):
    # H = 10; deliveries from day 0 to day 40 give the grid 10, 20 (train) and 30 (holdout).
    d0 = dt.date(2025, 1, 1)

    def on(offset: int) -> str:
        return (d0 + dt.timedelta(days=offset)).isoformat()

    write_transactions(on(0), [f"t0,c1,{on(0)},1.00,1", f"t1,c2,{on(0)},2.00,1"])
    write_transactions(on(10), [f"t2,c1,{on(10)},10.00,1"])     # exactly on A = day 10: a feature, not a label
    write_transactions(on(20), [f"t3,c1,{on(20)},20.00,1"])     # exactly on A + H: in the label of A = day 10
    write_transactions(on(21), [f"t4,c1,{on(21)},40.00,1", f"t5,c2,{on(21)},80.00,1", f"t6,c2,{on(21)},5.00,1"])
    write_transactions(on(40), [f"t7,c2,{on(40)},160.00,1"])
    ml_resources = {**resources, "forecast": ForecastSettings(horizon_days=10)}
    tags = _range_tags(d0, d0 + dt.timedelta(days=40))
    materialize([raw_transactions], resources=ml_resources, instance=instance, tags=tags)
    materialize([customer_daily], resources=ml_resources, instance=instance, tags=tags)

    materialize([training_examples], resources=ml_resources, instance=instance, run_config={"ops": {
        "ml__training_examples": {"config": {"min_history_days": 10, "grid_step_days": 10, "backtest_cutoffs": 1}}}})

    rows = query("SELECT as_of, customer_id, label_spend, label_transactions, churned, split, recency_days "
                 "FROM ml.training_examples ORDER BY ALL")
    day = lambda offset: d0 + dt.timedelta(days=offset)  # noqa: E731
    assert rows == [
        (day(10), "c1", 20.0, 1, 0, "train", 0),
        (day(10), "c2", 0.0, 0, 1, "train", 10),
        (day(20), "c1", 40.0, 1, 0, "train", 0),
        (day(20), "c2", 85.0, 2, 0, "train", 20),
        (day(30), "c1", 0.0, 0, 1, "holdout", 9),
        (day(30), "c2", 160.0, 1, 0, "holdout", 9),
    ]


def test_later_data_changes_no_training_example_whose_window_has_ended(shop):
    shop.retrain([training_examples])
    before = _examples(shop)
    holdout_start = before.loc[before["split"] == "holdout", "as_of"].min().date()
    last = shop.query("SELECT max(delivery_date) FROM raw.transactions")[0][0]
    # Every training label window ends by the first holdout day; change everything delivered after it:
    # re-deliver those days with other amounts and one sale fewer each, and deliver 14 new days.
    landing = shop.layout.transactions_landing
    for offset in range(1, (last - holdout_start).days + 1):
        path = landing / f"{holdout_start + dt.timedelta(days=offset)}.csv"
        lines = path.read_text().splitlines()
        header, rows = lines[0], lines[1:]
        changed = [",".join([*fields[:3], f"{float(fields[3]) * 2 + 1:.2f}", fields[4]])
                   for fields in (row.split(",") for row in rows[1:])]
        path.write_text("\n".join([header, *changed]) + "\n")
    for offset in range(1, 15):
        delivery = last + dt.timedelta(days=offset)
        sales = [f"X{offset:02d}{i},C{(offset * 37 + i * 11) % 600 + 1:07d},{delivery} 12:00:00,{10 + i}.00,1"
                 for i in range(12)]
        (landing / f"{delivery}.csv").write_text("\n".join([landing.joinpath(f"{last}.csv").read_text().splitlines()[0],
                                                            *sales]) + "\n")
    tags = _range_tags(holdout_start + dt.timedelta(days=1), last + dt.timedelta(days=14))
    shop.materialize([raw_transactions], tags=tags)
    shop.materialize([customer_daily], tags=tags)

    shop.retrain([training_examples])
    after = _examples(shop)

    finished = before[before["as_of"] + pd.Timedelta(days=H) <= pd.Timestamp(holdout_start)].reset_index(drop=True)
    same_days = after[after["as_of"].isin(finished["as_of"].unique())].reset_index(drop=True)
    pd.testing.assert_frame_equal(same_days, finished)
    # The change did reach the examples: the grid moved on, and the holdout days kept saw other labels.
    assert after["as_of"].max() == before["as_of"].max() + pd.Timedelta(days=14)
    kept = before[(before["split"] == "holdout") & before["as_of"].isin(after["as_of"])]
    assert not kept.empty
    merged = kept.merge(after, on=["as_of", "customer_id"], suffixes=("_before", "_after"))
    assert not np.allclose(merged["label_spend_before"], merged["label_spend_after"])


# --- determinism and the version card ----------------------------------------------------------------


@pytest.fixture(scope="module")
def ltv_versions(tmp_path_factory, shop_factory):
    """Training examples of the shop, then three ltv_model versions trained on them: seed 7 twice, then seed 8."""
    with DagsterInstance.ephemeral() as instance:
        shop = shop_factory(tmp_path_factory.mktemp("ltv_versions"), instance)
        examples_result = shop.retrain([training_examples])
        versions, results = [], []
        for seed in (7, 7, 8):
            _next_second()
            result = shop.retrain([ltv_model], ltv={"seed": seed})
            metadata = result.asset_materializations_for_node("ml__ltv_model")[0].metadata
            versions.append(version_from_path(Path(metadata["path"].value)))
            results.append(result)
        yield {"shop": shop, "examples_result": examples_result, "versions": versions, "results": results}


def _holdout_predictions(shop, version) -> np.ndarray:
    """The version's forecasts for the holdout, built from what its card says the model takes."""
    holdout = shop.frame("SELECT * FROM ml.training_examples WHERE split = 'holdout' ORDER BY as_of, customer_id")
    card = version.card()
    matrix = holdout[card["features"]].copy()
    for column in card["features"]:
        matrix[column] = matrix[column].astype(str if column in card["categorical_features"] else float)
    return version.load().predict(matrix)


def test_same_seed_same_predictions_other_seed_other_predictions(ltv_versions):
    shop, (first, second, other) = ltv_versions["shop"], ltv_versions["versions"]

    assert len({first.version, second.version, other.version}) == 3
    same = [_holdout_predictions(shop, v) for v in (first, second)]
    np.testing.assert_array_equal(same[0], same[1])
    assert not np.allclose(_holdout_predictions(shop, other), same[0])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_a_byte_identical_model_file(ltv_versions):
    first, second, _ = ltv_versions["versions"]
    assert _sha256(first.model_file) == _sha256(second.model_file)


class _FrozenClock(dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=tz)


def test_same_seed_retraining_in_the_same_second_gets_a_version_of_its_own(ltv_versions, monkeypatch):
    shop = ltv_versions["shop"]
    monkeypatch.setattr(model_store, "dt", SimpleNamespace(datetime=_FrozenClock, timezone=dt.timezone))
    first = shop.retrain([ltv_model], ltv={"seed": 7})

    second = shop.retrain([ltv_model], ltv={"seed": 7}, raise_on_error=False)

    assert first.success and second.success
    assert shop.query("SELECT version, count(*) FROM ml.model_registry GROUP BY ALL HAVING count(*) > 1") == []
    assert not list((shop.layout.models / "ltv").glob(".staging-*"))


def test_version_folder_holds_the_model_and_its_card(ltv_versions):
    shop, version = ltv_versions["shop"], ltv_versions["versions"][0]
    examples = shop.frame("SELECT * FROM ml.training_examples ORDER BY as_of, customer_id")
    all_days = sorted(str(d) for d in examples["as_of"].dt.date.unique())

    card = json.loads(version.card_file.read_text())

    assert {"card.json", "model.cbm", "reference.parquet"} <= {p.name for p in version.path.iterdir()}
    assert version.path == shop.layout.models / "ltv" / version.version
    assert card["model"] == "ltv" and card["version"] == version.version
    configured = {"loss_function": "Tweedie:variance_power=1.2", "iterations": 60, "learning_rate": 0.1, "depth": 4,
                  "l2_leaf_reg": 3.0, "random_seed": 7}
    assert {k: card["params"].get(k) for k in configured} == configured
    assert card["seed"] == 7 and card["boost_from"] == "btyd" and card["role"] == "refit"
    assert card["features"] == list(FEATURES)
    # The refit saw every matured example, the newest cutoff's included.
    assert card["training_window"] == {"first_as_of": all_days[0], "last_as_of": all_days[-1], "as_of_days": all_days}
    assert card["holdout_as_of"] == all_days[-1] == card["backtest_cutoffs"][-1]
    assert card["source_partitions"] == "2024-01-01 … 2024-10-26"
    assert card["label_window_days"] == H
    assert card["code_version"] == code_version()
    assert card["training_rows"] == len(examples)
    assert set(card["metrics"]["holdout"]) == set(SPEND_METRICS)
    assert set(card["metrics"]["by_cutoff"]) == set(card["backtest_cutoffs"])
    # The newest cutoff's metrics are those of the backtest forecasts stored for this version.
    stored = shop.frame("SELECT actual, candidate FROM ml.backtest_predictions WHERE version = ? AND cutoff = ?",
                        [version.version, card["holdout_as_of"]])
    assert len(stored) == int((examples["split"] == "holdout").sum())
    assert card["metrics"]["holdout"] == pytest.approx(spend_metrics(stored["actual"], stored["candidate"]), nan_ok=True)
    assert card["model_sha256_prefix"] == _sha256(version.model_file)[:8]


def test_registry_row_names_the_version_folder_and_its_lineage(ltv_versions):
    shop, version, result = ltv_versions["shop"], ltv_versions["versions"][0], ltv_versions["results"][0]
    card = version.card()

    rows = shop.query(
        "SELECT state, path, train_as_of_first::VARCHAR, train_as_of_last::VARCHAR, holdout_as_of::VARCHAR, "
        "source_partitions, code_version, params, features, metrics, gate_passed, run_id "
        "FROM ml.model_registry WHERE model = 'ltv' AND version = ?", [version.version])

    assert len(rows) == 1
    state, path, first, last, holdout, partitions, code, params, features, metrics, gate_passed, run_id = rows[0]
    assert (state, path, gate_passed, run_id) == ("candidate", str(version.path), None, result.run_id)
    assert (first, last, holdout) == (card["training_window"]["first_as_of"], card["training_window"]["last_as_of"],
                                      card["holdout_as_of"])
    assert (partitions, code) == (card["source_partitions"], card["code_version"])
    assert (json.loads(params), json.loads(features), json.loads(metrics)) == (card["params"], card["features"], card["metrics"])
    assert shop.query("SELECT state, reason FROM ml.model_state_history WHERE version = ?", [version.version]) == [
        ("candidate", f"refit of {card['refit_of']} on every matured example")]
    metadata = result.asset_materializations_for_node("ml__ltv_model")[0].metadata
    assert (metadata["version"].value, metadata["path"].value) == (version.version, str(version.path))
    assert metadata["source_partitions"].value == card["source_partitions"]


def test_grid_built_a_day_at_a_time_equals_the_grid_built_at_once(shop, monkeypatch):
    """A million customers' grid is built in chunks of days (memory); the chunks must add up to the same table."""
    order = "SELECT * FROM ml.training_examples ORDER BY as_of, customer_id"
    shop.retrain([training_examples])
    at_once = shop.frame(order)
    monkeypatch.setattr("mlsys_assets.ml.grid.GRID_CHUNK_ROWS", 1)  # one as-of day per chunk
    shop.retrain([training_examples])
    by_day = shop.frame(order)
    assert at_once["as_of"].nunique() > 2
    pd.testing.assert_frame_equal(at_once, by_day)
    assert not shop.query("SELECT * FROM duckdb_tables() WHERE table_name = 'training_examples_next'")


def test_a_large_shops_grid_covers_a_fixed_sample_of_customers_with_their_own_features(shop):
    """Above max_grid_rows the grid covers the customers first by hash(customer_id), each with all its as-of
    days; every column but the per-day BTYD fits (fitted on the sample) equals the full grid's."""
    order = "SELECT * FROM ml.training_examples ORDER BY as_of, customer_id"

    def grid(**config) -> tuple[pd.DataFrame, dict]:
        result = shop.retrain([training_examples], examples=config)
        metadata = result.asset_materializations_for_node("ml__training_examples")[0].metadata
        return shop.frame(order), {k: v.value for k, v in metadata.items()}

    full, full_metadata = grid()
    budget = len(full) // 3
    sampled, metadata = grid(max_grid_rows=budget)

    customers = full_metadata["customers"]
    chosen = {c for (c,) in shop.query(
        "SELECT customer_id FROM (SELECT customer_id FROM features.customer_daily UNION SELECT customer_id "
        "FROM raw.customers) ORDER BY hash(customer_id), customer_id LIMIT ?", [customers * budget // len(full)])}
    assert full_metadata["grid_customers"] == customers == metadata["customers"] >= len(set(full["customer_id"]))
    assert metadata["grid_customers"] == len(chosen) > 0.3 * customers
    assert 0.7 * budget < len(sampled) < 1.3 * budget  # about max_grid_rows rows
    assert set(sampled["customer_id"]) == chosen & set(full["customer_id"])
    kept = full[full["customer_id"].isin(chosen)].reset_index(drop=True)
    assert len(kept) == len(sampled)  # all their as-of days
    same = [c for c in full.columns if c not in BTYD_FEATURES]
    pd.testing.assert_frame_equal(sampled[same], kept[same])
    assert not np.allclose(sampled["btyd_p_alive"].fillna(-1), kept["btyd_p_alive"].fillna(-1))  # refitted
    pd.testing.assert_frame_equal(grid(max_grid_rows=budget)[0], sampled)  # the same sample every run


def test_a_short_history_trains_with_a_shorter_grid_and_leaves_no_dangling_candidate(shop):
    # min_history_days below H once crashed evaluation (the naive churn rate of an empty group was NaN).
    result = shop.retrain(examples={"min_history_days": 10, "grid_step_days": 7, "backtest_cutoffs": 5},
                          raise_on_error=False)

    assert result.success
    assert shop.query("SELECT count(*) FROM ml.model_registry WHERE state = 'candidate' AND gate_passed IS NULL") == [(0,)]
    assert shop.query("SELECT count(*) FROM ml.model_evaluation WHERE value IS NULL AND metric IN ('rmse', 'brier')") == [(0,)]


def test_too_short_a_history_is_refused_with_the_options_to_change(shop):
    result = shop.retrain([training_examples], examples={"min_history_days": 280}, raise_on_error=False)

    assert not result.success
    message = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.message
    assert "not enough history for training" in message and "--min-history-days" in message
