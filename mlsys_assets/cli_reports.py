"""`mlsys reports`: rebuild a report's HTML from the warehouse, serve data/reports/ over HTTP."""

from __future__ import annotations

from pathlib import Path

import click

from mlsys_assets.cli_common import data_dir_option, layout_of, warehouse_of
from mlsys_assets.settings import DEFAULT_REPORTS_PORT


@click.group()
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

    layout = layout_of(data_dir)
    with warehouse_of(layout).connect(read_only=True) as con:
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
        serve_reports(layout_of(data_dir).reports, host, port, echo=click.echo)
    except ReportsServerError as error:
        raise click.ClickException(str(error)) from error
