"""Which loss for the LTV model? Fits CatBoost with each candidate loss on the current training
examples (run `make demo` first) and prints holdout metrics, averaged over three seeds.

    .venv/bin/python bench/ltv_loss.py [--data-dir data]
"""

import argparse
from pathlib import Path

import duckdb
import pandas as pd
from catboost import CatBoostRegressor, Pool

from mlsys_assets.features.snapshot import CATEGORICAL_FEATURES, FEATURES
from mlsys_assets.ml.assets import LtvModelConfig
from mlsys_assets.ml.scoring import model_frame
from mlsys_assets.ml.metrics import spend_metrics

LOSSES = ("Tweedie:variance_power=1.5", "Tweedie:variance_power=1.2", "Poisson", "RMSE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    con = duckdb.connect(str(Path(args.data_dir) / "warehouse.duckdb"), read_only=True)
    examples = con.execute("SELECT * FROM ml.training_examples").df()
    con.close()
    train, holdout = examples[examples["split"] == "train"], examples[examples["split"] == "holdout"]
    defaults = LtvModelConfig()
    rows = []
    for loss in LOSSES:
        for seed in range(args.seeds):
            model = CatBoostRegressor(
                loss_function=loss, iterations=defaults.iterations, learning_rate=defaults.learning_rate,
                depth=defaults.depth, l2_leaf_reg=defaults.l2_leaf_reg, random_seed=seed, verbose=False,
                allow_writing_files=False,
            )
            model.fit(Pool(model_frame(train, list(FEATURES), list(CATEGORICAL_FEATURES)), train["label_spend"], cat_features=list(CATEGORICAL_FEATURES)))
            predicted = model.predict(model_frame(holdout, list(FEATURES), list(CATEGORICAL_FEATURES)))
            rows.append({"loss": loss, "seed": seed, **spend_metrics(holdout["label_spend"].to_numpy(), predicted)})
    table = pd.DataFrame(rows).groupby("loss", sort=False).mean(numeric_only=True).drop(columns="seed")
    print(f"{len(train):,} training rows, {len(holdout):,} holdout rows; mean over {args.seeds} seeds")
    print(table.round(4).to_string())


if __name__ == "__main__":
    main()
