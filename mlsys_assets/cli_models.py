"""`mlsys models`: the registry's versions, promotion by hand and rollback; the tables `mlsys train` prints."""

from __future__ import annotations

from pathlib import Path

import click

from mlsys_assets.cli_common import data_dir_option, layout_of, warehouse_of
from mlsys_assets.storage import DataLayout


@click.group()
def models() -> None:
    """The model registry: list versions, promote one, roll back."""


@models.command(name="list")
@data_dir_option
def models_list(data_dir: str | None) -> None:
    """Every model version with its state and gate result."""
    print_registry(layout_of(data_dir).root)


@models.command()
@click.argument("version")
@click.option("--force", is_flag=True, help="Promote even though the version failed the gate.")
@data_dir_option
def promote(version: str, force: bool, data_dir: str | None) -> None:
    """Make VERSION the production model (human approval mode, or an override)."""
    from mlsys_assets.ml import registry

    layout = layout_of(data_dir)
    model = version.split("-", 1)[0]
    with warehouse_of(layout).connect() as con:
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
        refresh_dashboard(con, layout)
    click.echo(f"{version} is now the production {model} model; pointer: {layout.production_pointer}")


@models.command()
@click.option("--model", "model_names", type=click.Choice(["ltv", "churn", "all"]), default="all", show_default=True)
@data_dir_option
def rollback(model_names: str, data_dir: str | None) -> None:
    """Restore the previous production version."""
    from mlsys_assets.ml import registry

    layout = layout_of(data_dir)
    with warehouse_of(layout).connect() as con:
        registry.ensure_tables(con)
        for model in (["ltv", "churn"] if model_names == "all" else [model_names]):
            try:
                retired, restored = registry.rollback(con, layout.serving, model)
            except registry.RegistryError as exc:
                raise click.ClickException(str(exc)) from exc
            click.echo(f"{model}: {restored} is production again ({retired} retired)")
        refresh_dashboard(con, layout)


def refresh_dashboard(con, layout: DataLayout) -> None:
    from mlsys_assets.monitoring.report_index import refresh_existing_index
    from mlsys_assets.resources import MonitoringSettings

    refresh_existing_index(con, layout.reports, layout.serving, MonitoringSettings().drift_share_threshold)


def print_evaluation(root: Path) -> None:
    layout = DataLayout(root)
    with warehouse_of(layout).connect(read_only=True) as con:
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


def print_registry(root: Path) -> None:
    from mlsys_assets.ml import registry

    layout = DataLayout(root)
    with warehouse_of(layout).connect(read_only=True) as con:
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'ml' AND table_name = 'model_registry'").fetchone()[0]:
            click.echo("no model trained yet: run `mlsys train`")
            return
        versions = registry.list_versions(con)
    click.echo("\nModel registry (ml.model_registry):")
    click.echo(versions.to_string(index=False, max_colwidth=90))
