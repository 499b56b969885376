"""Does what serves beat BG/NBD + Gamma-Gamma on every kind of transaction log, against the true future?

    .venv/bin/python bench/regimes.py [--regime NAME ...] [--customers N] [--horizon 90] [--seed 7]
                                      [--end-date YYYY-MM-DD] [--keep DIR] [--quick] [--out PREFIX]

Per regime (default: every one in mlsys_assets.simulation.regimes.REGIMES), in a fresh data directory with
its own Dagster instance, the documented commands run as a user runs them, each a subprocess of
`.venv/bin/mlsys` with only MLSYS_DATA_DIR, DAGSTER_HOME and MLSYS_PII_KEY set (README: "Settings from
the environment"), timed, with their output in one log per regime:

  dagster instance concurrency set warehouse 1        (the Makefile's `pool`, once per instance)
  mlsys simulate --regime NAME --future-days H --data-dir D [--customers N]
  mlsys import D/simulation/export.txt --mapping D/simulation/mapping.yaml --data-dir D   (export layouts)
  D/landing/mapping.yaml excluding status `cancelled`       (daily files with a status column, as
                                                            docs/data-contract.md tells a user to)
  mlsys ingest; mlsys features; mlsys train; mlsys predict

A failing command stops the regime with the tail of its log. Then the production forecasts of the
newest as-of day A (predictions.customer_predictions) are scored against the simulator's true future
(simulation/future.parquet, never delivered) over (A, A + H], per predicted customer: actual spend = the
sum of its future sales in the window, churned = no future sale in the window. Beside them, on the same
customers and window:
  bgnbd   BG/NBD + Gamma-Gamma from the snapshot of day A (btyd_expected_spend / btyd_p_no_purchase;
          NaN, no fit possible, is spend 0 / P(no purchase) 1, as the platform's classic forecast);
  naive   spend_90 * H / 90; churn = the share churned among ml.training_examples' train rows with /
          without a purchase in the last 90 days (no naive churn without that table);
  oracle  mlsys_assets.simulation.oracle.oracle_expectations: the true rates, the best any model could do.

Acceptance per regime (equality within TOLERANCE: when BG/NBD serves, the numbers are identical):
  LTV:   served RMSE <= BG/NBD's, top-10% capture >= and Gini >= BG/NBD's,
         |served bias| <= 10% or <= |BG/NBD's bias|;
  churn: served ROC-AUC >= and Brier <= BG/NBD's.
Results: a markdown report on stdout and in <PREFIX>.md, all numbers in <PREFIX>.json (PREFIX defaults
to docs/bench/regimes, docs/bench/regimes_quick with --quick). Work directories live under a temporary
directory, removed after a regime succeeds unless --keep DIR; a failed regime's directory is kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
RESULTS_DIR = REPO / "docs" / "bench"
sys.path.insert(0, str(REPO))

from mlsys_assets.ml.metrics import HIGHER_IS_BETTER, churn_metrics, spend_metrics  # noqa: E402
from mlsys_assets.simulation.oracle import oracle_expectations  # noqa: E402
from mlsys_assets.simulation.regimes import REGIMES  # noqa: E402
from shop_directory import ShopDirectory  # noqa: E402  (bench/, this script's folder)

HORIZON_DAYS = 90  # the platform's default horizon (the `forecast` resource)
QUICK_CUSTOMERS = 1200
TOLERANCE = 1e-9
MAX_ABS_BIAS_PCT = 10.0
PII_KEY = "bench-key"
# What a user sets (README, "Settings from the environment"); every other MLSYS_*/DAGSTER_* is dropped.
DOCUMENTED_SETTINGS = ("MLSYS_DATA_DIR", "MLSYS_PII_KEY", "DAGSTER_HOME")
STAGES = ("pool", "simulate", "import", "ingest", "features", "train", "predict")
SCORERS = ("served", "bgnbd", "naive", "oracle")
CRITERIA = ("ltv_rmse", "ltv_top10", "ltv_gini", "ltv_bias", "churn_auc", "churn_brier")
TRACEBACK = "Traceback (most recent call last)"


class CommandFailed(RuntimeError):
    """A command of the pipeline exited non-zero; the message ends with the tail of its log."""


# --- running the commands ---------------------------------------------------------------------------------


@dataclass
class Shop(ShopDirectory):
    """One regime's data directory, Dagster instance and command log."""

    regime: str = ""

    @property
    def simulation(self) -> Path:
        return self.data / "simulation"

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MLSYS_", "DAGSTER_"))}
        return self.environment(base, MLSYS_PII_KEY=PII_KEY)


