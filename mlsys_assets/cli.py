"""`mlsys`: the project's own command line (the Dagster CLI and UI remain the way to run assets)."""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from pathlib import Path

import click

from mlsys_assets.cli_common import (
    connect_reader_or_fail,
    data_dir_option,
    horizon_option,
    layout_of,
    run_data_dir_option,
    warehouse_of,
)
from mlsys_assets.cli_models import models, print_evaluation, print_registry
from mlsys_assets.cli_reports import reports
from mlsys_assets.simulation.regimes import REGIMES, regime_help
from mlsys_assets.storage import DataLayout, data_dir, use_data_dir


@click.group()
def main() -> None:
    """mlsys: daily customer LTV and churn forecasts on Dagster, DuckDB and CatBoost."""


main.add_command(models)
main.add_command(reports)


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

    from mlsys_assets.simulation.config import SimulationConfig
    from mlsys_assets.simulation.regimes import regime_config
    from mlsys_assets.simulation.shop import simulate as run_simulation

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
    summary = run_simulation(layout_of(data_dir).root, config)
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

    layout = layout_of(data_dir)
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
    print_evaluation(data_dir())
    print_registry(data_dir())


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
    with warehouse_of(layout).connect(read_only=True) as con:
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
        print_registry(data_dir())
    index = DataLayout(data_dir()).reports / "index.html"
    if index.exists():
        click.echo(f"\nReports: {index} (opens offline)")
    if not ok:
        sys.exit(1)


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
    _print_status(layout_of(data_dir).root)


@main.command()
@click.argument("query")
@data_dir_option
def sql(query: str, data_dir: str | None) -> None:
    """Run a read-only SQL query against the warehouse and print the result."""
    import duckdb

    layout = layout_of(data_dir)
    if not layout.warehouse.exists():
        raise click.ClickException(f"no warehouse at {layout.warehouse} yet: run `mlsys ingest` first (or `make demo`)")
    con = connect_reader_or_fail(layout.warehouse)
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
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Worker processes sharing the port: one per core (each loads the models and the online store).")
@data_dir_option
def serve(host: str, port: int, workers: int, data_dir: str | None) -> None:
    """Start the prediction API (uvicorn, --workers processes; in production behind a balancer, one per core)."""
    import uvicorn

    if not os.environ.get("MLSYS_API_TOKEN"):
        raise click.ClickException("set MLSYS_API_TOKEN: every prediction route requires it as a bearer token")
    use_data_dir(layout_of(data_dir).root)
    click.echo(f"mlsys API on http://{host}:{port} (docs: http://{host}:{port}/docs), serving {layout_of(data_dir).serving}"
               + (f", {workers} workers" if workers > 1 else ""))
    # uvloop and httptools (uvicorn[standard]) by name, not "auto": uvloop sets TCP_NODELAY on every connection.
    # On the asyncio loop uvicorn 0.54 with --workers > 1 leaves Nagle's algorithm on (uvicorn issue 3149): a
    # keep-alive response then waited ~44 ms for the client's delayed ACK. Measured with uvloop and 2 workers:
    # no such wait (bench/serving.py --workers 2; docs/benchmarks.md; mlsys_tests/test_serve_workers.py).
    uvicorn.run("mlsys_assets.api.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                loop="uvloop", http="httptools", log_level="info", access_log=False)


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
    con = connect_reader_or_fail(layout.warehouse)
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
