"""The feature definition (`build_snapshot`) is point-in-time correct, computes what it says, and
`features.customer_daily` mirrors raw.transactions exactly."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, materialize

from mlsys_assets.automation.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from mlsys_assets.features.assets import customer_daily, customer_features
from mlsys_assets.features.snapshot import BTYD_FEATURES, build_snapshot

HORIZON_DAYS = 30
CUSTOMER_DAILY = AssetKey(["features", "customer_daily"])


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def snapshot(warehouse, as_of: dt.date | list[dt.date]) -> pd.DataFrame:
    with warehouse.connect() as con:
        return build_snapshot(con, as_of if isinstance(as_of, list) else [as_of], HORIZON_DAYS)


def row_of(frame: pd.DataFrame, customer_id: str) -> pd.Series:
    rows = frame[frame["customer_id"] == customer_id]
    assert len(rows) == 1, f"expected one row for {customer_id}, got {len(rows)}"
    return rows.iloc[0]


@pytest.fixture
def load_days(ml_resources, instance):
    """Ingest raw/transactions and customer_daily for the delivery days first … last (one range run each)."""

    def run(first: dt.date, last: dt.date) -> None:
        tags = {ASSET_PARTITION_RANGE_START_TAG: first.isoformat(), ASSET_PARTITION_RANGE_END_TAG: last.isoformat()}
        from mlsys_assets.ingest.assets import raw_transactions

        assert materialize([raw_transactions], resources=ml_resources, instance=instance, tags=tags).success
        assert materialize([customer_daily], resources=ml_resources, instance=instance, tags=tags).success

    return run


def write_deliveries(write_transactions, rows: list[tuple[str, str, str, float, int, str]]) -> None:
    """rows: (transaction_id, customer_id, event day, amount, quantity, delivery day); one file per delivery day."""
    by_delivery: dict[str, list[str]] = defaultdict(list)
    for transaction_id, customer_id, event_day, amount, quantity, delivery in rows:
        by_delivery[delivery].append(f"{transaction_id},{customer_id},{event_day} 12:00:00,{amount:.2f},{quantity}")
    for delivery, lines in by_delivery.items():
        write_transactions(delivery, lines)


# --- point in time ----------------------------------------------------------------------------------

AS_OF = day("2025-02-10")
PIT_START = day("2025-01-01")


def shop_before_as_of(rng: np.random.Generator, homogeneous: bool = False):
    """40 customers with signups and purchases up to AS_OF (some delivered a few days late, still by AS_OF),
    plus customers who sign up after it; enough buyers and repeat buyers for the BG/NBD fit. `homogeneous`
    gives every customer 1-5 purchases, uniformly: no heterogeneity in buying rates."""
    customers, rows = [], []
    for i in range(1, 41):
        signup = PIT_START + dt.timedelta(days=int(rng.integers(0, 25)))
        customers.append(f"C{i:03d},{signup},US,organic,c{i}@example.com,Name {i}")
        span = (AS_OF - signup).days
        if homogeneous:
            purchases = int(rng.integers(1, 6))
        else:
            purchases = min(span, 1 + int(rng.poisson(rng.gamma(0.7, 3.0))))  # heterogeneous buying rates
        for k, offset in enumerate(sorted(rng.choice(span, size=purchases, replace=False))):
            event = signup + dt.timedelta(days=int(offset))
            delivery = min(event + dt.timedelta(days=int(rng.choice([0, 0, 0, 1, 3]))), AS_OF)
            rows.append((f"T{i:03d}-{k}", f"C{i:03d}", str(event), float(rng.integers(500, 9000)) / 100,
                         int(rng.integers(1, 4)), str(delivery)))
    # Signed up before AS_OF; their only purchase is delivered after it.
    customers.append(f"L001,{AS_OF - dt.timedelta(days=8)},GB,email,l1@example.com,Late Buyer")
    # Sign up (and buy) after AS_OF.
    customers += [f"N{i:03d},{AS_OF + dt.timedelta(days=i)},DE,social,n{i}@example.com,New {i}" for i in range(1, 4)]
    return customers, rows


def deliveries_after_as_of(rng: np.random.Generator):
    rows = []
    for offset in range(1, 11):
        delivery = AS_OF + dt.timedelta(days=offset)
        for j in range(3):
            customer = f"C{int(rng.integers(1, 41)):03d}"
            rows.append((f"A{offset:02d}-{j}", customer, str(delivery), float(rng.integers(500, 9000)) / 100, 1, str(delivery)))
    for i in range(1, 4):
        delivery = AS_OF + dt.timedelta(days=i + 1)
        rows.append((f"N{i:03d}-0", f"N{i:03d}", str(delivery), 42.0, 1, str(delivery)))
    late_delivery = str(AS_OF + dt.timedelta(days=2))
    # Late deliveries: event dates on and before AS_OF, known only from AS_OF + 2 on.
    rows.append(("LATE-1", "C001", str(AS_OF - dt.timedelta(days=1)), 99.0, 2, late_delivery))
    rows.append(("LATE-2", "L001", str(AS_OF - dt.timedelta(days=1)), 55.0, 1, late_delivery))
    rows.append(("LATE-3", "C002", str(AS_OF), 11.0, 1, late_delivery))
    return rows


def customer_features_rows(ml_resources, instance, as_of: dt.date) -> pd.DataFrame:
    assert materialize([customer_features], resources=ml_resources, instance=instance, partition_key=as_of.isoformat()).success
    with ml_resources["warehouse"].connect() as con:
        return con.execute("SELECT * FROM features.customer_features WHERE as_of = ? ORDER BY customer_id", [as_of]).df()


def test_snapshot_ignores_everything_delivered_after_its_day(
    write_transactions, write_customers, ingest_customers, load_days, ml_resources, instance
):
    rng = np.random.default_rng(3)
    customers, before = shop_before_as_of(rng)
    write_customers(customers)
    write_deliveries(write_transactions, before)
    ingest_customers()
    load_days(PIT_START, AS_OF)
    first = snapshot(ml_resources["warehouse"], AS_OF)
    first_table = customer_features_rows(ml_resources, instance, AS_OF)
    assert first[list(BTYD_FEATURES)].notna().any().all(), "the BG/NBD fit should run, so its outputs are compared too"

    write_deliveries(write_transactions, deliveries_after_as_of(rng))
    load_days(AS_OF + dt.timedelta(days=1), AS_OF + dt.timedelta(days=10))
    second = snapshot(ml_resources["warehouse"], AS_OF)
    second_table = customer_features_rows(ml_resources, instance, AS_OF)

    pd.testing.assert_frame_equal(second, first)
    pd.testing.assert_frame_equal(second_table, first_table)
    # The new data did arrive: a later snapshot sees the late rows and the new customers.
    later = snapshot(ml_resources["warehouse"], AS_OF + dt.timedelta(days=5))
    assert row_of(later, "L001")["purchase_days"] == 1
    assert set(later["customer_id"]) - set(first["customer_id"]) == {"N001", "N002", "N003"}


def test_transaction_delivered_after_the_day_is_not_counted_even_if_it_happened_before(
    write_transactions, write_customers, ingest_customers, load_days, ml_resources
):
    write_customers(["L001,2025-02-01,GB,email,l1@example.com,Late Buyer", "C001,2025-01-01,US,organic,c1@example.com,A"])
    write_deliveries(write_transactions, [
        ("T1", "C001", "2025-01-05", 10.0, 1, "2025-01-05"),
        ("T2", "C001", "2025-02-09", 20.0, 1, "2025-02-12"),  # happened before AS_OF, delivered after
        ("T3", "L001", "2025-02-10", 30.0, 1, "2025-02-11"),  # happened on AS_OF, delivered after
    ])
    ingest_customers()
    load_days(day("2025-01-05"), day("2025-02-12"))

    as_of = snapshot(ml_resources["warehouse"], [AS_OF, day("2025-02-12")])
    on_day, after = as_of[as_of["as_of"] == pd.Timestamp(AS_OF)], as_of[as_of["as_of"] == pd.Timestamp("2025-02-12")]

    c1, late = row_of(on_day, "C001"), row_of(on_day, "L001")
    assert (c1["tx_lifetime"], c1["spend_lifetime"], c1["recency_days"]) == (1, 10.0, 36)
    assert (late["purchase_days"], late["tx_lifetime"], late["spend_lifetime"]) == (0, 0, 0)
    assert pd.isna(late["recency_days"])
    # Two days later both are known, with their true event dates.
    c1_after, late_after = row_of(after, "C001"), row_of(after, "L001")
    assert (c1_after["tx_lifetime"], c1_after["spend_lifetime"], c1_after["recency_days"]) == (2, 30.0, 3)
    assert (late_after["purchase_days"], late_after["spend_lifetime"], late_after["recency_days"]) == (1, 30.0, 2)


def test_btyd_forecasts_are_finite_whenever_the_fit_ran(write_transactions, write_customers, ingest_customers,
                                                         load_days, ml_resources):
    customers, before = shop_before_as_of(np.random.default_rng(3), homogeneous=True)
    write_customers(customers)
    write_deliveries(write_transactions, before)
    ingest_customers()
    load_days(PIT_START, AS_OF)

    frame = snapshot(ml_resources["warehouse"], AS_OF)

    fitted = frame[frame["btyd_p_alive"].notna()]
    assert len(fitted) >= 20
    assert fitted[list(BTYD_FEATURES)].notna().all().all()


# --- hand-checked values ------------------------------------------------------------------------------


def test_hand_checked_feature_values(write_transactions, write_customers, ingest_customers, load_days, ml_resources):
    write_customers([
        "c1,2025-01-01,US,organic,c1@example.com,One",
        "c2,2025-01-05,GB,email,c2@example.com,Two",
        "c3,2025-01-15,DE,social,c3@example.com,Three",    # never buys
        "c4,2025-02-15,FR,referral,c4@example.com,Four",   # signs up after AS_OF
        "c5,2025-02-10,NL,email,c5@example.com,Five",      # signs up and buys on AS_OF itself
    ])
    write_deliveries(write_transactions, [
        ("t1", "c1", "2025-01-02", 10.00, 1, "2025-01-02"),
        ("t2", "c1", "2025-01-02", 5.00, 2, "2025-01-02"),   # same day: one purchase day, two transactions
        ("t3", "c1", "2025-01-12", 20.00, 1, "2025-01-14"),  # delivered late, still before AS_OF
        ("t4", "c1", "2025-02-01", 7.50, 3, "2025-02-01"),
        ("t5", "c2", "2025-01-11", 4.00, 1, "2025-01-11"),   # exactly AS_OF - 30: outside the 30-day window
        ("t6", "c2", "2025-01-20", 100.00, 1, "2025-01-20"),
        ("t7", "c2", "2025-02-09", 50.00, 1, "2025-02-12"),  # delivered after AS_OF: not counted
        ("t8", "c5", "2025-02-10", 30.00, 1, "2025-02-10"),
    ])
    ingest_customers()
    load_days(day("2025-01-02"), day("2025-02-12"))

    frame = snapshot(ml_resources["warehouse"], AS_OF)

    assert list(frame["customer_id"]) == ["c1", "c2", "c3", "c5"]
    c1, c2, c3, c5 = (row_of(frame, c) for c in ("c1", "c2", "c3", "c5"))
    # c1 bought on 01-02 (10 + 5), 01-12 (20) and 02-01 (7.50); AS_OF is 02-10.
    assert c1["recency_days"] == 9 and c1["tenure_days"] == 39 and c1["days_since_signup"] == 40
    assert c1["purchase_days"] == 3 and c1["tx_lifetime"] == 4 and c1["qty_lifetime"] == 7
    assert c1["spend_lifetime"] == pytest.approx(42.5)
    assert c1["tx_30"] == 2 and c1["spend_30"] == pytest.approx(27.5)      # (01-11, 02-10]: 01-12 and 02-01
    assert c1["tx_90"] == 4 and c1["spend_90"] == pytest.approx(42.5)
    assert c1["gap_mean_days"] == pytest.approx(15.0)                       # gaps of 10 and 20 days
    assert c1["gap_std_days"] == pytest.approx(math.sqrt(50.0))
    assert c1["last_gap_days"] == 20
    assert c1["avg_basket"] == pytest.approx(42.5 / 4) and c1["max_amount"] == pytest.approx(20.0)
    assert (c1["rfm_frequency"], c1["rfm_recency"], c1["rfm_age"]) == (2, 30, 39)
    assert c1["rfm_repeat_spend"] == pytest.approx((42.5 - 15.0) / 2)
    assert (c1["country"], c1["acquisition_channel"]) == ("US", "organic")

    # c2 bought on 01-11 (4) and 01-20 (100); the 02-09 purchase arrives only on 02-12.
    assert c2["recency_days"] == 21 and c2["tenure_days"] == 30 and c2["days_since_signup"] == 36
    assert c2["purchase_days"] == 2 and c2["tx_lifetime"] == 2
    assert c2["tx_30"] == 1 and c2["spend_30"] == pytest.approx(100.0)
    assert c2["tx_90"] == 2 and c2["spend_90"] == pytest.approx(104.0) and c2["spend_lifetime"] == pytest.approx(104.0)
    assert c2["gap_mean_days"] == pytest.approx(9.0) and pd.isna(c2["gap_std_days"])
    assert (c2["rfm_frequency"], c2["rfm_recency"], c2["rfm_age"]) == (1, 9, 30)

    assert c3["days_since_signup"] == 26
    assert (c3["purchase_days"], c3["tx_lifetime"], c3["tx_30"], c3["spend_90"], c3["spend_lifetime"]) == (0, 0, 0, 0, 0)
    assert pd.isna(c3["recency_days"]) and pd.isna(c3["tenure_days"]) and pd.isna(c3["rfm_frequency"])
    assert (c3["country"], c3["acquisition_channel"]) == ("DE", "social")

    assert (c5["recency_days"], c5["tenure_days"], c5["days_since_signup"], c5["tx_30"]) == (0, 0, 0, 1)
    assert (c5["rfm_frequency"], c5["rfm_recency"], c5["rfm_age"]) == (0, 0, 0)
    assert pd.isna(c5["gap_mean_days"]) and pd.isna(c5["rfm_repeat_spend"])


# --- customers known by the day ----------------------------------------------------------------------


def test_customers_known_by_the_day(write_transactions, write_customers, ingest_customers, load_days, ml_resources):
    write_customers([
        "buyer,2025-01-01,US,organic,b@example.com,B",
        "waiting,2025-01-20,NL,email,w@example.com,W",     # signed up before AS_OF, never bought
        "future,2025-02-11,ES,referral,f@example.com,F",   # signs up the day after AS_OF
    ])
    write_deliveries(write_transactions, [
        ("t1", "buyer", "2025-01-03", 12.0, 1, "2025-01-03"),
        ("t2", "future", "2025-02-11", 8.0, 1, "2025-02-11"),
    ])
    ingest_customers()
    load_days(day("2025-01-03"), day("2025-02-11"))

    frame = snapshot(ml_resources["warehouse"], AS_OF)

    assert sorted(frame["customer_id"]) == ["buyer", "waiting"]
    waiting = row_of(frame, "waiting")
    assert (waiting["country"], waiting["acquisition_channel"], waiting["days_since_signup"]) == ("NL", "email", 21)
    zero_columns = ["purchase_days", "tx_lifetime", "spend_lifetime", "qty_lifetime", "tx_30", "spend_30",
                    "tx_90", "spend_90", "tx_365", "spend_365"]
    assert (waiting[zero_columns] == 0).all()
    assert pd.isna(waiting["recency_days"]) and pd.isna(waiting["tenure_days"])


def test_without_a_customers_file_buyers_are_known_with_unknown_segments(
    write_transactions, ingest_customers, load_days, ml_resources
):
    write_deliveries(write_transactions, [
        ("t1", "a", "2025-01-03", 12.0, 1, "2025-01-03"),
        ("t2", "b", "2025-02-01", 8.0, 2, "2025-02-01"),
        ("t3", "c", "2025-02-11", 8.0, 2, "2025-02-11"),  # after AS_OF
    ])
    ingest_customers()  # no customers export: the asset succeeds and loads nothing
    load_days(day("2025-01-03"), day("2025-02-11"))

    frame = snapshot(ml_resources["warehouse"], AS_OF)

    assert list(frame["customer_id"]) == ["a", "b"]
    assert set(frame["country"]) == {"unknown"} and set(frame["acquisition_channel"]) == {"unknown"}
    # The first purchase stands in for the signup.
    assert list(frame["days_since_signup"]) == list(frame["tenure_days"]) == [38, 9]


# --- customer_daily ----------------------------------------------------------------------------------


def _matches_raw(result):
    evaluations = [e for e in result.get_asset_check_evaluations()
                   if e.asset_key == CUSTOMER_DAILY and e.check_name == "matches_raw"]
    assert len(evaluations) == 1
    return evaluations[0].passed, {k: v.value for k, v in evaluations[0].metadata.items()}


def test_customer_daily_matches_raw_and_rematerializing_replaces(
    write_transactions, load_days, ml_resources, instance, query
):
    write_transactions("2025-01-01", ["t1,c1,2025-01-01 09:00:00,10.00,1", "t2,c1,2025-01-01 18:00:00,5.50,",
                                      "t3,c2,2025-01-01 10:00:00,3.25,4", "t4,c1,2025-01-01 11:00:00,abc,1"])
    write_transactions("2025-01-02", ["t5,c2,2025-01-02 10:00:00,7.00,2", "t6,c3,2024-12-30 10:00:00,1.00,1"])
    tags = {ASSET_PARTITION_RANGE_START_TAG: "2025-01-01", ASSET_PARTITION_RANGE_END_TAG: "2025-01-02"}
    load_days(day("2025-01-01"), day("2025-01-02"))  # raw/transactions, then customer_daily
    contents_sql = "SELECT * FROM features.customer_daily ORDER BY ALL"
    first = query(contents_sql)

    result = materialize([customer_daily], resources=ml_resources, instance=instance, tags=tags)

    passed, compared = _matches_raw(result)
    assert passed
    assert compared == {"spend": 26.75, "raw_spend": 26.75, "transactions": 5, "raw_transactions": 5}
    assert query(contents_sql) == first
    assert first == [  # delivery day, customer, event day, transactions, spend, items, largest sale
        (day("2025-01-01"), "c1", day("2025-01-01"), 2, Decimal("15.50"), 2, Decimal("10.00")),
        (day("2025-01-01"), "c2", day("2025-01-01"), 1, Decimal("3.25"), 4, Decimal("3.25")),
        (day("2025-01-02"), "c2", day("2025-01-02"), 1, Decimal("7.00"), 2, Decimal("7.00")),
        (day("2025-01-02"), "c3", day("2024-12-30"), 1, Decimal("1.00"), 1, Decimal("1.00")),
    ]
    totals = "SELECT delivery_date, sum({count}), sum({spend}) FROM {table} GROUP BY ALL ORDER BY ALL"
    assert query(totals.format(count="transactions", spend="spend", table="features.customer_daily")) == query(
        totals.format(count="1", spend="amount", table="raw.transactions"))

    # A re-delivered day replaces that day's aggregates and leaves the other day alone.
    write_transactions("2025-01-02", ["t7,c4,2025-01-02 10:00:00,2.00,1"])
    load_days(day("2025-01-02"), day("2025-01-02"))
    assert query("SELECT * FROM features.customer_daily WHERE delivery_date = '2025-01-01' ORDER BY ALL") == first[:2]
    assert query("SELECT customer_id, transactions, spend FROM features.customer_daily "
                 "WHERE delivery_date = '2025-01-02'") == [("c4", 1, Decimal("2.00"))]