def log_tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def run_command(shop: Shop, args: list[str]) -> tuple[float, str]:
    """Run one command with its output appended to the shop's log: (wall seconds, its output)."""
    with shop.log.open("a") as out:
        out.write(f"\n$ {' '.join(args)}\n")
        out.flush()
        start = out.tell()
        began = time.perf_counter()
        code = subprocess.run(args, env=shop.env(), stdout=out, stderr=subprocess.STDOUT, cwd=REPO).returncode
        seconds = time.perf_counter() - began
    with shop.log.open(errors="replace") as log:
        log.seek(start)
        output = log.read()
    if code != 0:
        raise CommandFailed(f"[{shop.regime}] {' '.join(args)} failed (exit {code}) after {seconds:.1f} s; "
                            f"end of {shop.log}:\n{log_tail(shop.log)}")
    return seconds, output


def prepare(shop: Shop) -> None:
    """A fresh data directory and Dagster instance with the project's dagster.yaml."""
    shop.dagster_home.mkdir(parents=True)
    shop.data.mkdir(parents=True)
    shutil.copy(REPO / ".dagster" / "dagster.yaml", shop.dagster_home / "dagster.yaml")


def pipeline_commands(shop: Shop, customers: int | None, horizon: int, seed: int,
                      end: dt.date | None = None) -> list[tuple[str, list[str]]]:
    """The commands before import, as a user types them (import depends on what simulate wrote)."""
    mlsys = str(BIN / "mlsys")
    simulate = [mlsys, "simulate", "--regime", shop.regime, "--future-days", str(horizon), "--seed", str(seed),
                "--data-dir", str(shop.data)] + ([] if customers is None else ["--customers", str(customers)]) \
        + ([] if end is None else ["--end-date", end.isoformat()])
    return [("pool", [str(BIN / "dagster"), "instance", "concurrency", "set", "warehouse", "1"]),
            ("simulate", simulate)]


def write_landing_mapping(shop: Shop) -> Path | None:
    """What a user does with daily files whose `status` column marks cancelled orders (docs/data-contract.md,
    "Excluding rows"): a landing/mapping.yaml that excludes them. None when the files have no such column."""
    files = sorted((shop.data / "landing" / "transactions").glob("*.csv"))
    if not files:
        return None
    with files[0].open() as first:
        if "status" not in first.readline().strip().split(","):
            return None
    mapping = shop.data / "landing" / "mapping.yaml"
    text = "transactions:\n  exclude:\n    status: [cancelled]\n"
    mapping.write_text(text)
    with shop.log.open("a") as out:
        out.write(f"\n$ cat > {mapping}  # the daily files have a status column\n{text}")
    return mapping


def warning_lines(output: str) -> list[str]:
    """Python warnings a command printed (the lines naming a *Warning category)."""
    return [line.strip() for line in output.splitlines() if "Warning:" in line and not line.startswith(" ")]


def run_pipeline(shop: Shop, customers: int | None, horizon: int, seed: int, run: dict,
                 end: dt.date | None = None) -> None:
    """Every stage, timed, into run: "seconds" per stage, "tracebacks" (stages whose output shows one) and
    "warnings" (stage: lines); filled as the stages go, so a failure keeps what ran before it."""
    mlsys = str(BIN / "mlsys")
    run.update(seconds={}, tracebacks=[], warnings={})

    def stage(name: str, args: list[str]) -> None:
        run["seconds"][name], output = run_command(shop, args)
        if TRACEBACK in output:
            run["tracebacks"].append(name)
        if warning_lines(output):
            run["warnings"][name] = sorted(set(warning_lines(output)))

    for name, args in pipeline_commands(shop, customers, horizon, seed, end):
        stage(name, args)
    if write_landing_mapping(shop):
        run["landing_mapping"] = "transactions.exclude: status [cancelled]"
    export, mapping = shop.simulation / "export.txt", shop.simulation / "mapping.yaml"
    if export.exists():
        stage("import", [mlsys, "import", str(export), "--mapping", str(mapping), "--data-dir", str(shop.data)])
    for name in ("ingest", "features", "train", "predict"):
        stage(name, [mlsys, name])


