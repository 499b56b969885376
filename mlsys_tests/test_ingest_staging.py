"""Staging at the engine's speed, with exact line numbers: a CSV file whose lines are all simple is staged by
splitting its lines from one parallel scan (split_lines.py), every other file by DuckDB's parser paired with
its physical lines (parsers.parse_csv). For a simple file both paths stage exactly the same rows; a line
number is its physical line however many threads read the files; the pseudonymization hash in SQL is
HMAC-SHA256, value for value."""

from __future__ import annotations

import datetime as dt
import random
import string
from pathlib import Path

import duckdb
import pytest

from mlsys_assets.contract import FeedFormat
from mlsys_assets.ingest import parsers
from mlsys_assets.ingest.landing_file import LandingFile
from mlsys_assets.ingest.pii import hmac_sha256_hex, register_pii_hash
from mlsys_assets.ingest.reader import _layouts, create_staging_tables, stage_files
from mlsys_assets.ingest.split_lines import stage_simple_files

HEADER = b"transaction_id,customer_id,event_time,amount,quantity"
SIMPLE = {
    "plain": HEADER + b"\nT1,C1,2024-01-01 10:00:00,5.00,1\nT2,C2,2024-01-01,6,\n",
    "crlf": HEADER + b"\r\nT1,C1,2024-01-01 10:00:00,5.00,1\r\nT2,C2,2024-01-01,6,\r\n",
    "bom": b"\xef\xbb\xbf" + HEADER + b"\nT1,C1,2024-01-01,5,1\n",
    "blank_lines": HEADER + b"\n\nT1,C1,2024-01-01,5,1\n\n\nT2,,,,\n",
    "no_final_newline": HEADER + b"\nT1,C1,2024-01-01,5,1\nT2,C2,2024-01-01,6,2",
    "blanks_in_fields": HEADER + b"\n T1 , C1 ,2024-01-01, 5 ,  \n   ,  ,  ,  ,  \n",
    "all_empty": HEADER + b"\n,,,,\n",
    "unicode": HEADER + "\nT\u00e9,C\u00fc,2024-01-01,5,1\n".encode(),
    "only_header": HEADER + b"\n",
    "tab_in_field": HEADER + b"\nT1\t,C1,2024-01-01,5,1\n",
}
NOT_SIMPLE = {
    "quoted": HEADER + b'\n"T1",C1,2024-01-01,5,1\nT2,C2,2024-01-01,6,1\n',
    "too_few_fields": HEADER + b"\nT1,C1,2024-01-01,5\nT2,C2,2024-01-01,6,1\n",
    "bad_utf8": HEADER + b"\nT1,C\xff1,2024-01-01,5,1\n",
}
NO_HEADER = FeedFormat(feed="transactions", header=False,
                       columns={"transaction_id": 1, "customer_id": 2, "event_time": 3, "amount": 4, "quantity": 5})


def _stage(files: list[Path], fmt: FeedFormat, split: bool) -> tuple:
    """(summaries, staged rows, rejected rows) of the files, through the split path or the parser alone."""
    con = duckdb.connect()
    create_staging_tables(con, "staged", "rejects", fmt)
    layouts, errors = _layouts(con, [LandingFile(p, p.name, dt.date(2024, 1, 1)) for p in files], fmt)
    assert not errors
    con.execute("CREATE TEMP TABLE _files AS SELECT * FROM (VALUES (NULL::VARCHAR, NULL::VARCHAR, NULL::DATE)) "
                "t(filename, source_name, delivery_date) WHERE false")
    con.executemany("INSERT INTO _files VALUES (?, ?, ?)",
                    [[str(f.path), f.source_name, f.delivery_date] for layout in layouts for f in layout.files])
    summaries = []
    for layout in layouts:
        if split:
            summaries += parsers.stage_csv(con, layout, fmt, "staged", "rejects")
        else:
            with parsers.single_thread(con):
                summaries += parsers.parse_csv(con, layout, fmt, "staged", "rejects")
    return (sorted(map(str, summaries)), con.execute("SELECT * FROM staged ORDER BY ALL").fetchall(),
            con.execute("SELECT * FROM rejects ORDER BY ALL").fetchall())


@pytest.mark.parametrize("fmt", [FeedFormat(feed="transactions"), NO_HEADER], ids=["header", "no_header"])
@pytest.mark.parametrize("name", sorted(SIMPLE) + sorted(NOT_SIMPLE))
def test_the_split_path_stages_what_the_parser_stages(tmp_path: Path, name: str, fmt: FeedFormat) -> None:
    path = tmp_path / f"{name}.csv"
    path.write_bytes({**SIMPLE, **NOT_SIMPLE}[name])
    assert _stage([path], fmt, split=True) == _stage([path], fmt, split=False)


@pytest.mark.parametrize("delimiter, encoding", [("\t", "utf-8"), (";", "latin-1"), ("|", "utf-8")])
@pytest.mark.parametrize("name", ["plain", "crlf", "blank_lines", "blanks_in_fields", "unicode", "quoted", "too_few_fields"])
def test_the_split_path_stages_what_the_parser_stages_in_other_dialects(tmp_path: Path, name: str, delimiter: str,
                                                                        encoding: str) -> None:
    text = {**SIMPLE, **NOT_SIMPLE}[name].decode("utf-8").replace(",", delimiter)
    path = tmp_path / f"{name}.csv"
    path.write_bytes(text.encode(encoding))
    fmt = FeedFormat(feed="transactions", delimiter=delimiter, encoding=encoding)
    assert _stage([path], fmt, split=True) == _stage([path], fmt, split=False)


