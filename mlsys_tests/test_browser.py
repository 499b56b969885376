"""The project's pages in a real browser (Debian's Chromium under Playwright), offline.

Every page is opened with every non-loopback request blocked and must: render (visible text and the element
that shows it worked), log no console error or uncaught exception, attempt no remote request, have every
loopback link answer 200, and fit a 1400 px wide window (mlsys_tests/browser.py). The pages:

- the report index (its dashboard: production models, gate history, trend charts) and every report page,
  Evidently's and the model reports, served by `mlsys reports serve`, as the real assets wrote them for two
  days of a simulated shop (built once per session, also under pytest-xdist);
- the API's Swagger UI (`/docs`) and ReDoc (`/redoc`), served by `mlsys serve`;
- the Dagster UI's page of `ml/model_evaluation` (dagster-webserver on the shop's runs), whose report links
  must open on the report server.

The first tests open small broken pages, one per check, to see each check fail. `make browser-test` runs
this file alone.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import http.server
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from dagster import DagsterInstance

from mlsys_assets.automation.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from mlsys_assets.features.assets import customer_features
from mlsys_assets.monitoring.assets import (
    data_quality_report,
    feature_drift_report,
    model_performance_report,
    prediction_drift_report,
)
from mlsys_assets.predictions.assets import customer_predictions
from mlsys_tests import browser as harness
from mlsys_tests.browser import Browser, start_service
from mlsys_tests.servers import Service, free_port
from mlsys_tests.conftest import SHOP_CONFIG, SHOP_HORIZON_DAYS

MLSYS = str(Path(sys.executable).with_name("mlsys"))
TOKEN = "browser-test-token"
DAY = SHOP_CONFIG.end
REPORT_DAYS = [DAY - dt.timedelta(days=1), DAY]  # two days: every trend has more than one point
REPORTS = [data_quality_report, feature_drift_report, prediction_drift_report, model_performance_report]
KINDS = ["data_quality", "feature_drift", "model_performance", "prediction_drift"]
REPORTS_URL_AT_BUILD = "http://127.0.0.1:3001"  # MLSYS_REPORTS_URL while the assets run: their report links
# Evidently draws into <div id="root_…"> from its embedded bundle: ready once that holds text.
EVIDENTLY_READY = ("() => [...document.querySelectorAll('div[id^=\"root_\"]')]"
                   ".some(root => root.innerText.trim().length > 0)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with harness.launch() as launched:
        yield launched


# --- the harness, on pages that are broken on purpose -----------------------------------------------------

GOOD = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>good</title>
<style>@font-face { font-family: inline; src: url(data:font/woff2;base64,AAAA); }</style></head>
<body><h1 id="top">A good page</h1><p>Plenty of visible text, a local link and an anchor.</p>
<a href="other.html">other</a> <a href="#top">top</a> <a href="https://example.com/">elsewhere</a>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="></body></html>"""

BROKEN = {
    # page -> (its HTML body, the start of the problem the harness must report)
    "cdn_script": ('<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>',
                   "remote request attempted: https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"),
    "remote_font": ('<style>@import url("https://fonts.googleapis.com/css2?family=Roboto");</style>',
                    "remote request attempted: https://fonts.googleapis.com/css2?family=Roboto"),
    "remote_fetch": ('<script>fetch("https://api.example.com/track").catch(() => {});</script>',
                     "remote request attempted: https://api.example.com/track"),
    "remote_socket": ('<script>new WebSocket("wss://socket.example.com/live");</script>',
                      "remote request attempted: wss://socket.example.com/live"),
    "js_error": ("<script>undefinedFunction();</script>", "uncaught exception: ReferenceError: undefinedFunction"),
    "console_error": ('<script>console.error("widget failed");</script>', "console error: widget failed"),
    "missing_script": ('<script src="missing.js"></script>', "loopback request failed: http://127.0.0.1:"),
    "broken_link": ('<a href="reports/nowhere.html">a report</a>', "link http://127.0.0.1:"),
    "missing_anchor": ('<a href="#dashboard">dashboard</a>', "link #dashboard names no element"),
    "too_wide": ('<table><tr><td style="white-space:nowrap">' + "drifted_column_name " * 200 + "</td></tr></table>",
                 "overflows: document scrollWidth"),
    "blank": ('<div id="app"></div><script>/* a bundle that never rendered */</script>', "blank:"),
}
FILLER = "<p>Enough visible text for the page not to count as blank, on every broken page.</p>"


