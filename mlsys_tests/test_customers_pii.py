"""Customers load with e-mail and name pseudonymized, and no e-mail address reaches the warehouse."""

from __future__ import annotations

import hashlib
import hmac


# Loose on purpose: anything that looks like an address counts as a leak.
EMAIL_PATTERN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"

BAD_CUSTOMER_ROWS = [
    ",2024-05-03,FR,seo,nobody@example.org,No Id",
    "c4,03/05/2024,FR,seo,carl@example.org,Carl Berg",
    "c5,2099-01-01,DE,ads,gus@example.com,Gus Ray",
    "c6,2024-05-06,DE,ads,dan@example.com,Dan Fox,extra",
    "c7,2024-05-07,DE,ads,eve@example.com",
    b"c8,2024-05-08,D\xff,ads,fay@example.com,Fay Moe",
]


def keyed_hash(key: str, text: str) -> str:
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


def varchar_columns(query) -> list[tuple[str, str, str]]:
    return query(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        "WHERE data_type = 'VARCHAR' ORDER BY ALL"
    )


def email_addresses(query, columns: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """(schema.table.column, value) for every value of the given columns that holds an e-mail address."""
    scans = [
        f"SELECT '{schema}.{table}.{column}', \"{column}\" FROM \"{schema}\".\"{table}\" "
        f"WHERE regexp_matches(\"{column}\", '{EMAIL_PATTERN}')"
        for schema, table, column in columns
    ]
    return query(" UNION ALL ".join(scans))


def test_email_and_name_are_replaced_by_keyed_hashes(pii_key, write_customers, ingest_customers, query):
    write_customers(
        [
            "c1,2024-05-01,DE,ads,Ann@Example.com ,Ann Lee",
            "c2,2024-05-02,FR,seo,ann@example.com,Ann Lee",
            "c3,2024-05-03,FR,seo,bob@example.org,Bob Stone",
        ]
    )

    ingest_customers()

    ann_email, ann_name = keyed_hash(pii_key, "ann@example.com"), keyed_hash(pii_key, "ann lee")
    assert query("SELECT customer_id, email_hash, name_hash FROM raw.customers ORDER BY customer_id") == [
        ("c1", ann_email, ann_name),
        ("c2", ann_email, ann_name),
        ("c3", keyed_hash(pii_key, "bob@example.org"), keyed_hash(pii_key, "bob stone")),
    ]


def test_a_different_key_gives_different_hashes(monkeypatch, pii_key, write_customers, ingest_customers, query):
    write_customers(["c1,2024-05-01,DE,ads,ann@example.com,Ann Lee"])
    ingest_customers()
    first_hash = query("SELECT email_hash FROM raw.customers")
    monkeypatch.setenv("MLSYS_PII_KEY", "another-test-key")

    ingest_customers()

    second_hash = query("SELECT email_hash FROM raw.customers")
    assert first_hash == [(keyed_hash(pii_key, "ann@example.com"),)]
    assert second_hash == [(keyed_hash("another-test-key", "ann@example.com"),)]


def test_quarantined_customer_rows_keep_text_with_personal_fields_masked(write_customers, ingest_customers, query):
    write_customers(["c1,2024-05-01,DE,ads,ann@example.com,Ann Lee", *BAD_CUSTOMER_ROWS[:4]])

    ingest_customers()

    assert query("SELECT line, reason, original_text FROM raw.quarantine ORDER BY line") == [
        (3, "missing_value", ",2024-05-03,FR,seo,***,***"),
        (4, "invalid_date", "c4,03/05/2024,FR,seo,***,***"),
        (5, "future_event", "c5,2099-01-01,DE,ads,***,***"),
        (6, "malformed_line", "c6,2024-05-06,DE,ads,***,***,***"),
    ]


def test_no_email_address_anywhere_in_the_warehouse(write_customers, ingest_customers, query):
    valid_rows = ["c1,2024-05-01,DE,ads,ann@example.com,Ann Lee", 'c2,2024-05-02,FR,seo,"bob@example.org",Bob']
    write_customers([*valid_rows, *BAD_CUSTOMER_ROWS])

    ingest_customers()

    columns = varchar_columns(query)
    scanned = {f"{schema}.{table}.{column}" for schema, table, column in columns}
    assert query("SELECT count(*) FROM raw.quarantine") == [(len(BAD_CUSTOMER_ROWS),)]
    assert {"raw.customers.country", "raw.quarantine.detail", "raw.quarantine.original_text"} <= scanned
    assert email_addresses(query, columns) == []


def test_no_email_address_when_columns_are_shifted(write_customers, ingest_customers, query):
    write_customers(["c9,carol@example.net,DE,ads,,Carol Diaz"])

    ingest_customers()

    assert email_addresses(query, varchar_columns(query)) == []


def test_quarantined_row_masks_a_quoted_name_with_a_comma(write_customers, ingest_customers, query):
    write_customers(['c9,2099-01-01,DE,ads,x@example.com,"Diaz, Carol"'])

    ingest_customers()

    [(original_text,)] = query("SELECT original_text FROM raw.quarantine")
    assert "Diaz" not in original_text and "Carol" not in original_text


def test_without_customers_file_transactions_still_load(
    ingest_customers, write_transactions, ingest_transactions, query
):
    customers_result = ingest_customers()
    write_transactions("2025-01-01", ["t1,c1,2025-01-01,10.00,1"])

    ingest_transactions("2025-01-01")

    assert customers_result.success
    assert query("SELECT count(*) FROM raw.customers") == [(0,)]
    assert query("SELECT transaction_id, customer_id FROM raw.transactions") == [("t1", "c1")]