# --- what to score ------------------------------------------------------------------------------------------


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    query = "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?"
    return bool(con.execute(query, [schema, table]).fetchone()[0])


def naive_churn_rates(con: duckdb.DuckDBPyConnection) -> tuple[float, float] | None:
    """Share churned among training rows with / without a purchase in the last 90 days, or None."""
    if not _table_exists(con, "ml", "training_examples"):
        return None
    overall, active, inactive = con.execute(
        "SELECT avg(churned), avg(churned) FILTER (WHERE tx_90 > 0), avg(churned) FILTER (WHERE tx_90 = 0) "
        "FROM ml.training_examples WHERE split = 'train'").fetchone()
    if overall is None:
        return None
    return (overall if active is None else active), (overall if inactive is None else inactive)


def production_forecasts(warehouse: Path) -> tuple[pd.DataFrame, tuple[float, float] | None]:
    """The newest day's predictions joined with that day's snapshot columns, and the naive churn rates."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        frame = con.execute(
            "WITH newest AS (SELECT max(as_of) AS as_of FROM predictions.customer_predictions) "
            "SELECT p.as_of, p.customer_id, p.predicted_spend, p.churn_probability, p.horizon_days, "
            "       p.ltv_version, p.churn_version, f.btyd_expected_spend, f.btyd_p_no_purchase, "
            "       f.spend_90, f.tx_90 "
            "FROM predictions.customer_predictions p JOIN newest USING (as_of) "
            "LEFT JOIN features.customer_features f ON f.as_of = p.as_of AND f.customer_id = p.customer_id "
            "ORDER BY p.customer_id").df()
        rates = naive_churn_rates(con)
    if frame.empty:
        raise ValueError(f"{warehouse}: predictions.customer_predictions is empty")
    if frame["spend_90"].isna().any():
        raise ValueError(f"{frame['spend_90'].isna().sum()} predicted customers have no snapshot row of the same day")
    return frame, rates


def actual_outcomes(customers: pd.Series, future: pd.DataFrame, as_of: dt.date, horizon: int) -> pd.DataFrame:
    """Spend and churn of each customer in (as_of, as_of + horizon] from the simulator's future sales."""
    day = pd.to_datetime(future["event_date"]).dt.date
    window = future[(day > as_of) & (day <= as_of + dt.timedelta(days=horizon))]
    per_customer = window.groupby("customer_id")["amount"].agg(["sum", "size"])
    matched = per_customer.reindex(customers.to_numpy())
    return pd.DataFrame({"actual_spend": matched["sum"].fillna(0.0).to_numpy(),
                         "churned": matched["size"].isna().to_numpy().astype(int)})


def scorer_forecasts(frame: pd.DataFrame, rates, oracle: pd.DataFrame, horizon: int) -> dict[str, dict]:
    """{scorer: {"ltv": spend, "churn": probability or None}} on the rows of frame."""
    truth = oracle.set_index("customer_id").reindex(frame["customer_id"].to_numpy())
    naive_churn = None if rates is None else np.where(frame["tx_90"].to_numpy() > 0, rates[0], rates[1])
    return {
        "served": {"ltv": frame["predicted_spend"].to_numpy(float),
                   "churn": frame["churn_probability"].to_numpy(float)},
        "bgnbd": {"ltv": frame["btyd_expected_spend"].fillna(0.0).to_numpy(float),
                  "churn": frame["btyd_p_no_purchase"].fillna(1.0).to_numpy(float)},
        "naive": {"ltv": frame["spend_90"].to_numpy(float) * horizon / 90, "churn": naive_churn},
        "oracle": {"ltv": truth["expected_spend"].fillna(0.0).to_numpy(),
                   "churn": truth["p_no_purchase"].fillna(1.0).to_numpy()},
    }


# --- scoring and acceptance ----------------------------------------------------------------------------------


def score(forecasts: dict[str, dict], outcomes: pd.DataFrame) -> dict[str, dict]:
    """{scorer: {"ltv": spend_metrics, "churn": churn_metrics or None}}."""
    spend, churned = outcomes["actual_spend"].to_numpy(), outcomes["churned"].to_numpy()
    return {name: {"ltv": spend_metrics(spend, values["ltv"]),
                   "churn": None if values["churn"] is None else churn_metrics(churned, values["churn"])}
            for name, values in forecasts.items()}


