"""The simulator's truth as an evaluation oracle: passed to `model_evaluation` as a resource, so the
production evaluation code never imports the simulator."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from mlsys_assets.resources import ForecastOracle


class SimulatedShopOracle(ForecastOracle):
    """Expected spend and P(no purchase) from the simulator's ground truth, when the customers are its."""

    simulation_dir: str = Field(description="Where `mlsys simulate` wrote ground_truth.parquet.")

    def forecasts(self, customers: pd.DataFrame, as_of: dt.date, horizon_days: int) -> dict | None:
        truth_file = Path(self.simulation_dir) / "ground_truth.parquet"
        if not truth_file.exists():
            return None
        from mlsys_assets.simulation.oracle import oracle_expectations

        oracle = oracle_expectations(pd.read_parquet(truth_file), as_of, horizon_days).set_index("customer_id")
        if customers["customer_id"].isin(oracle.index).mean() < 0.99:
            return None  # not the simulated shop's customers
        # The few unknown ids are the simulator's deliberately dirty rows: customers that do not exist.
        matched = oracle.reindex(customers["customer_id"])
        return {"ltv": matched["expected_spend"].fillna(0.0).to_numpy(np.float64),
                "churn": matched["p_no_purchase"].fillna(1.0).to_numpy(np.float64)}
