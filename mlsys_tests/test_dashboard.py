"""The model and monitoring dashboard of the report index (mlsys_assets/monitoring/dashboard.py), on a small
warehouse built with the real DDL: what serves, the gate's decisions, the trend charts, and a page that wraps.

A unit test cannot measure layout: the width at 1400 px is asserted through the CSS rules and the markup
that make the page wrap; a browser test measures it (see the selectors used here).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import duckdb
import pytest

from mlsys_assets.ml.gate import KEEP_PRODUCTION, SERVE_BTYD
from mlsys_assets.ml.model_store import ModelVersion, write_pointer
from mlsys_assets.ml.registry import ML_TABLES_DDL
from mlsys_assets.monitoring.dashboard import read_dashboard
from mlsys_assets.monitoring.svg_chart import Chart, Series, chart_svg
from mlsys_assets.monitoring.report_index import refresh_index, write_index

PACKAGE = Path(__file__).resolve().parents[1] / "mlsys_assets"
DAYS = [dt.date(2024, 3, 1) + dt.timedelta(days=i) for i in range(5)]
FIRST, SECOND = dt.datetime(2024, 2, 26, 3), dt.datetime(2024, 3, 4, 3)
EVIL = "<script>alert('x')</script>"


def _register(con, model, version, kind, state, created, run_id, passed=None, reason=None, action=None):
    con.execute(
        "INSERT INTO ml.model_registry BY NAME SELECT ? AS model, ? AS version, ? AS kind, ? AS state, "
        "? AS state_changed_at, ? AS created_at, ? AS path, ? AS run_id, ? AS gate_passed, ? AS gate_reason, "
        "? AS gate_action, DATE '2023-06-01' AS train_as_of_first, DATE '2024-01-01' AS train_as_of_last",
        [model, version, kind, state, created, created, f"/models/{model}/{version}", run_id, passed, reason, action])


def _registry(con) -> None:
    """Two retrainings: the first promotes both targets; in the second the LTV candidate loses to BG/NBD
    (the classic model serves) and the churn candidate loses only to production (production stays). The first
    retraining predates gate_action (NULL): its actions are inferred."""
    _register(con, "ltv", "ltv-1", "catboost", "retired", FIRST, "r1", True, "beats BG/NBD")
    _register(con, "churn", "churn-1", "catboost", "production", FIRST, "r1", True, "beats BG/NBD")
    _register(con, "ltv", "ltv-2-evaluated", "catboost", "evaluated", SECOND, "r2")
    _register(con, "ltv", "ltv-2", "catboost", "rejected", SECOND, "r2", False, f"rmse worse than BG/NBD's {EVIL}",
              SERVE_BTYD)
    _register(con, "ltv", "ltv-btyd-2", "btyd", "production", SECOND + dt.timedelta(seconds=5), "r2", True,
              "fallback: rmse worse than BG/NBD's", SERVE_BTYD)
    _register(con, "churn", "churn-2", "catboost", "rejected", SECOND, "r2", False,
              "roc_auc 0.80 is worse than production's backtest 0.85 beyond the tolerance 0.02", KEEP_PRODUCTION)
    for evaluation, when, candidate in (("r1", FIRST, 100.0), ("r2", SECOND, 110.0)):
        for model, metric, bgnbd in (("ltv", "rmse", 105.0), ("churn", "roc_auc", 0.9)):
            for scorer, value in (("candidate", candidate if model == "ltv" else 0.91), ("bgnbd", bgnbd)):
                con.execute("INSERT INTO ml.model_evaluation VALUES (?, ?, DATE '2024-01-01', ?, ?, NULL, ?, ?, NULL)",
                            [evaluation, when, model, scorer, metric, value])
            # a per-cutoff row: the charts show the mean over the cutoffs only
            con.execute("INSERT INTO ml.model_evaluation VALUES (?, ?, DATE '2024-01-01', ?, 'candidate', NULL, ?, "
                        "1000.0, DATE '2023-12-01')", [evaluation, when, model, metric])


def _report_rows(root: Path) -> list[dict]:
    rows = []
    for i, day in enumerate(DAYS):
        base = {"partition": str(day), "created_at": f"{day} 06:00:00", "passed": True, "reference_rows": 1000,
                "current_rows": 900, "model_version": "ltv-btyd-2,churn-1"}
        scores = {f"feature_with_a_long_name_{n}": 0.123456 * n for n in range(22)}
        rows += [
            {**base, "report_id": f"f:{day}", "kind": "feature_drift", "html_path": str(root / f"feature_drift/{day}.html"),
             "headline": {"drift_share": 0.1 * i, "drifted_columns": i, "columns": 10, "context_scores": scores}},
            {**base, "report_id": f"p:{day}", "kind": "prediction_drift", "html_path": str(root / f"p/{day}.html"),
             "headline": {"drift_share": 0.0, "drifted_columns": 0, "columns": 2}},
            {**base, "report_id": f"m:{day}", "kind": "model_performance", "html_path": str(root / f"m/{day}.html"),
             "headline": {"rmse": 100 + i, "baseline_rmse": 150.0, "roc_auc": None if i == 2 else 0.9}},
        ]
    return rows


@pytest.fixture
def shop(tmp_path: Path) -> tuple[duckdb.DuckDBPyConnection, Path, Path]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    for schema in ("ml", "predictions"):
        con.execute(f"CREATE SCHEMA {schema}")
    con.execute(ML_TABLES_DDL)
    con.execute((PACKAGE / "predictions" / "prediction_tables.sql").read_text())
    _registry(con)
    for day in DAYS:
        for n, customer in enumerate(("C1", "C2", "C3")):
            con.execute("INSERT INTO predictions.customer_predictions VALUES (?, ?, ?, ?, 'low', 1, 90, 'ltv-btyd-2', "
                        "'churn-1', now(), 'run')", [day, customer, 10.0 * (n + 1) + day.day, 0.2 + 0.01 * day.day])
    serving, reports = tmp_path / "serving", tmp_path / "reports"
    serving.mkdir()
    write_pointer(serving, {"ltv": ModelVersion("ltv", "ltv-btyd-2", Path("/models/ltv/ltv-btyd-2")),
                            "churn": ModelVersion("churn", "churn-1", Path("/models/churn/churn-1"))}, "test")
    (reports / "models" / "churn").mkdir(parents=True)
    (reports / "models" / "churn" / "churn-1.html").write_text("<html></html>")
    yield con, serving, reports
    con.close()


def _page(shop) -> str:
    con, serving, reports = shop
    rows = _report_rows(reports)
    return write_index(reports, rows, read_dashboard(con, serving, rows, 0.3)).read_text(encoding="utf-8")


def _section(page: str, section_id: str) -> str:
    start = page.index(f'id="{section_id}"')
    return page[start:page.index("</table>", start)]


def test_dashboard_shows_what_serves_with_its_kind_and_report(shop) -> None:
    production = _section(_page(shop), "production")
    assert production.count("<tr data-target=") == 2
    ltv = production[production.index('data-target="ltv"'):production.index('data-target="churn"')]
    assert "ltv-btyd-2" in ltv and "<td>btyd</td>" in ltv and "2024-03-04 03:00" in ltv
    assert "model report" not in ltv  # no reports/models/ltv/ltv-btyd-2.html: no dead link
    churn = production[production.index('data-target="churn"'):]
    assert "churn-1" in churn and "<td>catboost</td>" in churn
    assert 'href="models/churn/churn-1.html"' in churn


def test_gate_history_has_one_row_per_decision_with_its_action(shop) -> None:
    history = _section(_page(shop), "gate-history")
    rows = re.findall(r"<tr data-target=.*?</tr>", history)
    actions = [re.search(r'class="action action-[a-z_]+">([A-Z_]+)<', row).group(1) for row in rows]
    # newest retraining first; the evaluated model and the BG/NBD fallback are no decisions of their own
    assert actions == ["KEEP_PRODUCTION", "SERVE_BTYD", "PROMOTE", "PROMOTE"]
    assert [re.search(r'data-target="(\w+)"', row).group(1) for row in rows] == ["churn", "ltv", "churn", "ltv"]
    assert "ltv-2-evaluated" not in history
    assert "→ ltv-btyd-2 serves" in rows[1] and "&lt;script&gt;" in rows[1]
    assert "<td>rejected</td>" in rows[1] and "<td>production</td>" in rows[2]


def test_gate_history_shows_the_stored_action_not_one_read_from_the_reason(shop) -> None:
    con, _, _ = shop
    con.execute("UPDATE ml.model_registry SET gate_reason = 'roc_auc 0.80 trails the serving model' "
                "WHERE version = 'churn-2'")
    history = _section(_page(shop), "gate-history")
    churn = re.findall(r"<tr data-target=.*?</tr>", history)[0]
    assert "churn-2" in churn and '<span class="action action-keep_production">KEEP_PRODUCTION</span>' in churn


def test_trend_charts_have_a_point_per_day_and_retraining(shop) -> None:
    page = _page(shop)
    charts = dict(re.findall(r'<figure class="chart" id="([a-z-]+)">.*?<svg class="trend"[^>]*data-points="(\d+)"',
                             page))
    assert charts == {"trend-drift-share": "10", "trend-matured-rmse": "10", "trend-matured-auc": "4",
                      "trend-mean-spend": "5", "trend-mean-churn": "5", "trend-retrain-rmse": "4",
                      "trend-retrain-auc": "4"}
    # every series of more than one point is a line; the undefined AUC is left out, not drawn as 0
    series = re.findall(r'<g class="series" data-series="[^"]+" data-points="(\d+)">(<polyline)?', page)
    assert series and all(line for points, line in series if int(points) > 1)
    assert "alert above 0.3" in page and ">day</text>" in page and ">share</text>" in page
    assert "data quality (no data)" in page  # a series without reports is named, not silently dropped


def test_one_point_still_makes_a_readable_chart() -> None:
    svg = chart_svg(Chart("c", "One day", "RMSE", (Series("model", ((dt.date(2024, 3, 1), 41.5),)),), "none yet"))
    assert svg.count("<circle") == 1 and "<polyline" not in svg
    assert ">2024-03-01</text>" in svg and ">RMSE</text>" in svg
    assert "nan" not in svg.lower() and "inf" not in svg.lower()
    y_ticks = [float(t) for t in re.findall(r'text-anchor="end" fill="#555">([-\d.]+)<', svg)]
    assert len(y_ticks) >= 2 and min(y_ticks) < 41.5 < max(y_ticks)
    assert chart_svg(Chart("c", "Nothing", "RMSE", (Series("model", ()),), "labels mature later")) == \
        '<p class="no-data">labels mature later</p>'


def test_an_empty_warehouse_gives_a_dashboard_that_says_so(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    page = write_index(tmp_path / "reports", [], read_dashboard(con, tmp_path / "serving", [])).read_text()
    assert 'id="dashboard"' in page and "No production model yet" in page and "No gate decision yet" in page
    assert "<svg" not in page


def test_the_page_wraps_within_1400_px_and_is_self_contained(shop) -> None:
    page = _page(shop)
    css = page[page.index("<style>"):page.index("</style>")]
    assert re.search(r"body \{[^}]*max-width: 1400px", css)
    assert re.search(r"table \{[^}]*table-layout: fixed", css)
    assert re.search(r"th, td \{[^}]*overflow-wrap: anywhere", css)
    assert not re.search(r"\.headline[^{]*\{[^}]*white-space: nowrap", css)
    assert re.search(r"svg\.trend \{[^}]*width: 100%", css)
    assert page.count("<table") == page.count("<colgroup>")  # every column has its width
    # the 22 context scores fold away instead of making one long line
    assert page.count("<summary>context scores (22)</summary>") == len(DAYS)
    assert not re.search(r"https?://", page) and "<script" not in page and "@import" not in page
    assert EVIL not in page
    json.dumps(page)  # plain text: no bytes that would not survive being written back


def test_refresh_index_reads_the_newest_report_of_each_day_from_the_warehouse(shop) -> None:
    con, serving, reports = shop
    con.execute("CREATE SCHEMA monitoring")
    con.execute((PACKAGE / "monitoring" / "monitoring_tables.sql").read_text())
    for run, drift_share in (("old", 0.9), ("new", 0.2)):
        headline = json.dumps({"drift_share": drift_share, "drifted_columns": 1, "columns": 10})
        con.execute("INSERT INTO monitoring.reports VALUES (?, 'feature_drift', ?, 'ltv-btyd-2', 10, 10, TRUE, ?, "
                    "'feature_drift/x.html', '{}', ?, ?)",
                    [f"feature_drift:{DAYS[0]}:{run}", DAYS[0], headline,
                     dt.datetime(2024, 3, 2, 6 if run == "old" else 7), run])
    page = refresh_index(con, reports, serving, 0.3).read_text()
    assert "drift share <b>0.2</b>" in page and "drift share <b>0.9</b>" not in page
    assert 'data-target="churn"' in page and re.search(r'id="trend-drift-share">.*?data-points="1"', page)


def test_a_promotion_by_hand_rewrites_the_dashboard(shop) -> None:
    """`mlsys models promote|rollback` change what serves: the index's dashboard follows at once."""
    from click.testing import CliRunner

    from mlsys_assets.cli import main

    con, serving, reports = shop
    con.execute("CREATE SCHEMA monitoring")
    con.execute((PACKAGE / "monitoring" / "monitoring_tables.sql").read_text())
    refresh_index(con, reports, serving, 0.3)
    con.close()

    result = CliRunner().invoke(main, ["models", "promote", "ltv-1", "--data-dir", str(serving.parent)])

    assert result.exit_code == 0, result.output
    production = _section((reports / "index.html").read_text(encoding="utf-8"), "production")
    ltv = production[production.index('data-target="ltv"'):production.index('data-target="churn"')]
    assert "ltv-1" in ltv and "ltv-btyd-2" not in ltv