def _at_least(value: float, reference: float) -> bool | None:
    """value >= reference within TOLERANCE; None when either is NaN (nothing to compare)."""
    if math.isnan(value) or math.isnan(reference):
        return None if math.isnan(reference) else False
    return value >= reference - TOLERANCE


def acceptance(metrics: dict[str, dict]) -> dict[str, bool | None]:
    """The criteria of the module docstring: True pass, False fail, None not measurable (e.g. all churned)."""
    ltv, ltv_ref = metrics["served"]["ltv"], metrics["bgnbd"]["ltv"]
    churn, churn_ref = metrics["served"]["churn"], metrics["bgnbd"]["churn"]
    bias_ok = _at_least(MAX_ABS_BIAS_PCT, ltv["abs_bias_pct"])
    return {
        "ltv_rmse": _at_least(-ltv["rmse"], -ltv_ref["rmse"]),
        "ltv_top10": _at_least(ltv["top10_capture"], ltv_ref["top10_capture"]),
        "ltv_gini": _at_least(ltv["gini"], ltv_ref["gini"]),
        "ltv_bias": bias_ok or _at_least(-ltv["abs_bias_pct"], -ltv_ref["abs_bias_pct"]),
        "churn_auc": _at_least(churn["roc_auc"], churn_ref["roc_auc"]),
        "churn_brier": _at_least(-churn["brier"], -churn_ref["brier"]),
    }


def passed(criteria: dict[str, bool | None]) -> bool:
    return all(ok is not False for ok in criteria.values())


def served_models(frame: pd.DataFrame) -> dict[str, dict]:
    """Per target, the version(s) in the predictions and whether BG/NBD (a -btyd- version) or CatBoost serves."""
    served = {}
    for target in ("ltv", "churn"):
        versions = sorted(frame[f"{target}_version"].unique())
        kinds = {"btyd" if "-btyd-" in version else "catboost" for version in versions}
        served[target] = {"versions": versions, "kind": kinds.pop() if len(kinds) == 1 else "mixed"}
    return served


def catboost_margins(metrics: dict[str, dict], served: dict[str, dict]) -> dict[str, dict]:
    """For each target CatBoost serves: per metric, served minus BG/NBD, and the gain (> 0: served is better)."""
    margins = {}
    for target, info in served.items():
        if info["kind"] != "catboost":
            continue
        mine, theirs = metrics["served"][target], metrics["bgnbd"][target]
        margins[target] = {name: {"difference": mine[name] - theirs[name],
                                  "gain": HIGHER_IS_BETTER[name] * (mine[name] - theirs[name])}
                           for name in mine if name != "bias_pct"}
    return margins


# --- one regime ------------------------------------------------------------------------------------------------


def evaluate(shop: Shop, horizon: int) -> dict:
    """Score the newest day's production forecasts and the baselines against the true future."""
    frame, rates = production_forecasts(shop.data / "warehouse.duckdb")
    as_of = frame["as_of"].iloc[0].date() if hasattr(frame["as_of"].iloc[0], "date") else frame["as_of"].iloc[0]
    meta = json.loads((shop.simulation / "meta.json").read_text())
    end = dt.date.fromisoformat(meta["config"]["end"])
    platform_horizon = int(frame["horizon_days"].iloc[0])
    if platform_horizon != horizon or as_of > end:
        raise ValueError(f"[{shop.regime}] predictions as of {as_of} for {platform_horizon} days cannot be scored "
                         f"against the future after {end} over {horizon} days")
    future = pd.read_parquet(shop.simulation / "future.parquet")
    oracle = oracle_expectations(pd.read_parquet(shop.simulation / "ground_truth.parquet"), as_of, horizon)
    outcomes = actual_outcomes(frame["customer_id"], future, as_of, horizon)
    metrics = score(scorer_forecasts(frame, rates, oracle, horizon), outcomes)
    served = served_models(frame)
    criteria = acceptance(metrics)
    return {
        "as_of": as_of.isoformat(), "simulated_end": end.isoformat(), "horizon_days": horizon,
        "history_days": (as_of - dt.date.fromisoformat(meta["config"]["start"])).days + 1,
        "simulated_customers": meta["counts"]["customers"], "scored_customers": len(frame),
        "actual_spend": float(outcomes["actual_spend"].sum()), "churn_rate": float(outcomes["churned"].mean()),
        "served": served, "metrics": metrics, "acceptance": criteria, "passed": passed(criteria),
        "catboost_margins": catboost_margins(metrics, served),
    }