@dataclass
class Site:
    url: str  # ends with "/"
    root: Path


@pytest.fixture(scope="module")
def synthetic_site(tmp_path_factory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("synthetic_site")
    (root / "good.html").write_text(GOOD)
    (root / "other.html").write_text("<p>other</p>")
    for name, (body, _) in BROKEN.items():
        filler = "" if name == "blank" else FILLER
        (root / f"{name}.html").write_text(f"<!DOCTYPE html><html><body>{filler}{body}</body></html>")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{server.server_address[1]}/", root)
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_harness_passes_a_good_offline_page(browser: Browser, synthetic_site: Site):
    with browser.visit(synthetic_site.url + "good.html", ready="h1") as visit:
        visit.assert_clean()
    assert visit.links == {synthetic_site.url + "other.html": 200}
    assert visit.external_links == ["https://example.com/"]  # listed, never requested


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_harness_reports_each_kind_of_broken_page(browser: Browser, synthetic_site: Site, name: str):
    with browser.visit(synthetic_site.url + f"{name}.html", settle_ms=300) as visit:
        problems = visit.problems()
    expected = BROKEN[name][1]
    assert any(problem.startswith(expected) for problem in problems), problems
    with pytest.raises(AssertionError, match="remote request|exception|console|failed|link|overflows|blank"):
        visit.assert_clean()


def test_harness_catches_fastapis_default_cdn_docs(browser: Browser, synthetic_site: Site):
    """FastAPI's own /docs page (Swagger UI from cdn.jsdelivr.net) is what the API test must refuse."""
    from fastapi.openapi.docs import get_swagger_ui_html

    page = get_swagger_ui_html(openapi_url="/openapi.json", title="cdn docs").body.decode()
    (synthetic_site.root / "cdn_docs.html").write_text(page)
    with browser.visit(synthetic_site.url + "cdn_docs.html", ready=".swagger-ui .info .title",
                       timeout_ms=2_000) as visit:
        problems = visit.problems()
    assert any(p.startswith("remote request attempted: https://cdn.jsdelivr.net/") for p in problems), problems
    assert any(p.startswith("never became ready") for p in problems), problems


def test_harness_waits_for_a_page_that_never_gets_ready(browser: Browser, synthetic_site: Site):
    with browser.visit(synthetic_site.url + "good.html", ready="#never", timeout_ms=1_000) as visit:
        pass
    assert any(problem.startswith("never became ready") for problem in visit.problems())


def test_without_chromium_the_browser_tests_skip_locally_but_fail_in_ci(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(harness, "chromium_executable", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium is not installed"):
        harness.require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        harness.require_chromium()


# --- the monitoring reports ---------------------------------------------------------------------------------


def _monitor(data_dir: Path, shop_factory) -> None:
    """The simulated shop trained and promoted, scored on the report days and H days before them (so the
    performance report has matured labels), and monitored by the four real report assets on each report day:
    the report index, its dashboard and the model reports, as `mlsys monitor` leaves them. The runs are
    kept in a Dagster instance beside the data (`dagster_home/`) for the UI to show."""
    home = data_dir.parent / "dagster_home"
    home.mkdir()
    # The project's instance settings (`make ui` uses them): without `telemetry: enabled: false` the UI
    # loads https://dagster.io/oss-telemetry.js.
    shutil.copy(Path(__file__).resolve().parents[1] / ".dagster" / "dagster.yaml", home / "dagster.yaml")
    with DagsterInstance.local_temp(str(home)) as instance, pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLSYS_PII_KEY", "test-pii-key")
        patch.setenv("MLSYS_REPORTS_URL", REPORTS_URL_AT_BUILD)  # where the UI's report links point
        shop = shop_factory(data_dir.parent, instance)
        shop.retrain()
        for back in (SHOP_HORIZON_DAYS, 0):
            first, last = (day - dt.timedelta(days=back) for day in (REPORT_DAYS[0], REPORT_DAYS[-1]))
            shop.materialize([customer_features, customer_predictions],
                             tags={ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
                                   ASSET_PARTITION_RANGE_END_TAG: last.isoformat()})
        for day in REPORT_DAYS:
            shop.materialize(REPORTS, partition_key=day.isoformat())


@pytest.fixture(scope="module")
def monitored_data(tmp_path_factory, request) -> Path:
    """The data directory `_monitor` leaves, built once per test session and only read afterwards: under
    pytest-xdist (`make test` runs `-n 2`) the workers share the session's temporary root, and the first
    that needs it builds it under a lock while the others wait."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    root = shared / "browser_monitored_shop"
    with open(shared / "browser_monitored_shop.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "complete").exists():
            shutil.rmtree(root, ignore_errors=True)  # what a failed build left
            root.mkdir()
            _monitor(root / "data", request.getfixturevalue("shop_factory"))
            (root / "complete").touch()
    return root / "data"


def _service_env(**settings: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLSYS_")}
    return {**env, "PYTHONUNBUFFERED": "1", **settings}


@pytest.fixture(scope="module")
def report_server(monitored_data: Path, tmp_path_factory) -> Iterator[Service]:
    """`mlsys reports serve` on the shop's data directory."""
    port = free_port()
    service = start_service(
        [MLSYS, "reports", "serve", "--port", str(port), "--data-dir", str(monitored_data)],
        f"http://127.0.0.1:{port}", tmp_path_factory.mktemp("browser_reports") / "reports_server.log",
        env=_service_env(),
    )
    try:
        yield service
    finally:
        service.stop()


def test_report_index_renders_offline_fits_the_window_and_links_every_report(browser: Browser,
                                                                             report_server: Service):
    with browser.visit(report_server.url + "/", ready="#dashboard") as visit:
        visit.assert_clean()
        assert "Monitoring reports" in visit.text
        # Opened, the collapsed details (e.g. a drift report's context scores) must fit too.
        visit.page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
        width = visit.page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= harness.VIEWPORT["width"], f"with every <details> open the index is {width} px wide"
    expected = {urljoin(report_server.url + "/", f"{kind}/{day}.html") for kind in KINDS for day in REPORT_DAYS}
    assert expected <= set(visit.links), sorted(expected - set(visit.links))


def test_dashboard_shows_production_gate_history_and_trends_with_every_day(browser: Browser,
                                                                           report_server: Service):
    with browser.visit(report_server.url + "/", ready="#dashboard svg.trend") as visit:
        visit.assert_clean()
        page = visit.page
        assert sorted(page.eval_on_selector_all("#dashboard table.production tr[data-target]",
                                                "rows => rows.map(r => r.dataset.target)")) == ["churn", "ltv"]
        assert page.locator("#dashboard table.gate-history tbody tr").count() >= 2  # one decision per target
        charts = page.eval_on_selector_all("#dashboard figure.chart", """figures => figures.map(f => ({
            id: f.id,
            box: (s => s ? [s.getBoundingClientRect().width, s.getBoundingClientRect().height] : null)(
                f.querySelector('svg.trend')),
            series: [...f.querySelectorAll('g.series')].map(g => ({
                name: g.dataset.series,
                points: [...g.querySelectorAll('circle.point')].filter(c => c.getBoundingClientRect().width > 0)
                    .map(c => Math.round(c.getBoundingClientRect().x)),
            })),
        }))""")
    by_id = {chart["id"]: chart for chart in charts}
    # Each report day is one point of the report trends; predictions were made on four days.
    per_day = {"trend-drift-share": len(REPORT_DAYS), "trend-matured-rmse": len(REPORT_DAYS),
               "trend-matured-auc": len(REPORT_DAYS), "trend-mean-spend": 2 * len(REPORT_DAYS),
               "trend-mean-churn": 2 * len(REPORT_DAYS)}
    assert set(per_day) <= set(by_id), sorted(by_id)
    for chart_id, days in per_day.items():
        chart = by_id[chart_id]
        assert chart["box"] and min(chart["box"]) > 100, f"{chart_id} is not drawn: {chart['box']}"
        assert chart["series"], f"{chart_id} has no series"
        for series in chart["series"]:
            assert len(set(series["points"])) == days, f"{chart_id} / {series['name']}: {series['points']}"


def test_every_report_page_renders_offline(browser: Browser, report_server: Service, monitored_data: Path):
    """Every page the index links and every HTML page in the reports folder: the Evidently reports
    (`<kind>/<day>.html`) and the model reports (`models/<target>/<version>.html`, which the dashboard links
    only for a version that serves, so they are also looked for on disk)."""
    with browser.visit(report_server.url + "/", ready="h1") as index:
        linked = {url for url in index.links if url.endswith(".html")}
    root = monitored_data / "reports"
    on_disk = {urljoin(report_server.url + "/", path.relative_to(root).as_posix())
               for path in root.rglob("*.html") if path.name != "index.html"}
    assert linked <= on_disk, sorted(linked - on_disk)
    evidently = {url for url in on_disk if url.rsplit("/", 2)[-2] in KINDS}
    assert evidently <= linked and len(evidently) == len(KINDS) * len(REPORT_DAYS), sorted(on_disk)
    assert any("/models/" in url for url in on_disk), sorted(on_disk)
    problems = {}
    for url in sorted(on_disk):
        ready = dict(ready=".mlsys-report-header", ready_function=EVIDENTLY_READY) if url in evidently else \
            dict(ready="h1")
        with browser.visit(url, **ready) as visit:
            if found := visit.problems():
                problems[url] = found
            assert visit.page.title(), url
    assert not problems, "\n".join(f"{url}:\n  " + "\n  ".join(found) for url, found in problems.items())


# --- the API's documentation --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_server(tmp_path_factory) -> Iterator[Service]:
    """`mlsys serve` on a data directory without a model: the documentation pages need none."""
    root = tmp_path_factory.mktemp("browser_api")
    (root / "data").mkdir()
    port = free_port()
    service = start_service(
        [MLSYS, "serve", "--port", str(port), "--data-dir", str(root / "data")], f"http://127.0.0.1:{port}",
        root / "api.log", env=_service_env(MLSYS_API_TOKEN=TOKEN), ready_path="/v1/health",
    )
    try:
        yield service
    finally:
        service.stop()


def test_swagger_ui_renders_offline(browser: Browser, api_server: Service):
    with browser.visit(api_server.url + "/docs", ready=".swagger-ui .info .title") as visit:
        visit.assert_clean()
        assert "mlsys prediction API" in visit.page.inner_text(".swagger-ui .info .title")
        assert visit.page.locator(".opblock").count() >= 5  # the routes were read from /openapi.json


def test_redoc_renders_offline(browser: Browser, api_server: Service):
    with browser.visit(api_server.url + "/redoc", ready=".api-info h1") as visit:
        visit.assert_clean()
        assert "mlsys prediction API" in visit.page.inner_text(".api-info h1")


# --- the Dagster UI -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dagster_ui(monitored_data: Path, tmp_path_factory) -> Iterator[Service]:
    """`dagster-webserver` on the instance that holds the monitored shop's runs."""
    port = free_port()
    service = start_service(
        [str(Path(sys.executable).with_name("dagster-webserver")), "-h", "127.0.0.1", "-p", str(port),
         "-m", "mlsys_assets.definitions"],
        f"http://127.0.0.1:{port}", tmp_path_factory.mktemp("browser_dagster") / "webserver.log",
        env=_service_env(DAGSTER_HOME=str(monitored_data.parent / "dagster_home"),
                         MLSYS_DATA_DIR=str(monitored_data), MLSYS_PARTITIONS_START=SHOP_CONFIG.start.isoformat()),
        ready_path="/server_info", timeout=180.0,
    )
    try:
        yield service
    finally:
        service.stop()


def test_dagster_ui_shows_the_model_evaluation_offline_and_its_report_links_open(
        browser: Browser, dagster_ui: Service, report_server: Service):
    ready = "() => ['Latest materialization', 'evaluation_id'].every(t => document.body.innerText.includes(t))"
    with browser.visit(dagster_ui.url + "/assets/ml/model_evaluation", ready_function=ready, settle_ms=1_500,
                       check_links=False) as visit:  # its own links are client-side routes
        visit.assert_clean()
        hrefs = visit.page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    # The metadata's report links (to MLSYS_REPORTS_URL when the asset ran) open on the report server.
    report_links = sorted({href for href in hrefs if href.startswith(REPORTS_URL_AT_BUILD + "/")})
    assert any("/models/" in href for href in report_links), hrefs
    for href in report_links:
        served = report_server.url + href[len(REPORTS_URL_AT_BUILD):]
        assert httpx.get(served, timeout=10).status_code == 200, f"{href} -> {served}"
