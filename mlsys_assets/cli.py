"""`mlsys`: the project's own command line (the Dagster CLI and UI remain the way to run assets)."""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
import warnings
from pathlib import Path

import click

from mlsys_assets.settings import DEFAULT_REPORTS_PORT
from mlsys_assets.storage import DATA_DIR_SETTING, DataLayout, data_dir, use_data_dir


# Dagster flags APIs it may still change (backfill policies, pools); that is for developers, not CLI users.
warnings.filterwarnings("ignore", message=r".*(is currently in beta|is currently in preview|superseded).*")


def _layout(data_dir_option: str | None) -> DataLayout:
    return DataLayout(Path(data_dir_option).resolve() if data_dir_option else data_dir())


DATA_DIR_HELP = f"Data directory (default: ${DATA_DIR_SETTING} or ./data)."
data_dir_option = click.option("--data-dir", envvar=DATA_DIR_SETTING, default=None, help=DATA_DIR_HELP)


def _use_data_dir(context: click.Context, parameter: click.Parameter, value: str | None) -> None:
    if value:
        use_data_dir(Path(value))


# For the commands that run Dagster jobs: the definitions bind their resources to the data directory when
# they are first imported (inside the command), so the option only has to set it before that.
run_data_dir_option = click.option("--data-dir", envvar=DATA_DIR_SETTING, default=None, expose_value=False,
                                   is_eager=True, callback=_use_data_dir, help=DATA_DIR_HELP)


def _set_horizon(context: click.Context, parameter: click.Parameter, value: int | None) -> int | None:
    # Read by the definitions when a command first imports them: features, training and scoring must agree.
    if value is not None:
        os.environ["MLSYS_HORIZON_DAYS"] = str(value)
    return value


horizon_option = click.option(
    "--horizon", type=click.IntRange(min=1, max=730), default=None, callback=_set_horizon, expose_value=True,
    help="Forecast horizon H in days (default: $MLSYS_HORIZON_DAYS or 90); use the same for features, train and predict.")


@click.group()
def main() -> None:
    """mlsys: daily customer LTV and churn forecasts on Dagster, DuckDB and CatBoost."""


from mlsys_assets.simulate_regimes import REGIMES, regime_help  # noqa: E402  (the choices and help of simulate)


@main.command(epilog="\b\nRegimes (--regime NAME):\n" + regime_help())
@click.option("--regime", type=click.Choice(list(REGIMES)), default=None, metavar="NAME",
              help="A named kind of transaction log (below); the other options override its settings.")
@click.option("--customers", type=int, default=None,
              help="Number of customers acquired [default: 3000, or the regime's].")
