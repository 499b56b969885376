"""What the Dagster UI shows must not mislead: descriptions survive its markdown renderer, each report
partition links its own day's report, numbers are typed and rounded, and a failed check says why."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from dagster import AssetCheckEvaluation, AssetCheckSeverity, AssetKey, MetadataValue, UrlMetadataValue, materialize

from mlsys_assets.definitions import defs
from mlsys_assets.monitoring.assets import (
    data_quality_report,
    feature_drift_report,
    model_performance_report,
    prediction_drift_report,
)
from mlsys_assets.monitoring.evidently_reports import ReportResult
from mlsys_assets.monitoring.report_metadata import report_metadata, rounded
from mlsys_assets.partitions import daily_partitions
from mlsys_assets.runs import check_line
from mlsys_tests.conftest import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    CUSTOMERS_HEADER,
    TRANSACTIONS_HEADER,
    ml_resources_for,
)

REPORTS = [data_quality_report, feature_drift_report, prediction_drift_report, model_performance_report]
# `<day>` outside a code span is an HTML tag to the UI's markdown renderer, which drops it.
PLACEHOLDER = re.compile(r"<[A-Za-z_][\w-]*>")
CODE_SPAN = re.compile(r"`[^`]*`")


def _swallowed(text: str | None) -> list[str]:
    return PLACEHOLDER.findall(CODE_SPAN.sub("", text or ""))


def test_no_description_holds_a_placeholder_the_markdown_renderer_would_swallow() -> None:
    graph = defs.resolve_asset_graph()
    found = {spec.key.to_user_string(): _swallowed(spec.description) for spec in defs.resolve_all_asset_specs()}
    found |= {f"{key.asset_key.to_user_string()} {key.name}": _swallowed(graph.get_check_spec(key).description)
              for key in graph.asset_check_keys}
    assert {name: tags for name, tags in found.items() if tags} == {}


def test_each_report_partition_runs_alone_and_a_range_is_refused(tmp_path: Path) -> None:
    # Dagster gives every partition of a range run the same metadata: a range would link each day to the
    # last day's report.
    assert all(report.backfill_policy.max_partitions_per_run == 1 for report in REPORTS)
    first, last = daily_partitions.get_partition_keys()[-3:-1]
    result = materialize([data_quality_report], resources=ml_resources_for(tmp_path), raise_on_error=False,
                         tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last})
    failures = [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
    assert not result.success and "describes one day" in failures[0]


def _result(kind: str, has_reference: bool, reports: Path) -> ReportResult:
    return ReportResult(
        kind=kind, html_path=reports / kind / "2024-03-03.html", snapshot_json="{}", metrics=[], tests=[],
        reference_rows=0 if not has_reference else 4031, current_rows=5005, passed=True, has_reference=has_reference,
        headline={"drift_share": 0.123456789, "drifted_columns": 2, "columns": 10, "roc_auc": None,
                  "context_scores": {"tenure_days": 0.675393}},
    )


def test_report_metadata_links_the_report_and_types_and_rounds_its_numbers(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    metadata = report_metadata(_result("feature_drift", True, reports), "feature_drift:2024-03-03:abc", reports, 5005)
    assert isinstance(metadata["report"], UrlMetadataValue)  # clickable in the UI
    assert metadata["report"].value.endswith("/feature_drift/2024-03-03.html")
    assert metadata["index"].value.endswith("/index.html")
    assert metadata["drift_share"] == MetadataValue.float(0.1235)
    assert metadata["drifted_columns"] == MetadataValue.int(2)
    assert metadata["dagster/row_count"] == MetadataValue.int(5005)
    assert metadata["reference_rows"] == MetadataValue.int(4031)
    assert metadata["headline"].data["context_scores"] == {"tenure_days": 0.6754}
    assert "roc_auc" not in metadata  # no number: not an entry the UI would plot as 0


def test_the_performance_report_claims_no_reference(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    metadata = report_metadata(_result("model_performance", False, reports), "id", reports, 4031)
    assert "reference_rows" not in metadata


def test_rounded_keeps_counts_text_and_missing_values() -> None:
    assert rounded({"a": [1.234567, 3], "b": "x", "c": None, "d": True}) == {"a": [1.2346, 3], "b": "x", "c": None,
                                                                           "d": True}


def test_a_failed_check_line_says_why() -> None:
    key = AssetKey(["raw", "transactions"])
    why = AssetCheckEvaluation(asset_key=key, check_name="known_customers", passed=False,
                               severity=AssetCheckSeverity.WARN, description="46 rows for 8 customers not in\nraw.customers")
    bare = AssetCheckEvaluation(asset_key=key, check_name="known_customers", passed=False,
                                severity=AssetCheckSeverity.WARN)
    passed = AssetCheckEvaluation(asset_key=key, check_name="keys", passed=True, severity=AssetCheckSeverity.ERROR)
    assert check_line(why) == ("check raw/transactions known_customers: FAILED (WARN) — "
                               "46 rows for 8 customers not in raw.customers")
    assert check_line(bare).startswith("check raw/transactions known_customers: FAILED (WARN) — Warns when")
    assert check_line(passed) == "check raw/transactions keys: passed"


def test_the_placeholder_pattern_sees_tags_only_outside_code_spans() -> None:
    assert _swallowed("HTML under data/reports/x/<day>.html, or `data/reports/x/<day>.html`") == ["<day>"]


def test_mlsys_ingest_prints_each_check_and_why_known_customers_warns(cli_env: dict) -> None:
    """The demo's WARN, as a user sees it: one customer's export row is quarantined (a signup date that does not
    exist), another customer is in no export at all; both customers' sales load."""
    data = Path(cli_env["MLSYS_DATA_DIR"])
    (data / "landing" / "customers").mkdir(parents=True)
    (data / "landing" / "customers" / "customers.csv").write_text(
        f"{CUSTOMERS_HEADER}\nc1,2024-01-05,DE,ads,,\nc2,2024-02-30,FR,seo,,\n")
    (data / "landing" / "transactions").mkdir(parents=True)
    for day in ("2024-03-01", "2024-03-02"):
        (data / "landing" / "transactions" / f"{day}.csv").write_text(
            f"{TRANSACTIONS_HEADER}\na{day},c1,{day},10.00,1\nb{day},c2,{day},5.00,1\nc{day},c404,{day},7.00,1\n")
    mlsys = str(Path(sys.executable).with_name("mlsys"))

    ingest = subprocess.run([mlsys, "ingest"], env=cli_env, capture_output=True, text=True, timeout=300)

    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    lines = ingest.stdout.splitlines()
    assert "  check raw/transactions keys: passed" in lines
    assert "  check raw/customers keys: passed" in lines
    assert ("  check raw/transactions known_customers: FAILED (WARN) — 4 rows for 2 customers not in raw.customers "
            "(1 whose customers-export row is quarantined, 1 in no customers export); the rows load, these "
            "customers' signup, country and channel are unknown") in lines
