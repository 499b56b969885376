"""What every `mlsys` subcommand shares: the `--data-dir` and `--horizon` options, the data layout and the
warehouse they point at, a reader that fails with one line when a writer holds the file."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import click

from mlsys_assets.storage import DATA_DIR_SETTING, DataLayout, data_dir, use_data_dir

# Dagster flags APIs it may still change (backfill policies, pools); that is for developers, not CLI users.
warnings.filterwarnings("ignore", message=r".*(is currently in beta|is currently in preview|superseded).*")


def layout_of(data_dir_option: str | None) -> DataLayout:
    return DataLayout(Path(data_dir_option).resolve() if data_dir_option else data_dir())


DATA_DIR_HELP = f"Data directory (default: ${DATA_DIR_SETTING} or ./data)."
data_dir_option = click.option("--data-dir", envvar=DATA_DIR_SETTING, default=None, help=DATA_DIR_HELP)


def use_data_dir_option(context: click.Context, parameter: click.Parameter, value: str | None) -> None:
    if value:
        use_data_dir(Path(value))


# For the commands that run Dagster jobs: the definitions bind their resources to the data directory when
# they are first imported (inside the command), so the option only has to set it before that.
run_data_dir_option = click.option("--data-dir", envvar=DATA_DIR_SETTING, default=None, expose_value=False,
                                   is_eager=True, callback=use_data_dir_option, help=DATA_DIR_HELP)


def set_horizon_option(context: click.Context, parameter: click.Parameter, value: int | None) -> int | None:
    # Read by the definitions when a command first imports them: features, training and scoring must agree.
    if value is not None:
        os.environ["MLSYS_HORIZON_DAYS"] = str(value)
    return value


horizon_option = click.option(
    "--horizon", type=click.IntRange(min=1, max=730), default=None, callback=set_horizon_option, expose_value=True,
    help="Forecast horizon H in days (default: $MLSYS_HORIZON_DAYS or 90); use the same for features, train and predict.")


def warehouse_of(layout: DataLayout):
    from mlsys_assets.resources import Warehouse

    return Warehouse(path=str(layout.warehouse))


def connect_reader_or_fail(path: Path):
    """A read-only connection that waits a few seconds for a writer, then fails with one line naming it."""
    from mlsys_assets.recovery import WarehouseBusyError, connect_reader

    try:
        return connect_reader(path)
    except WarehouseBusyError as exc:
        raise click.ClickException(str(exc)) from exc
