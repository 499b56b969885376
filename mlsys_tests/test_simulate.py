"""Properties of the shop simulator and its oracle."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mlsys_assets.simulation.config import SimulationConfig
from mlsys_assets.simulation.dirt import DIRTY_CUSTOMER_KINDS, DIRTY_TRANSACTION_KINDS
from mlsys_assets.simulation.oracle import oracle_expectations
from mlsys_assets.simulation.process import DRIFT_CHANNEL
from mlsys_assets.simulation.regimes import REGIMES, regime_config
from mlsys_assets.simulation.shop import simulate
from mlsys_assets.simulation.text import CUSTOMER_COLUMNS, TRANSACTION_COLUMNS

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
        {"acquisition": "viral"},
        {"cohort_days": 0},
        {"export_layout": "xml"},
        {"future_days": -1},
        {"seasonality_scale": 10.0},
        {"cancelled_share": 1.0},
        {"refund_share": -0.1},
        {"zero_amount_share": 1.5},
        {"whale_share": 2.0},
    ],
)
def test_invalid_config_is_rejected(overrides):
    with pytest.raises(ValueError):
        _config(**overrides)


# --- regimes -----------------------------------------------------------------------------------

YEAR = SimulationConfig(customers=400, start=START, end=START + datetime.timedelta(days=364), seed=7)


def _year(**overrides) -> SimulationConfig:
    return dataclasses.replace(YEAR, **overrides)


def _sales_per_buyer(summary) -> pd.Series:
    return _read_transactions(summary.landing_dir).groupby("customer_id").size()


def test_single_cohort_signs_up_nobody_after_the_cohort_days(tmp_path):
    growing = pd.read_parquet(simulate(tmp_path / "growing", _year()).ground_truth_path)
    summary = simulate(tmp_path / "cohort", _year(acquisition="single_cohort", cohort_days=30))
    truth = pd.read_parquet(summary.ground_truth_path)
    cutoff = START + datetime.timedelta(days=30)

    assert (growing["signup_date"] >= cutoff).mean() > 0.5  # the default keeps acquiring
    assert (truth["signup_date"] < cutoff).all()
    assert truth["signup_date"].nunique() > 20  # spread over the cohort days, not one day
    customers = _read_customers(summary.landing_dir)
    assert (customers["signup_date"] < cutoff.isoformat()).all()
    # The cohort is watched for the whole period: its repeat purchases go on long after the cohort days.
    assert (_read_transactions(summary.landing_dir)["file_day"] >= "2025-07-01").sum() > 50


def test_purchase_rate_scale_makes_mostly_one_time_buyers(tmp_path):
    plain = simulate(tmp_path / "plain", _year())
    scaled = simulate(tmp_path / "scaled", _year(purchase_rate_scale=0.25))
    plain_truth, scaled_truth = (pd.read_parquet(s.ground_truth_path) for s in (plain, scaled))
    np.testing.assert_allclose(scaled_truth["purchase_rate"], plain_truth["purchase_rate"] * 0.25)

    plain_counts, scaled_counts = _sales_per_buyer(plain), _sales_per_buyer(scaled)
    assert (scaled_counts == 1).mean() > 0.55
    assert (plain_counts == 1).mean() < (scaled_counts == 1).mean() - 0.15
    assert scaled_counts.mean() < 0.6 * plain_counts.mean()


def test_whales_dominate_revenue(tmp_path):
    plain = simulate(tmp_path / "plain", _year(customers=1000))
    whales = simulate(tmp_path / "whales", _year(customers=1000, whale_share=0.05, whale_spend_factor=20.0))
    plain_truth, truth = (pd.read_parquet(s.ground_truth_path) for s in (plain, whales))

    assert "is_whale" not in plain_truth.columns
    assert truth["is_whale"].sum() == 50
    factor = np.where(truth["is_whale"], 20.0, 1.0)
    np.testing.assert_allclose(truth["mean_spend"], plain_truth["mean_spend"] * factor)

    whale_ids = set(truth.loc[truth["is_whale"], "customer_id"])

    def whale_revenue_share(summary) -> float:
        transactions = _read_transactions(summary.landing_dir)
        of_whales = transactions["customer_id"].isin(whale_ids)
        return transactions.loc[of_whales, "amount"].sum() / transactions["amount"].sum()

    assert whale_revenue_share(plain) < 0.15  # the same customers without the factor
    assert whale_revenue_share(whales) > 0.4


def test_zero_amount_sales_are_real_purchases(tmp_path):
    plain = simulate(tmp_path / "plain", _year(future_days=60))
    summary = simulate(tmp_path / "zero", _year(zero_amount_share=0.1, future_days=60))
    transactions = _read_transactions(summary.landing_dir)

    zero = transactions["amount"] == 0
    assert zero.mean() == pytest.approx(0.1, abs=0.02)
    assert (_read_transactions(plain.landing_dir)["amount"] > 0).all()
    raw = pd.concat(pd.read_csv(path, dtype=str) for path in (summary.landing_dir / "transactions").glob("*.csv"))
    assert set(raw.loc[raw["amount"].astype(float) == 0, "amount"]) == {"0.00"}
    # The $0 lines replace amounts of the same sales: same lines, same count.
    plain_transactions = _read_transactions(plain.landing_dir)
    assert list(transactions["event_time"]) == list(plain_transactions["event_time"])
    assert (transactions.loc[~zero, "amount"] == plain_transactions.loc[~zero, "amount"]).all()
    future = pd.read_parquet(summary.future_path)
    assert (future["amount"] == 0).mean() == pytest.approx(0.1, abs=0.03)
    assert len(future) == len(pd.read_parquet(plain.future_path))  # $0 sales stay in the future


def test_refunds_are_negative_and_follow_their_purchase(tmp_path):
    plain = simulate(tmp_path / "plain", _year(future_days=30))
    summary = simulate(tmp_path / "refunds", _year(refund_share=0.05, future_days=30))
    transactions = _read_transactions(summary.landing_dir)
    assert transactions["transaction_id"].is_unique

    refunds = transactions[transactions["amount"] < 0]
    sales = transactions[transactions["amount"] >= 0]
    assert len(sales) == len(_read_transactions(plain.landing_dir))  # refunds are extra lines
    assert len(refunds) == round(0.05 * len(sales))
    assert (refunds["file_day"] <= YEAR.end.isoformat()).all()
    pairs = refunds.assign(refund_amount=-refunds["amount"]).merge(
        sales, left_on=["customer_id", "refund_amount"], right_on=["customer_id", "amount"], suffixes=("", "_sale")
    )
    delay = (pairs["event_time"].dt.normalize() - pairs["event_time_sale"].dt.normalize()).dt.days
    matched = pairs[delay.between(1, 30)].drop_duplicates("transaction_id")
    assert len(matched) == len(refunds), "every refund follows a sale of the same customer and amount by 1-30 days"
    # Refunds are never sales: the future holds none and is the same as without refunds.
    future = pd.read_parquet(summary.future_path)
    assert (future["amount"] >= 0).all()
    pd.testing.assert_frame_equal(future, pd.read_parquet(plain.future_path))


def test_cancelled_orders_carry_a_status_and_never_count(tmp_path):
    plain = simulate(tmp_path / "plain", _year(future_days=30))
    summary = simulate(tmp_path / "cancelled", _year(cancelled_share=0.33, future_days=30))
    first_file = next((summary.landing_dir / "transactions").glob("*.csv"))
    assert first_file.read_text().splitlines()[0] == ",".join(TRANSACTION_COLUMNS) + ",status"
    assert "status" not in pd.read_csv(next((plain.landing_dir / "transactions").glob("*.csv"))).columns

    transactions = _read_transactions(summary.landing_dir)
    assert set(transactions["status"]) == {"completed", "cancelled"}
    cancelled = transactions["status"] == "cancelled"
    assert cancelled.mean() == pytest.approx(0.33, abs=0.005)
    assert transactions["transaction_id"].is_unique and (transactions["amount"] > 0).all()
    # The completed lines are exactly the sales of the shop without cancellations.
    completed = transactions.loc[~cancelled, ["customer_id", "event_time", "amount"]].reset_index(drop=True)
    plain_sales = _read_transactions(plain.landing_dir)[["customer_id", "event_time", "amount"]]
    pd.testing.assert_frame_equal(completed, plain_sales)
    # A cancelled order is a buying customer's order on the day of one of their sales.
    sale_days = set(zip(transactions.loc[~cancelled, "customer_id"], transactions.loc[~cancelled, "file_day"]))
    cancelled_days = zip(transactions.loc[cancelled, "customer_id"], transactions.loc[cancelled, "file_day"])
    assert all(key in sale_days for key in cancelled_days)
    # The future holds sales only: the same as without cancellations.
    pd.testing.assert_frame_equal(pd.read_parquet(summary.future_path), pd.read_parquet(plain.future_path))

    parquet = simulate(tmp_path / "parquet", _year(cancelled_share=0.33, file_format="parquet"))
    table = pd.concat(pd.read_parquet(path) for path in sorted((parquet.landing_dir / "transactions").iterdir()))
    assert list(table.columns) == [*TRANSACTION_COLUMNS, "status"]
    assert list(table["status"]) == list(transactions["status"])


def test_dirty_rows_combine_with_every_line_kind(tmp_path):
    config = _year(dirty_share=0.02, zero_amount_share=0.05, refund_share=0.03, cancelled_share=0.1, whale_share=0.01)
    summary = simulate(tmp_path, config)
    rows = []
    for path in sorted((summary.landing_dir / "transactions").glob("*.csv")):
        with open(path, encoding="utf-8", newline="") as handle:
            rows += list(csv.reader(handle))[1:]
    assert len(rows) == summary.transactions
    dirty = summary.dirty_rows - sum(json.loads((tmp_path / "simulation" / "meta.json").read_text())
                                     ["counts"]["dirty_rows_by_kind"]["customers"].values())
    assert dirty == pytest.approx(0.02 * len(rows), abs=2)
    clean = [row for row in rows if len(row) == len(TRANSACTION_COLUMNS) + 1]
    assert {row[-1] for row in clean} == {"completed", "cancelled"}
    assert sum(len(row) == len(TRANSACTION_COLUMNS) + 2 for row in rows) > 0  # extra_field lines keep the status


def test_no_customers_file_without_the_customers_export(tmp_path):
    simulate(tmp_path, _year(customers=100))
    assert (tmp_path / "landing" / "customers" / "customers.csv").exists()
    summary = simulate(tmp_path, _year(customers=100, customers_export=False))  # a re-run removes the old one
    assert not list((tmp_path / "landing" / "customers").iterdir())
    assert len(list((summary.landing_dir / "transactions").iterdir())) == 365
    assert summary.customers == len(pd.read_parquet(summary.ground_truth_path)) == 100


def _whitespace_config(**overrides) -> SimulationConfig:
    return _year(export_layout="whitespace_export", customers_export=False, **overrides)


def test_whitespace_export_imports_through_its_mapping(tmp_path):
    from mlsys_assets.contract import load_mapping
    from mlsys_assets.ingest.importer import import_transactions
    from mlsys_assets.settings import DataLayout

    daily = simulate(tmp_path / "daily", _year())
    summary = simulate(tmp_path / "export", _whitespace_config())
    assert summary.transaction_files == 0 and not (summary.landing_dir / "transactions").exists()
    assert not (summary.landing_dir / "customers").exists()
    lines = summary.export_path.read_text().splitlines()
    assert lines[0].split() == ["cust", "date", "total"]
    export = pd.read_csv(summary.export_path, sep=r"\s+", dtype=str)
    assert len(export) == summary.transactions == daily.transactions
    assert export["date"].str.fullmatch(r"\d{8}").all() and export["total"].str.fullmatch(r"\d+\.\d{2}").all()
    assert list(export["cust"]) == sorted(export["cust"])  # by customer, as the CDNOW log

    mapping = yaml.safe_load(summary.mapping_path.read_text())
    assert mapping == {"transactions": {"delimiter": "whitespace", "date_format": "%Y%m%d",
                                        "columns": {"customer_id": "cust", "event_time": "date", "amount": "total"}}}
    result = import_transactions(summary.export_path, load_mapping(summary.mapping_path)["transactions"],
                                 DataLayout(tmp_path / "export"))
    assert result.rows == len(export) and result.rejected_rows == 0
    expected = _sorted_sales(_read_transactions(daily.landing_dir))
    pd.testing.assert_frame_equal(_imported_sales(summary.landing_dir), expected)

    # A daily run over the same directory removes the export, and an export run this period's day files.
    simulate(tmp_path / "export", _year())
    assert not (tmp_path / "export" / "simulation" / "export.txt").exists()
    simulate(tmp_path / "export", _whitespace_config())
    assert not list((summary.landing_dir / "transactions").iterdir())


def _imported_sales(landing_dir: Path) -> pd.DataFrame:
    """customer_id, file_day and amount of the daily files `mlsys import` wrote, sorted."""
    imported = pd.concat(  # the export has no quantity and no transaction id: the platform makes ids
        pd.read_csv(path, dtype=str, keep_default_na=False).assign(file_day=path.stem)
        for path in sorted((landing_dir / "transactions").glob("*.csv"))
    )
    assert (imported["event_time"].str[:10] == imported["file_day"]).all()
    return _sorted_sales(imported.assign(amount=imported["amount"].astype(float)))


def _sorted_sales(transactions: pd.DataFrame) -> pd.DataFrame:
    key = ["customer_id", "file_day", "amount"]
    return transactions[key].sort_values(key, ignore_index=True)


def test_whitespace_export_with_cancelled_orders_excludes_them_in_the_mapping(tmp_path):
    from mlsys_assets.contract import load_mapping
    from mlsys_assets.ingest.importer import import_transactions
    from mlsys_assets.settings import DataLayout

    daily = simulate(tmp_path / "daily", _year())
    summary = simulate(tmp_path / "export", _whitespace_config(cancelled_share=0.05))
    export = pd.read_csv(summary.export_path, sep=r"\s+", dtype=str)
    assert list(export.columns) == ["cust", "date", "total", "status"]
    assert set(export["status"]) == {"completed", "cancelled"}
    assert (export["status"] == "cancelled").mean() == pytest.approx(0.05, abs=0.01)
    mapping = yaml.safe_load(summary.mapping_path.read_text())["transactions"]
    assert mapping["exclude"] == {"status": ["cancelled"]}

    # Through the mapping, the cancelled orders stay out and exactly the shop's sales remain.
    result = import_transactions(summary.export_path, load_mapping(summary.mapping_path)["transactions"],
                                 DataLayout(tmp_path / "export"))
    assert result.rows == (export["status"] == "completed").sum()
    expected = _sorted_sales(_read_transactions(daily.landing_dir))
    pd.testing.assert_frame_equal(_imported_sales(summary.landing_dir), expected)


def test_future_is_simulated_but_never_delivered(tmp_path):
    without = simulate(tmp_path / "without", _year(customers=300))
    summary = simulate(tmp_path / "with", _year(customers=300, future_days=45))
    assert without.future_path is None and not (tmp_path / "without" / "simulation" / "future.parquet").exists()

    # The delivered period and the ground truth do not depend on the future.
    assert _file_bytes(without.landing_dir) == _file_bytes(summary.landing_dir)
    truth = pd.read_parquet(summary.ground_truth_path)
    pd.testing.assert_frame_equal(truth, pd.read_parquet(without.ground_truth_path))
    assert (truth["observed_until"] == YEAR.end).all()
    assert max(path.stem for path in (summary.landing_dir / "transactions").iterdir()) == YEAR.end.isoformat()

    table = pq.read_table(summary.future_path)
    assert str(table.schema) == str(pa.schema([("customer_id", pa.string()), ("event_date", pa.date32()),
                                                  ("amount", pa.float64())]))
    future = table.to_pandas()
    assert len(future) == summary.future_transactions > 50
    assert future["event_date"].min() > YEAR.end
    assert future["event_date"].max() <= YEAR.end + datetime.timedelta(days=45)
    assert future["event_date"].nunique() > 40
    assert set(future["customer_id"]) <= set(truth["customer_id"])
    meta = json.loads((tmp_path / "with" / "simulation" / "meta.json").read_text())
    assert meta["config"]["future_days"] == 45
    assert meta["future"]["first_day"] == "2026-01-01" and meta["future"]["last_day"] == "2026-02-14"
    assert meta["future"]["observed_until"] == YEAR.end.isoformat()
    assert "future_days" not in json.loads((tmp_path / "without" / "simulation" / "meta.json").read_text())["config"]


ORACLE_END = datetime.date(2025, 11, 10)  # the window below covers Black Friday and Christmas
ORACLE_HORIZON = 60


def _future_against_oracle(truth: pd.DataFrame, future: pd.DataFrame) -> tuple[float, float]:
    """z-scores of the realised mean spend and mean purchases per customer against the oracle's means."""
    oracle = oracle_expectations(truth, ORACLE_END, ORACLE_HORIZON).set_index("customer_id")
    spend = future.groupby("customer_id")["amount"].sum().reindex(oracle.index, fill_value=0.0)
    purchases = future.groupby("customer_id").size().reindex(oracle.index, fill_value=0)

    def z(realised: pd.Series, expected: pd.Series) -> float:
        return (realised.mean() - expected.mean()) / (realised.std() / np.sqrt(len(realised)))

    return z(spend, oracle["expected_spend"]), z(purchases, oracle["expected_purchases"])