def test_only_files_with_a_line_the_split_cannot_judge_go_to_the_parser(tmp_path: Path) -> None:
    for name, content in {**SIMPLE, **NOT_SIMPLE}.items():
        (tmp_path / f"{name}.csv").write_bytes(content)
    fmt = FeedFormat(feed="transactions")
    con = duckdb.connect()
    create_staging_tables(con, "staged", "rejects", fmt)
    [layout], _ = _layouts(con, [LandingFile(p, p.name) for p in sorted(tmp_path.glob("*.csv"))], fmt)
    con.execute("CREATE TEMP TABLE _files (filename VARCHAR, source_name VARCHAR, delivery_date DATE)")
    con.executemany("INSERT INTO _files VALUES (?, ?, NULL)", [[str(f.path), f.source_name] for f in layout.files])
    split, others = stage_simple_files(con, layout, fmt, "staged")
    assert sorted(s.file.path.stem for s in split) == sorted(SIMPLE)
    assert sorted(f.path.stem for f in others) == sorted(NOT_SIMPLE)
    assert _stage(sorted(tmp_path.glob("*.csv")), fmt, split=True) == _stage(sorted(tmp_path.glob("*.csv")), fmt, split=False)


def test_line_numbers_stay_exact_when_many_files_are_read_in_parallel(tmp_path: Path) -> None:
    rng = random.Random(7)
    files = []
    for day in range(60):
        lines = [HEADER.decode()]
        for number in range(2, rng.randint(2, 3000)):
            # Each data line names its own line number; some lines are blank (they are not data lines).
            lines.append("" if rng.random() < 0.01 else f"T{day}-{number},C{number},2024-01-01,{number}.00,1")
        path = tmp_path / f"{day:03d}.csv"
        path.write_text("\n".join(lines) + "\n")
        files.append(LandingFile(path, path.name, dt.date(2024, 1, 1) + dt.timedelta(days=day)))
    con = duckdb.connect()
    con.execute("SET threads = 4")
    fmt = FeedFormat(feed="transactions")
    create_staging_tables(con, "staged", "rejects", fmt)
    staged = stage_files(con, files, fmt, "staged", "rejects")
    assert all(s.lines_exact for s in staged)
    rows = con.execute("SELECT source_file, line, transaction_id, original_text FROM staged").fetchall()
    assert len(rows) == sum(s.data_lines for s in staged) > 60_000
    for source_file, line, transaction_id, text in rows:
        assert transaction_id == f"T{int(source_file[:3])}-{line}"
        assert text.startswith(transaction_id + ",")


@pytest.mark.parametrize("key", [b"test-pii-key", b"k" * 64, b"k" * 65, "schl\u00fcssel".encode(), b""])
def test_pii_hash_in_sql_is_hmac_sha256(key: bytes) -> None:
    rng = random.Random(3)
    values = ["a@b.com", "", None, "Jos\u00e9 \u00c5berg", "x" * 300] + [
        "".join(rng.choices(string.printable, k=rng.randint(0, 80))) for _ in range(500)]
    con = duckdb.connect()
    register_pii_hash(con, key)
    con.execute("CREATE TABLE v (i INTEGER, s VARCHAR)")
    con.executemany("INSERT INTO v VALUES (?, ?)", list(enumerate(values)))
    hashed = [row[0] for row in con.execute("SELECT pii_hash(s) FROM v ORDER BY i").fetchall()]
    assert hashed == [hmac_sha256_hex(key, value) for value in values]
    # The key reaches DuckDB as bound parameters only: the macro's text does not hold it.
    macro = " ".join(str(row) for row in con.execute("SELECT * FROM duckdb_functions() WHERE function_name = 'pii_hash'").fetchall())
    assert "pii_hash" in macro and (not key or key.hex() not in macro)


def test_the_keys_check_counts_the_run_ids_stored_twice_in_a_daily_run_and_a_backfill() -> None:
    from mlsys_assets.ingest.raw_tables import RAW_TABLES_DDL
    from mlsys_assets.ingest.transactions_metadata import transaction_checks

    con = duckdb.connect()
    con.execute("CREATE SCHEMA raw")
    con.execute(RAW_TABLES_DDL)
    con.execute("CREATE TEMP TABLE _files (filename VARCHAR, source_name VARCHAR, delivery_date DATE)")
    rows = [("A", "2024-01-01"), ("B", "2024-01-01"), ("A", "2024-01-02"), ("C", "2024-01-02"), ("C", "2024-01-02"),
            ("D", "2024-01-03")]
    con.executemany("INSERT INTO raw.transactions VALUES (?, 'c', TIMESTAMP '2024-01-01', DATE '2024-01-01', 1, 1, ?, "
                    "'f', 1, now(), 'r')", rows)

    def keys(*days: str) -> dict:
        con.execute("CREATE OR REPLACE TEMP TABLE _delivery_days (day DATE)")
        con.executemany("INSERT INTO _delivery_days VALUES (?)", [[day] for day in days])
        [check] = [c for c in transaction_checks(con, [], 100.0) if c.check_name == "keys"]
        return {"passed": check.passed, **{k: v.value for k, v in check.metadata.items()}}

    assert keys("2024-01-02") == {"passed": False, "null_keys": 0, "duplicate_transaction_ids": 2}  # A (across days), C
    assert keys("2024-01-01") == {"passed": False, "null_keys": 0, "duplicate_transaction_ids": 1}  # A
    assert keys("2024-01-03") == {"passed": True, "null_keys": 0, "duplicate_transaction_ids": 0}
    assert keys("2024-01-01", "2024-01-02", "2024-01-03") == {"passed": False, "null_keys": 0, "duplicate_transaction_ids": 2}
