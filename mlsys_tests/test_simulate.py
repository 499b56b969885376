"""Properties of the shop simulator and its oracle."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlsys_assets.simulate import (
    CUSTOMER_COLUMNS,
    DIRTY_CUSTOMER_KINDS,
    DIRTY_TRANSACTION_KINDS,
    DRIFT_CHANNEL,
    TRANSACTION_COLUMNS,
    SimulationConfig,
    oracle_expectations,
    simulate,
)

START = datetime.date(2025, 1, 1)
BASELINE = SimulationConfig(customers=2000, start=START, end=START + datetime.timedelta(days=119), seed=7)


def _config(**overrides) -> SimulationConfig:
    return dataclasses.replace(BASELINE, **overrides)


def _read_transactions(landing_dir: Path) -> pd.DataFrame:
    frames = [
        pd.read_csv(path, dtype=str, keep_default_na=False).assign(file_day=path.stem)
        for path in sorted((landing_dir / "transactions").glob("*.csv"))
    ]
    transactions = pd.concat(frames, ignore_index=True)
    transactions["event_time"] = pd.to_datetime(transactions["event_time"], format="%Y-%m-%d %H:%M:%S")
    transactions["amount"] = transactions["amount"].astype(float)
    transactions["quantity"] = transactions["quantity"].astype(int)
    return transactions


def _read_customers(landing_dir: Path) -> pd.DataFrame:
    return pd.read_csv(landing_dir / "customers" / "customers.csv", dtype=str, keep_default_na=False)


def _file_bytes(directory: Path) -> dict[str, bytes]:
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    return {str(path.relative_to(directory)): path.read_bytes() for path in files}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("baseline")
    summary = simulate(data_dir, BASELINE)
    return {
        "summary": summary,
        "transactions": _read_transactions(summary.landing_dir),
        "customers": _read_customers(summary.landing_dir),
        "ground_truth": pd.read_parquet(summary.ground_truth_path),
        "meta": json.loads((data_dir / "simulation" / "meta.json").read_text()),
    }


def test_one_file_per_day_including_days_without_sales(tmp_path):
    config = _config(customers=10, end=START + datetime.timedelta(days=59))
    summary = simulate(tmp_path, config)

    files = sorted((tmp_path / "landing" / "transactions").iterdir())
    expected_names = [f"{START + datetime.timedelta(days=offset)}.csv" for offset in range(60)]
    assert [path.name for path in files] == expected_names
    assert summary.days == summary.transaction_files == 60
    header = ",".join(TRANSACTION_COLUMNS)
    lines_per_file = [path.read_text().splitlines() for path in files]
    assert all(lines[0] == header for lines in lines_per_file)
    assert any(len(lines) == 1 for lines in lines_per_file), "expected some days without sales"
    assert sum(len(lines) - 1 for lines in lines_per_file) == summary.transactions


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    config = _config(customers=300, end=START + datetime.timedelta(days=59), dirty_share=0.01)
    simulate(tmp_path / "first", config)
    simulate(tmp_path / "second", config)
    simulate(tmp_path / "second", config)  # re-running over existing files changes nothing
    simulate(tmp_path / "other_seed", dataclasses.replace(config, seed=8))

    first = _file_bytes(tmp_path / "first")
    assert first == _file_bytes(tmp_path / "second")
    assert not [name for name in first if Path(name).name.startswith(".")], "temporary files left behind"
    other = _file_bytes(tmp_path / "other_seed")
    assert first["landing/transactions/2025-01-15.csv"] != other["landing/transactions/2025-01-15.csv"]
    assert first["landing/customers/customers.csv"] != other["landing/customers/customers.csv"]


def test_transactions_are_consistent_with_customers(baseline):
    transactions, customers = baseline["transactions"], baseline["customers"]
    assert list(customers.columns) == list(CUSTOMER_COLUMNS)
    assert len(transactions) == baseline["summary"].transactions > 2000

    assert transactions["transaction_id"].is_unique
    assert transactions["transaction_id"].str.fullmatch(r"T\d{9}").all()
    assert customers["customer_id"].str.fullmatch(r"C\d{7}").all()
    assert customers["customer_id"].is_unique
    assert set(transactions["customer_id"]) <= set(customers["customer_id"])

    assert (transactions["event_time"].dt.strftime("%Y-%m-%d") == transactions["file_day"]).all()
    signup = transactions["customer_id"].map(customers.set_index("customer_id")["signup_date"])
    assert (transactions["file_day"] >= signup).all()
    assert (transactions["amount"] > 0).all()
    assert (transactions["quantity"] >= 1).all()
    raw = pd.read_csv(baseline["summary"].landing_dir / "transactions" / "2025-03-01.csv", dtype=str)
    assert raw["amount"].str.fullmatch(r"\d+\.\d{2}").all()
    assert raw["event_time"].str.fullmatch(r"2025-03-01 \d{2}:\d{2}:\d{2}").all()


def test_some_customers_never_buy(baseline):
    buyers = set(baseline["transactions"]["customer_id"])
    never_bought = ~baseline["customers"]["customer_id"].isin(buyers)
    assert 0.08 < never_bought.mean() < 0.4
    assert 0.08 < baseline["ground_truth"]["never_buys"].mean() < 0.25
    assert not baseline["ground_truth"].loc[baseline["ground_truth"]["never_buys"], "customer_id"].isin(buyers).any()


def test_weekends_are_busier_than_weekdays(baseline):
    per_day = baseline["transactions"].groupby("file_day").size()
    weekday = pd.to_datetime(per_day.index).dayofweek
    assert per_day[weekday >= 5].mean() > 1.1 * per_day[weekday < 5].mean()


def test_ground_truth_has_one_row_per_customer(baseline):
    truth, customers = baseline["ground_truth"], baseline["customers"]
    assert list(truth["customer_id"]) == list(customers["customer_id"])
    for column in ("signup_date", "cohort", "purchase_rate", "death_date", "mean_spend", "acquisition_channel"):
        assert column in truth.columns
    assert (truth["signup_date"].astype(str) == customers["signup_date"]).all()
    assert (truth["cohort"] == customers["signup_date"].str[:7]).all()
    buyers = ~truth["never_buys"]
    assert (truth.loc[buyers, "first_purchase_date"] >= truth.loc[buyers, "signup_date"]).all()
    died = buyers & truth["death_date"].notna()
    assert (truth.loc[died, "death_date"] > truth.loc[died, "first_purchase_date"]).all()
    assert baseline["meta"]["counts"]["customers"] == len(truth)
    assert baseline["meta"]["config"]["start"] == START.isoformat()


def test_channel_drift_brings_weaker_tiktok_customers(tmp_path):
    drift_from = START + datetime.timedelta(days=60)
    summary = simulate(tmp_path, _config(drift_from=drift_from, drift_kind="channel"))
    customers = _read_customers(summary.landing_dir)
    transactions = _read_transactions(summary.landing_dir)

    tiktok = customers["acquisition_channel"] == DRIFT_CHANNEL
    assert (customers.loc[tiktok, "signup_date"] >= drift_from.isoformat()).all()
    after = customers["signup_date"] >= drift_from.isoformat()
    assert 0.3 < tiktok[after].mean() < 0.6

    late_signups = transactions.merge(customers[after], on="customer_id")
    is_tiktok = late_signups["acquisition_channel"] == DRIFT_CHANNEL
    assert late_signups.loc[is_tiktok, "amount"].mean() < 0.8 * late_signups.loc[~is_tiktok, "amount"].mean()


def test_price_drift_raises_amounts_from_the_drift_day(tmp_path):
    drift_from = START + datetime.timedelta(days=60)
    baseline_summary = simulate(tmp_path / "baseline", _config(customers=500))
    drift_summary = simulate(tmp_path / "drift", _config(customers=500, drift_from=drift_from, drift_kind="price"))
    before = _read_transactions(baseline_summary.landing_dir)
    after = _read_transactions(drift_summary.landing_dir)

    # The price change touches nothing but the amounts from the drift day on.
    assert (before["transaction_id"] == after["transaction_id"]).all()
    drifted = before["file_day"] >= drift_from.isoformat()
    assert (after.loc[~drifted, "amount"] == before.loc[~drifted, "amount"]).all()
    np.testing.assert_allclose(after.loc[drifted, "amount"], before.loc[drifted, "amount"] * 1.25, atol=0.02)


def _classify_transaction(fields: list[str], file_day: str, known_customers: set[str], seen_ids: set[str]):
    """The defect kind of a parsed transaction line, or None when it is clean."""
    if len(fields) != len(TRANSACTION_COLUMNS):
        return "extra_field"
    transaction_id, customer_id, event_time, amount, _ = fields
    if transaction_id in seen_ids:
        return "duplicate_transaction_id"
    seen_ids.add(transaction_id)
    if customer_id == "":
        return "empty_customer_id"
    if customer_id not in known_customers:
        return "unknown_customer_id"
    try:
        timestamp = datetime.datetime.strptime(event_time, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return "unparseable_event_time"
    if timestamp.date().isoformat() > file_day:
        return "future_event_time"
    try:
        value = float(amount)
    except ValueError:
        return "non_numeric_amount"
    if value < 0:
        return "negative_amount"
    if value >= 1e8:
        return "huge_amount"
    return None


def _classify_customer(fields: list[str]):
    if len(fields) != len(CUSTOMER_COLUMNS):
        return "missing_field"
    if fields[0] == "":
        return "empty_customer_id"
    try:
        datetime.date.fromisoformat(fields[1])
    except ValueError:
        return "unparseable_signup_date"
    return None


def test_dirty_rows_come_at_the_requested_share_and_listed_kinds(tmp_path):
    share = 0.02
    summary = simulate(tmp_path, _config(dirty_share=share))
    landing = summary.landing_dir

    with open(landing / "customers" / "customers.csv", encoding="utf-8", newline="") as handle:
        customer_rows = list(csv.reader(handle))[1:]
    customer_kinds = [_classify_customer(row) for row in customer_rows]
    known_customers = {row[0] for row in customer_rows if row[0]}

    transaction_kinds = []
    lines = 0
    for path in sorted((landing / "transactions").glob("*.csv")):
        seen_ids: set[str] = set()
        with open(path, encoding="utf-8", newline="") as handle:  # must be valid UTF-8
            rows = list(csv.reader(handle))[1:]
        lines += len(rows)
        transaction_kinds += [_classify_transaction(row, path.stem, known_customers, seen_ids) for row in rows]

    dirty_transactions = pd.Series([kind for kind in transaction_kinds if kind is not None]).value_counts()
    assert lines == summary.transactions
    assert dirty_transactions.sum() == pytest.approx(share * lines, abs=2)
    assert set(dirty_transactions.index) == set(DIRTY_TRANSACTION_KINDS)
    assert dirty_transactions.max() - dirty_transactions.min() <= 1  # roughly equal proportions

    dirty_customers = pd.Series([kind for kind in customer_kinds if kind is not None]).value_counts()
    assert set(dirty_customers.index) == set(DIRTY_CUSTOMER_KINDS)
    assert summary.dirty_rows == dirty_transactions.sum() + dirty_customers.sum()
    assert summary.customers == len(known_customers)


def test_parquet_files_hold_the_same_clean_transactions(tmp_path):
    config = _config(customers=300, end=START + datetime.timedelta(days=59))
    csv_summary = simulate(tmp_path / "csv", config)
    parquet_summary = simulate(tmp_path / "parquet", dataclasses.replace(config, file_format="parquet"))

    files = sorted((parquet_summary.landing_dir / "transactions").iterdir())
    assert len(files) == 60 and all(path.suffix == ".parquet" for path in files)
    table = pq.read_table(files[10])
    assert table.schema.names == list(TRANSACTION_COLUMNS)
    assert str(table.schema.field("event_time").type).startswith("timestamp")
    assert str(table.schema.field("amount").type) == "double"

    from_parquet = pd.concat([pd.read_parquet(path) for path in files], ignore_index=True)
    from_csv = _read_transactions(csv_summary.landing_dir)
    assert list(from_parquet["transaction_id"]) == list(from_csv["transaction_id"])
    assert (from_parquet["event_time"] == from_csv["event_time"]).all()
    np.testing.assert_allclose(from_parquet["amount"], from_csv["amount"])


def test_switching_format_replaces_the_day_files(tmp_path):
    config = _config(customers=100, end=START + datetime.timedelta(days=29))
    simulate(tmp_path, config)
    simulate(tmp_path, dataclasses.replace(config, file_format="parquet"))
    assert {path.suffix for path in (tmp_path / "landing" / "transactions").iterdir()} == {".parquet"}


def test_oracle_bounds_and_dead_customers(baseline):
    truth = baseline["ground_truth"]
    as_of = START + datetime.timedelta(days=59)
    oracle = oracle_expectations(truth, as_of, 30)

    signed_up = truth[truth["signup_date"] <= as_of]
    assert list(oracle["customer_id"]) == list(signed_up["customer_id"])
    assert oracle["p_no_purchase"].between(0, 1).all()
    assert (oracle["expected_spend"] >= 0).all() and (oracle["expected_purchases"] >= 0).all()
    dead = (signed_up["death_date"].notna() & (signed_up["death_date"] <= as_of)).to_numpy()
    assert dead.sum() > 100
    assert (oracle.loc[dead, "p_no_purchase"] == 1).all()
    assert (oracle.loc[dead, "expected_spend"] == 0).all()
    assert (oracle.loc[~dead, "p_no_purchase"] < 1).any()


def test_oracle_matches_realised_purchases_on_aggregate(baseline):
    as_of = START + datetime.timedelta(days=59)
    horizon = 45
    oracle = oracle_expectations(baseline["ground_truth"], as_of, horizon).set_index("customer_id")
    transactions = baseline["transactions"]
    in_window = (transactions["file_day"] > as_of.isoformat()) & (
        transactions["file_day"] <= (as_of + datetime.timedelta(days=horizon)).isoformat()
    )
    actual = transactions[in_window].groupby("customer_id")["amount"].agg(["size", "sum"])
    actual = actual.reindex(oracle.index, fill_value=0)

    assert actual["size"].sum() == pytest.approx(oracle["expected_purchases"].sum(), rel=0.15)
    assert actual["sum"].sum() == pytest.approx(oracle["expected_spend"].sum(), rel=0.2)
    assert (actual["size"] == 0).mean() == pytest.approx(oracle["p_no_purchase"].mean(), abs=0.03)


def test_oracle_beyond_the_simulated_period_decays(baseline):
    truth = baseline["ground_truth"]
    end = BASELINE.end
    near = oracle_expectations(truth, end, 30)
    far = oracle_expectations(truth, end + datetime.timedelta(days=300), 30)
    # Past the simulated period nobody is known to be alive, so survival thins the expectations out.
    assert far["expected_purchases"].sum() < 0.6 * near["expected_purchases"].sum()
    assert far["p_no_purchase"].mean() > near["p_no_purchase"].mean()
    assert near["p_no_purchase"].between(0, 1).all() and far["p_no_purchase"].between(0, 1).all()


def test_oracle_reflects_price_drift(baseline):
    truth = baseline["ground_truth"]
    as_of = START + datetime.timedelta(days=59)
    drifted = truth.assign(price_change_date=as_of - datetime.timedelta(days=10), price_change_factor=1.25)
    plain = oracle_expectations(truth, as_of, 30)
    with_drift = oracle_expectations(drifted, as_of, 30)
    np.testing.assert_allclose(with_drift["expected_spend"], plain["expected_spend"] * 1.25)
    np.testing.assert_allclose(with_drift["expected_purchases"], plain["expected_purchases"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"drift_kind": "weather"},
        {"file_format": "json"},
        {"dirty_share": 1.5},
        {"customers": 0},
        {"end": START - datetime.timedelta(days=1)},
    ],
)
def test_invalid_config_is_rejected(overrides):
    with pytest.raises(ValueError):
        _config(**overrides)