@click.option("--days", type=int, default=None, help="Number of simulated days [default: 365, or the regime's].")
@click.option("--end-date", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Last day [default: yesterday, or the regime's fixed historic period].")
@click.option("--seed", default=7, show_default=True)
@click.option("--future-days", default=0, show_default=True,
              help="Also simulate this many days after the last day into simulation/future.parquet (never delivered).")
@click.option("--drift-from", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Day the drift starts.")
@click.option("--drift-kind", type=click.Choice(["channel", "price"]), default=None, help="[default: channel]")
@click.option("--dirty-share", type=float, default=None,
              help="Share of rows given realistic defects [default: 0, or the regime's].")
@click.option("--format", "file_format", type=click.Choice(["csv", "parquet"]), default=None, help="[default: csv]")
@data_dir_option
def simulate(
    regime, customers, days, end_date, seed, future_days, drift_from, drift_kind, dirty_share, file_format, data_dir
) -> None:
    """Generate a realistic shop: daily transaction files, a customers export and the ground truth."""
    import dataclasses

    from mlsys_assets.simulate import SimulationConfig, simulate as run_simulation
    from mlsys_assets.simulate_regimes import regime_config

    end = end_date.date() if end_date else None
    options = {"drift_from": drift_from.date() if drift_from else None, "drift_kind": drift_kind,
               "dirty_share": dirty_share, "file_format": file_format}
    try:
        if regime:
            config = regime_config(regime, customers=customers, seed=seed, end=end, future_days=future_days, days=days)
        else:
            end = end or dt.date.today() - dt.timedelta(days=1)
            start = end - dt.timedelta(days=(365 if days is None else days) - 1)
            customers = 3000 if customers is None else customers
            config = SimulationConfig(customers=customers, start=start, end=end, seed=seed, future_days=future_days)
        config = dataclasses.replace(config, **{name: value for name, value in options.items() if value is not None})
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    summary = run_simulation(_layout(data_dir).root, config)
    click.echo(
        f"Simulated {summary.customers:,} customers and {summary.transactions:,} transactions over "
        f"{summary.days} days ({config.start} … {config.end}), {summary.dirty_rows:,} dirty rows"
        + (f" (regime {regime})." if regime else ".")
    )
    if summary.export_path:
        click.echo(f"  export:        {summary.export_path} (no daily landing files)\n"
                   f"  mapping:       {summary.mapping_path}\n"
                   f"  load it with:  mlsys import {summary.export_path} --mapping {summary.mapping_path}")
    else:
        click.echo(f"  landing files: {summary.landing_dir}")
    click.echo(f"  ground truth:  {summary.ground_truth_path}")
    if summary.future_path:
        click.echo(f"  future:        {summary.future_path} ({summary.future_transactions:,} sales after {config.end}, "
                   f"{config.future_days} days, not delivered)")


@main.command(name="import")
@click.argument("export", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Column mapping YAML (docs/data-contract.md); default: the contract layout.")
@click.option("--replace", is_flag=True, help="Overwrite landing files that already exist for the same days.")
@data_dir_option
def import_(export: Path, mapping: Path | None, replace: bool, data_dir: str | None) -> None:
    """Split one historical transaction export into daily landing files."""
    from mlsys_assets.contract import MappingError, load_mapping
    from mlsys_assets.ingest.importer import ImportConflictError, import_transactions
    from mlsys_assets.ingest.reader import LandingFilesError

    layout = _layout(data_dir)
    try:
        fmt = load_mapping(mapping)["transactions"]
        summary = import_transactions(export, fmt, layout, replace=replace)
    except (MappingError, LandingFilesError, ImportConflictError) as exc:
        raise click.ClickException(str(exc)) from exc
    excluded = (f"{summary.excluded_rows:,} row(s) excluded by the mapping ({fmt.exclude_text()})"
                if summary.excluded_rows else "")
    if not summary.days_written:
        raise click.ClickException(f"{export}: no row with a readable date{'; ' + excluded if excluded else ''}; "
                                   f"nothing was written (see {summary.rejected_file})")
    click.echo(
        f"Imported {summary.rows:,} rows from {export} into {len(summary.days_written)} daily files "
        f"({summary.days_written[0]} … {summary.days_written[-1]}) in {layout.transactions_landing}."
    )
    if excluded:
        click.echo(f"{excluded}: listed in {summary.rejected_file}")
    if summary.rejected_rows:
        click.echo(f"{summary.rejected_rows:,} row(s) had no readable date or line structure: see {summary.rejected_file}")
    click.echo("Ingest them with `mlsys ingest` (or let the landing sensor pick them up under `make ui`).")


@main.command()
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First delivery day.")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last delivery day.")
@run_data_dir_option
def ingest(first, last) -> None:
    """Ingest the landing zone through Dagster: customers, then one range run per run of consecutive days."""
    from mlsys_assets.runs import ingest_landing_zone

    result = ingest_landing_zone(first.date() if first else None, last.date() if last else None, echo=click.echo)
    if DataLayout(data_dir()).warehouse.exists():  # else nothing was ingested, and the runs said why
        _print_status(data_dir())
    if not result:
        sys.exit(1)


@main.command()
@horizon_option
@run_data_dir_option
def features(horizon: int | None) -> None:
    """Refresh customer_daily for every loaded day and the feature snapshot of the newest day."""
    from mlsys_assets.runs import refresh_features

    if not refresh_features(echo=click.echo):
        sys.exit(1)


@main.command()
@click.option("--min-history-days", type=click.IntRange(min=1), default=None,
              help="History before the first as-of day of the training grid [default: 90].")
@click.option("--grid-step-days", type=click.IntRange(min=1), default=None,
              help="Days between as-of days of the training grid [default: 14].")
@click.option("--backtest-cutoffs", type=click.IntRange(min=1), default=None,
              help="At most this many backtest cutoffs, spaced by the horizon [default: 4].")
@horizon_option
@run_data_dir_option
def train(min_history_days: int | None, grid_step_days: int | None, backtest_cutoffs: int | None, horizon: int | None) -> None:
    """Run weekly_retraining now: examples, backtests of both models, evaluation, gate; print the metrics.

    A short history trains with a shorter grid: e.g. one year of orders with
    `mlsys train --min-history-days 30 --grid-step-days 7`."""
    from mlsys_assets.runs import retrain

    options = {"min_history_days": min_history_days, "grid_step_days": grid_step_days,
               "backtest_cutoffs": backtest_cutoffs}
    if not retrain(echo=click.echo, examples_config={k: v for k, v in options.items() if v is not None}):
        sys.exit(1)
    _print_evaluation(data_dir())
    _print_registry(data_dir())


@main.command()
@horizon_option
@click.option("--days", type=click.IntRange(min=1), default=1, show_default=True,
              help="Score the N days up to the newest snapshot (one range run, snapshots built as needed).")
@run_data_dir_option
def predict(horizon: int | None, days: int) -> None:
    """Score every customer as of the newest snapshot (or of the last --days days), write the action list,
    export the online store."""
    from mlsys_assets.runs import score_recent_days

    newest = score_recent_days(echo=click.echo, days=days)
    if newest is None:
        sys.exit(1)
    layout = DataLayout(data_dir())
    with _warehouse(layout).connect(read_only=True) as con:
        rows, targets = con.execute(
            "SELECT (SELECT count(*) FROM predictions.customer_predictions WHERE as_of = $1), "
            "(SELECT count(*) FROM predictions.retention_targets WHERE as_of = $1)", [newest]
        ).fetchone()
    click.echo(
        f"\npredictions.customer_predictions: {rows:,} customers scored as of {newest}\n"
        f"predictions.retention_targets:    {targets:,} customers to contact; CSV: "
        f"{layout.exports / 'retention_targets' / f'{newest}.csv'}\n"
        f"online store for the API:         {layout.online_store}"
    )


@main.command()
@click.option("--days", type=click.IntRange(min=1), default=1, show_default=True,
              help="Report on the scored days among the N days up to the newest prediction day (one run per day).")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --days: every K-th day, counted back from the newest (a day's four reports take ~7 s).")
@run_data_dir_option
def monitor(days: int, every: int) -> None:
    """Run the Evidently reports for the newest prediction day (or several: --days, --every) and react to any
    alert like the sensor does."""
    from mlsys_assets.runs import monitor_recent_days

    ok, retrained = monitor_recent_days(echo=click.echo, days=days, every=every)
    if retrained:
        _print_registry(data_dir())
    index = DataLayout(data_dir()).reports / "index.html"
    if index.exists():
        click.echo(f"\nReports: {index} (opens offline)")
    if not ok:
        sys.exit(1)


@main.group()
def reports() -> None:
    """Monitoring reports: rebuild one from the warehouse, serve the folder over HTTP."""


@reports.command(name="render")
@click.argument("report_id")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the HTML (default: the report's own path under data/reports).")
@data_dir_option
def reports_render(report_id: str, out: Path | None, data_dir: str | None) -> None:
    """Rebuild a report's HTML from its snapshot in monitoring.reports (also for pruned reports)."""
    from mlsys_assets.monitoring.evidently_reports import render_html

    layout = _layout(data_dir)
    with _warehouse(layout).connect(read_only=True) as con:
        row = con.execute("SELECT snapshot_json, html_path FROM monitoring.reports WHERE report_id = ?",
                          [report_id]).fetchone()
    if row is None:
        raise click.ClickException(f"no report {report_id!r} in monitoring.reports")
    target = render_html(row[0], out or Path(row[1]))
    click.echo(f"wrote {target}")


@reports.command(name="serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=DEFAULT_REPORTS_PORT, show_default=True)
@data_dir_option
def reports_serve(host: str, port: int, data_dir: str | None) -> None:
    """Serve data/reports/ over HTTP, read-only, for the report links in the Dagster UI.

    `make ui` starts it beside the UI; MLSYS_REPORTS_URL (default http://127.0.0.1:3001) is where the links
    point."""
    from mlsys_assets.reports_server import ReportsServerError, serve as serve_reports

    try:
        serve_reports(_layout(data_dir).reports, host, port, echo=click.echo)
    except ReportsServerError as error:
        raise click.ClickException(str(error)) from error


@main.group()
def models() -> None:
    """The model registry: list versions, promote one, roll back."""


@models.command(name="list")
@data_dir_option
def models_list(data_dir: str | None) -> None:
    """Every model version with its state and gate result."""
    _print_registry(_layout(data_dir).root)


@models.command()
@click.argument("version")
@click.option("--force", is_flag=True, help="Promote even though the version failed the gate.")
@data_dir_option
def promote(version: str, force: bool, data_dir: str | None) -> None:
    """Make VERSION the production model (human approval mode, or an override)."""
    from mlsys_assets.ml import registry

    layout = _layout(data_dir)
    model = version.split("-", 1)[0]
    with _warehouse(layout).connect() as con:
        registry.ensure_tables(con)
        row = con.execute("SELECT gate_passed, gate_reason FROM ml.model_registry WHERE version = ?", [version]).fetchone()
        if row is None:
            raise click.ClickException(f"no version {version!r} in ml.model_registry (see `mlsys models list`)")
        if not row[0] and not force:
            raise click.ClickException(f"{version} did not pass the gate ({row[1]}); use --force to promote anyway")
        try:
            registry.promote(con, layout.serving, model, version, "promoted by hand" + (" (forced)" if force else ""))
        except registry.RegistryError as exc:
            raise click.ClickException(str(exc)) from exc
        _refresh_dashboard(con, layout)
    click.echo(f"{version} is now the production {model} model; pointer: {layout.production_pointer}")


@models.command()
@click.option("--model", "model_names", type=click.Choice(["ltv", "churn", "all"]), default="all", show_default=True)
@data_dir_option
def rollback(model_names: str, data_dir: str | None) -> None:
    """Restore the previous production version."""
    from mlsys_assets.ml import registry

    layout = _layout(data_dir)
    with _warehouse(layout).connect() as con:
        registry.ensure_tables(con)
        for model in (["ltv", "churn"] if model_names == "all" else [model_names]):
            try:
                retired, restored = registry.rollback(con, layout.serving, model)
            except registry.RegistryError as exc:
                raise click.ClickException(str(exc)) from exc
            click.echo(f"{model}: {restored} is production again ({retired} retired)")
        _refresh_dashboard(con, layout)


def _refresh_dashboard(con, layout: DataLayout) -> None:
    from mlsys_assets.monitoring.report_index import refresh_existing_index
    from mlsys_assets.resources import MonitoringSettings

    refresh_existing_index(con, layout.reports, layout.serving, MonitoringSettings().drift_share_threshold)


def _warehouse(layout: DataLayout):
    from mlsys_assets.resources import Warehouse

    return Warehouse(path=str(layout.warehouse))


def _print_evaluation(root: Path) -> None:
    layout = DataLayout(root)
    with _warehouse(layout).connect(read_only=True) as con:
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'ml' AND table_name = 'model_evaluation'").fetchone()[0]:
            return
        latest = con.execute("SELECT evaluation_id FROM ml.model_evaluation ORDER BY evaluated_at DESC LIMIT 1").fetchone()
        if latest is None:
            return
        frame = con.execute(
            "SELECT model, metric, scorer, value FROM ml.model_evaluation WHERE evaluation_id = ? AND cutoff IS NULL "
            "AND metric <> 'abs_bias_pct'", [latest[0]]).df()
        cutoffs = [row[0] for row in con.execute(
            "SELECT DISTINCT cutoff FROM ml.model_evaluation WHERE evaluation_id = ? AND cutoff IS NOT NULL ORDER BY 1",
            [latest[0]]).fetchall()]
    table = frame.set_index(["model", "metric", "scorer"])["value"].unstack("scorer")
    order = [s for s in ("candidate", "production", "naive", "historical", "bgnbd", "oracle") if s in table.columns]
    click.echo(f"\nBacktest, mean over {len(cutoffs)} cutoff(s) ({', '.join(map(str, cutoffs))}); "
               f"ml.model_evaluation, evaluation {latest[0][:8]}:")
    click.echo(table[order].round(4).to_string())


def _print_registry(root: Path) -> None:
    from mlsys_assets.ml import registry

    layout = DataLayout(root)
    with _warehouse(layout).connect(read_only=True) as con:
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'ml' AND table_name = 'model_registry'").fetchone()[0]:
            click.echo("no model trained yet: run `mlsys train`")
            return
        versions = registry.list_versions(con)
    click.echo("\nModel registry (ml.model_registry):")
    click.echo(versions.to_string(index=False, max_colwidth=90))


def _connect_reader(path: Path):
    """A read-only connection that waits a few seconds for a writer, then fails with one line naming it."""
    from mlsys_assets.recovery import WarehouseBusyError, connect_reader

    try:
        return connect_reader(path)
    except WarehouseBusyError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@run_data_dir_option
def doctor() -> None:
    """Free the warehouse from runs whose process died (kill -9, a crash): mark them failed, free their pool slot."""
    from mlsys_assets.recovery import pool_holders, recover_dead_runs
    from mlsys_assets.runs import instance

    with instance() as dagster_instance:
        recovered = recover_dead_runs(dagster_instance)
        holders = pool_holders(dagster_instance)
    for line in recovered:
        click.echo(f"recovered: {line}")
    for line in holders:
        click.echo(line)
    if not recovered:
        click.echo("all is well: no dead run holds or waits for the warehouse pool")


@main.command()
@data_dir_option
def status(data_dir: str | None) -> None:
    """What the landing zone holds and what the warehouse has loaded."""
    _print_status(_layout(data_dir).root)


@main.command()
@click.argument("query")
@data_dir_option
def sql(query: str, data_dir: str | None) -> None:
    """Run a read-only SQL query against the warehouse and print the result."""
    import duckdb

    layout = _layout(data_dir)
    if not layout.warehouse.exists():
        raise click.ClickException(f"no warehouse at {layout.warehouse} yet: run `mlsys ingest` first (or `make demo`)")
    con = _connect_reader(layout.warehouse)
    try:
        frame = con.execute(query).df()
    except duckdb.Error as exc:
        message = str(exc).splitlines()[0]
        # A table not built yet: name the command that builds its schema.
        missing = re.search(r"Table with name (\w+) does not exist", message)
        schema = re.search(rf"\b(\w+)\.{missing.group(1)}\b", query, re.IGNORECASE) if missing else None
        command = {"raw": "ingest", "features": "features", "ml": "train", "predictions": "predict",
                   "monitoring": "monitor"}.get(schema.group(1).lower() if schema else "")
        raise click.ClickException(message.rstrip("!") + (f": run `mlsys {command}` first" if command else "")) from exc
    finally:
        con.close()
    click.echo(frame.to_string(index=False, max_rows=50))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@data_dir_option
def serve(host: str, port: int, data_dir: str | None) -> None:
    """Start the prediction API (one uvicorn worker; scale out with more processes behind a balancer)."""
    import uvicorn

    if not os.environ.get("MLSYS_API_TOKEN"):
        raise click.ClickException("set MLSYS_API_TOKEN: every prediction route requires it as a bearer token")
    use_data_dir(_layout(data_dir).root)
    click.echo(f"mlsys API on http://{host}:{port} (docs: http://{host}:{port}/docs), serving {_layout(data_dir).serving}")
    # One worker per process: with --workers > 1 uvicorn 0.54 on the asyncio loop leaves Nagle's algorithm
    # on (~40 ms per keep-alive response, uvicorn issue 3149; measured in docs/benchmarks.md). uvloop, which
    # uvicorn[standard] brings and uvicorn picks by default, does not show it, but one worker per process
    # avoids the question; more throughput = more processes behind a balancer.
    uvicorn.run("mlsys_assets.api.app:app_from_env", factory=True, host=host, port=port, workers=1,
                log_level="info", access_log=False)


def _print_status(root: Path) -> None:
    from mlsys_assets.resources import LandingZone

    layout = DataLayout(root)
    landing = LandingZone(data_dir=str(root))
    days = sorted(landing.transaction_files())
    click.echo(f"\nLanding zone {layout.landing}")
    click.echo(
        f"  transaction files: {len(days):,}"
        + (f" ({days[0]} … {days[-1]})" if days else "")
        + f"; customer files: {len(landing.customer_files())}"
    )
    refused = {**{f"transactions/{name}": why for name, why in landing.transaction_refusals().items()},
               **{f"customers/{name}": why for name, why in landing.customer_refusals().items()}}
    if refused:
        click.echo(f"  not ingested: {len(refused):,} landing file(s)")
        for name, why in refused.items():
            click.echo(f"      {name}: {why}")
    if not layout.warehouse.exists():
        hint = ("run `mlsys ingest` first" if days else
                "run `mlsys import FILE` first (or drop daily files into the landing zone), then `mlsys ingest`")
        click.echo(f"Warehouse {layout.warehouse}: not created yet: {hint}")
        return
    con = _connect_reader(layout.warehouse)
    try:
        tables = {f"{s}.{t}" for s, t in con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()}
        click.echo(f"Warehouse {layout.warehouse}")
        if "raw.transactions" in tables:
            rows, partitions, first, last, customers = con.execute(
                "SELECT count(*), count(DISTINCT delivery_date), min(delivery_date), max(delivery_date), "
                "count(DISTINCT customer_id) FROM raw.transactions"
            ).fetchone()
            click.echo(
                f"  raw.transactions  {rows:>10,} rows loaded, {partitions:,} delivery days"
                + (f" ({first} … {last})" if rows else "")
                + f", {customers:,} customers"
            )
        if "raw.customers" in tables:
            click.echo(f"  raw.customers     {con.execute('SELECT count(*) FROM raw.customers').fetchone()[0]:>10,} rows loaded")
        if "raw.quarantine" in tables:
            quarantined = con.execute(
                "SELECT feed, reason, count(*) FROM raw.quarantine GROUP BY ALL ORDER BY 1, 3 DESC"
            ).fetchall()
            click.echo(f"  raw.quarantine    {sum(r[2] for r in quarantined):>10,} rows quarantined")
            for feed, reason, count in quarantined:
                click.echo(f"      {feed:<13} {reason:<18} {count:>7,}")
    finally:
        con.close()
    click.echo("Query it: mlsys sql \"SELECT * FROM raw.quarantine LIMIT 10\"")