@pytest.mark.parametrize(
    "overrides, regime_column",
    [({}, None), ({"seasonality_scale": 3.0}, "seasonality_scale"), ({"zero_amount_share": 0.3}, "zero_amount_share")],
    ids=["default", "strong_seasonality", "zero_amounts"],
)
def test_oracle_forecasts_the_realised_future(tmp_path, overrides, regime_column):
    config = SimulationConfig(customers=5000, start=ORACLE_END - datetime.timedelta(days=364), end=ORACLE_END,
                              seed=7, future_days=ORACLE_HORIZON, **overrides)
    summary = simulate(tmp_path, config)
    truth, future = pd.read_parquet(summary.ground_truth_path), pd.read_parquet(summary.future_path)

    z_spend, z_purchases = _future_against_oracle(truth, future)
    assert abs(z_spend) < 3 and abs(z_purchases) < 3
    if regime_column:
        # An oracle blind to the regime is far off: the comparison above has the power to see it.
        blind_spend, blind_purchases = _future_against_oracle(truth.drop(columns=regime_column), future)
        assert max(abs(blind_spend), abs(blind_purchases)) > 5


def test_strong_seasonality_sharpens_the_holiday_peak(tmp_path):
    def peak_ratio(summary) -> float:
        per_day = _read_transactions(summary.landing_dir).groupby("file_day").size()
        holiday = per_day[(per_day.index >= "2025-11-25") & (per_day.index <= "2025-12-20")].mean()
        spring = per_day[(per_day.index >= "2025-04-01") & (per_day.index <= "2025-05-31")].mean()
        return holiday / spring

    plain = simulate(tmp_path / "plain", _year(customers=1000))
    strong = simulate(tmp_path / "strong", _year(customers=1000, seasonality_scale=3.0))
    assert peak_ratio(strong) > 1.5 * peak_ratio(plain)
    meta = json.loads((tmp_path / "strong" / "simulation" / "meta.json").read_text())
    assert meta["seasonality"]["holiday_amplitude"] == pytest.approx(3 * 0.6)
    assert "scale" not in json.loads((tmp_path / "plain" / "simulation" / "meta.json").read_text())["seasonality"]