class RegimeFailed(RuntimeError):
    """A regime's run or scoring failed; .result holds what it measured until then."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


def bench_regime(regime: str, work: Path, customers: int | None = None, horizon: int = HORIZON_DAYS,
                 seed: int = 7, end: dt.date | None = None) -> dict:
    """Run the pipeline on a fresh shop of the regime under work/<regime> and score it.

    Raises RegimeFailed (its .result has the stages' timings, warnings and the error) when a command
    fails or the forecasts cannot be scored.
    """
    shop = Shop(root=work / regime, regime=regime)
    if shop.root.exists():
        shutil.rmtree(shop.root)
    prepare(shop)
    result: dict = {"regime": regime, "log": str(shop.log), "work_dir": str(shop.root)}
    began = time.perf_counter()
    try:
        run_pipeline(shop, customers, horizon, seed, result, end)
        result.update(evaluate(shop, horizon))
    except (CommandFailed, ValueError, OSError, KeyError, duckdb.Error) as exc:
        result.update(error=str(exc), error_line=str(exc).splitlines()[0][:200])
        raise RegimeFailed(str(exc), result) from exc
    finally:
        result.setdefault("seconds", {})["total"] = time.perf_counter() - began
    return result


# --- the report -------------------------------------------------------------------------------------------------


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _quad(result: dict, target: str, metric: str, scorers=SCORERS, digits: int = 3) -> str:
    cells = []
    for scorer in scorers:
        values = result["metrics"][scorer][target]
        cells.append(_number(None if values is None else values[metric], digits))
    return " / ".join(cells)


def _verdict(ok: bool | None) -> str:
    return {True: "PASS", False: "**FAIL**", None: "n/a"}[ok]


def runs_table(results: list[dict]) -> list[str]:
    stages = [s for s in STAGES if any(s in r.get("seconds", {}) for r in results)]
    lines = ["| regime | customers (scored) | history days | as of | " + " | ".join(f"{s} s" for s in stages)
             + " | total s | LTV served | churn served |", "|---" * (len(stages) + 7) + "|"]
    for r in results:
        times = " | ".join(_number(r["seconds"].get(s), 1) for s in stages)
        if "error" in r:
            lines.append(f"| {r['regime']} | **failed** | | | {times} | {r['seconds']['total']:.1f} | | |")
            continue
        lines.append(f"| {r['regime']} | {r['simulated_customers']:,} ({r['scored_customers']:,}) | {r['history_days']}"
                     f" | {r['as_of']} | {times} | {r['seconds']['total']:.1f} | {r['served']['ltv']['kind']}"
                     f" | {r['served']['churn']['kind']} |")
    return lines


def quality_table(results: list[dict]) -> list[str]:
    lines = ["| regime | LTV RMSE | LTV Gini | LTV top-10% | LTV bias % | churn ROC-AUC | churn Brier | "
             + " | ".join(CRITERIA) + " | outcome |", "|---" * (8 + len(CRITERIA)) + "|"]
    for r in (r for r in results if "error" not in r):
        verdicts = " | ".join(_verdict(r["acceptance"][c]) for c in CRITERIA)
        lines.append(
            f"| {r['regime']} | {_quad(r, 'ltv', 'rmse', digits=2)} | {_quad(r, 'ltv', 'gini')} | "
            f"{_quad(r, 'ltv', 'top10_capture')} | {_quad(r, 'ltv', 'bias_pct', digits=1)} | "
            f"{_quad(r, 'churn', 'roc_auc')} | {_quad(r, 'churn', 'brier')} | {verdicts} | "
            f"{'PASS' if r['passed'] else '**FAIL**'} |")
    return lines


def margins_table(results: list[dict]) -> list[str]:
    lines = []
    for target in ("ltv", "churn"):
        rows = [(r["regime"], r["catboost_margins"][target]) for r in results
                if "error" not in r and target in r["catboost_margins"]]
        if not rows:
            lines += [f"{target}: BG/NBD + Gamma-Gamma served in every regime.", ""]
            continue
        names = list(rows[0][1])
        lines += [f"| {target}: regime | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|"]
        lines += [f"| {regime} | " + " | ".join(f"{margin[n]['gain']:+.4f}" for n in names) + " |"
                  for regime, margin in rows]
        lines.append("")
    return lines[:-1]


def report(results: list[dict], horizon: int, wall_seconds: float) -> str:
    failed = [r for r in results if "error" in r]
    tracebacks = [f"{r['regime']}: {', '.join(r['tracebacks'])}" for r in results if r.get("tracebacks")]
    parts = [
        f"# Regimes: production forecasts against the true future ({horizon} days)",
        "", f"Generated by `bench/regimes.py` on {dt.date.today()}; wall time {wall_seconds / 60:.1f} min for "
        f"{len(results)} regime(s), {os.cpu_count()} cores. Scorers in each cell: served / BG/NBD / naive / oracle.",
        "", f"Acceptance (served against BG/NBD, tolerance {TOLERANCE:g}): RMSE <=, top-10% capture >=, Gini >=, "
        f"|bias| <= {MAX_ABS_BIAS_PCT:g}% or <= BG/NBD's; churn ROC-AUC >=, Brier <=. Customers: simulated "
        "(scored: in the newest day's predictions). Every customer absent from the future churned with 0 spend.",
        *[f"\nRegime {r['regime']}: its daily files have a status column, so landing/mapping.yaml excludes "
          "status `cancelled` (docs/data-contract.md, \"Excluding rows\")." for r in results if r.get("landing_mapping")],
        "", "## Runs", "", *runs_table(results),
        "", "## Forecast quality and acceptance", "", *quality_table(results),
        "", "## Where CatBoost serves: gain over BG/NBD (> 0: CatBoost is better)", "", *margins_table(results),
    ]
    if tracebacks:
        parts += ["", "Commands whose output shows a traceback: " + "; ".join(tracebacks)]
    warned = [f"- {r['regime']} `{stage}`: {line}" for r in results for stage, lines in r.get("warnings", {}).items()
              for line in lines]
    if warned:
        parts += ["", "Python warnings the commands printed:", *warned]
    for r in failed:
        parts += ["", f"## {r['regime']} failed", "", "```", r["error"], "```"]
    return "\n".join(parts) + "\n"


# --- command line -------------------------------------------------------------------------------------------------


def run_all(regimes: list[str], work: Path, customers: int | None, horizon: int, seed: int, keep: bool,
            end: dt.date | None = None) -> list[dict]:
    results = []
    for regime in regimes:
        print(f"[{regime}] running in {work / regime} ...", flush=True)
        try:
            result = bench_regime(regime, work, customers, horizon, seed, end)
        except RegimeFailed as exc:
            print(f"[{regime}] FAILED: {exc}", file=sys.stderr, flush=True)
            results.append(exc.result)
            continue
        print(f"[{regime}] {'PASS' if result['passed'] else 'FAIL'} in {result['seconds']['total']:.0f} s", flush=True)
        results.append(result)
        if not keep:
            shutil.rmtree(work / regime, ignore_errors=True)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regime", action="append", choices=list(REGIMES), help="repeatable; default: every regime")
    parser.add_argument("--customers", type=int, default=None, help="default: the regime's own customer count")
    parser.add_argument("--horizon", type=int, default=HORIZON_DAYS, help="H: must be the platform's horizon")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end-date", type=dt.date.fromisoformat, default=None,
                        help="last simulated day (default: the regime's: yesterday, or its historic period)")
    parser.add_argument("--keep", type=Path, default=None, help="work under DIR and keep every regime's directory")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CUSTOMERS:,} customers per regime (tests)")
    parser.add_argument("--out", type=Path, default=None, help="output prefix (default docs/bench/regimes[_quick])")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    customers = args.customers or (QUICK_CUSTOMERS if args.quick else None)
    out = args.out or RESULTS_DIR / ("regimes_quick" if args.quick else "regimes")
    work = args.keep or Path(tempfile.mkdtemp(prefix="mlsys-regimes-"))
    work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    results = run_all(args.regime or list(REGIMES), work, customers, args.horizon, args.seed, args.keep is not None,
                      args.end_date)
    wall = time.perf_counter() - began
    text = report(results, args.horizon, wall)
    print("\n" + text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    payload = {"generated": dt.datetime.now().isoformat(timespec="seconds"), "horizon_days": args.horizon,
               "seed": args.seed, "end_date": args.end_date, "customers": customers, "wall_seconds": wall,
               "cores": os.cpu_count(),
               "regimes": results}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    if not args.keep and not any("error" in r for r in results):
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0 if all(r.get("passed") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