def test_the_default_meta_lists_no_regime_option(baseline):
    assert set(baseline["meta"]["config"]) == {
        "customers", "start", "end", "seed", "drift_from", "drift_kind", "dirty_share", "file_format"
    }
    assert not {"future", "export", "lines_by_kind"} & set(baseline["meta"])
    assert list(baseline["ground_truth"].columns)[-1] == "price_change_factor"  # no regime columns


def test_regime_configs():
    yesterday = datetime.date.today() - datetime.timedelta(days=1)
    demo = regime_config("demo")
    assert (demo.customers, demo.end, demo.dirty_share) == (5000, yesterday, 0.002)
    assert (demo.end - demo.start).days + 1 == 730

    cdnow = regime_config("cdnow_like", customers=100, seed=3, future_days=90)
    assert (cdnow.start, cdnow.end) == (datetime.date(1997, 1, 1), datetime.date(1998, 7, 2))
    assert (cdnow.customers, cdnow.seed, cdnow.future_days, cdnow.regime) == (100, 3, 90, "cdnow_like")
    assert cdnow.acquisition == "single_cohort" and not cdnow.customers_export
    assert cdnow.export_layout == "whitespace_export" and cdnow.cancelled_share > 0 and cdnow.zero_amount_share > 0
    assert cdnow.purchase_rate_scale == pytest.approx(0.25)
    moved = regime_config("cdnow_like", end=datetime.date(2000, 6, 30))
    assert moved.end == datetime.date(2000, 6, 30) and (moved.end - moved.start).days + 1 == 548

    drift = regime_config("drift", end=datetime.date(2025, 6, 30))
    assert drift.drift_kind == "channel" and drift.drift_from == datetime.date(2025, 3, 3)  # the last 120 days
    assert regime_config("cancelled_orders").cancelled_share == pytest.approx(0.33)
    assert (regime_config("one_year").end - regime_config("one_year").start).days == 364
    assert regime_config("whales").whale_share == 0.01 and regime_config("whales").whale_spend_factor == 30
    assert regime_config("strong_seasonality").seasonality_scale == 3.0
    zero = regime_config("zero_and_refunds")
    assert (zero.zero_amount_share, zero.refund_share) == (0.05, 0.03)
    with pytest.raises(ValueError, match="unknown regime"):
        regime_config("nonsense")


@pytest.mark.parametrize("name", list(REGIMES))
def test_every_regime_simulates(tmp_path, name):
    summary = simulate(tmp_path, regime_config(name, customers=200, future_days=10))
    assert summary.transactions > 0 and summary.future_path.exists()
    meta = json.loads((tmp_path / "simulation" / "meta.json").read_text())
    assert meta["config"]["regime"] == name
    assert (summary.export_path is not None) == (name == "cdnow_like")


def test_cli_simulates_a_regime_and_lists_them_in_help(tmp_path):
    from click.testing import CliRunner

    from mlsys_assets.cli import main

    runner = CliRunner()
    help_text = runner.invoke(main, ["simulate", "--help"]).output
    for name, regime in REGIMES.items():
        assert f"{name}: {regime.description}" in " ".join(help_text.split())

    result = runner.invoke(main, ["simulate", "--regime", "cdnow_like", "--customers", "150", "--future-days", "20",
                                  "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "simulation" / "export.txt") in result.output
    assert str(tmp_path / "simulation" / "mapping.yaml") in result.output
    assert str(tmp_path / "simulation" / "future.parquet") in result.output
    meta = json.loads((tmp_path / "simulation" / "meta.json").read_text())
    config = meta["config"]
    assert (config["start"], config["end"], config["customers"]) == ("1997-01-01", "1998-07-02", 150)

    result = runner.invoke(main, ["simulate", "--regime", "drift", "--customers", "100", "--days", "200",
                                  "--end-date", "2025-06-30", "--dirty-share", "0", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "d" / "simulation" / "meta.json").read_text())["config"]
    assert (config["start"], config["drift_from"], config["dirty_share"]) == ("2024-12-13", "2025-03-03", 0.0)


def test_the_simulator_loads_no_dagster():
    """`mlsys simulate`, the oracle and bench/regimes.py use it without Dagster (a fresh interpreter tells)."""
    import subprocess
    import sys

    modules = "mlsys_assets.simulation.shop, mlsys_assets.simulation.oracle, mlsys_assets.simulation.regimes"
    probe = f"import sys, {modules}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
