-- The model registry and its evaluations.
CREATE TABLE IF NOT EXISTS ml.model_registry (
    model               VARCHAR   NOT NULL,  -- 'ltv' or 'churn'
    version             VARCHAR   NOT NULL,  -- folder name under data/models/<model>/
    state               VARCHAR   NOT NULL,  -- candidate, production, retired or rejected
    state_changed_at    TIMESTAMP NOT NULL,
    created_at          TIMESTAMP NOT NULL,
    path                VARCHAR   NOT NULL,  -- model.cbm + card.json
    train_as_of_first   DATE,                -- the training grid's first and last as-of day
    train_as_of_last    DATE,
    holdout_as_of       DATE,                -- the evaluation's as-of day
    source_partitions   VARCHAR,             -- raw.transactions delivery days the model saw (features and labels)
    code_version        VARCHAR,
    params              VARCHAR,             -- JSON
    features            VARCHAR,             -- JSON list
    metrics             VARCHAR,             -- JSON: holdout metrics of this version and of the baselines
    gate_passed         BOOLEAN,
    gate_reason         VARCHAR,
    gate_action         VARCHAR,             -- the gate's action (ml/gate.py): promote, serve btyd or keep production
    previous_production VARCHAR,             -- what `mlsys models rollback` returns to
    run_id              VARCHAR              -- the Dagster run that trained it
);

CREATE TABLE IF NOT EXISTS ml.model_state_history (
    model       VARCHAR   NOT NULL,
    version     VARCHAR   NOT NULL,
    state       VARCHAR   NOT NULL,
    changed_at  TIMESTAMP NOT NULL,
    reason      VARCHAR
);

CREATE TABLE IF NOT EXISTS ml.model_evaluation (
    evaluation_id VARCHAR   NOT NULL,        -- the Dagster run id of the evaluation
    evaluated_at  TIMESTAMP NOT NULL,
    holdout_as_of DATE      NOT NULL,
    model         VARCHAR   NOT NULL,        -- 'ltv' or 'churn'
    scorer        VARCHAR   NOT NULL,        -- candidate, production, naive, historical, bgnbd, oracle
    version       VARCHAR,                   -- the model version for candidate and production
    metric        VARCHAR   NOT NULL,
    value         DOUBLE
);

-- Columns added after the first release: an older warehouse gets them on the next run.
ALTER TABLE ml.model_registry ADD COLUMN IF NOT EXISTS kind VARCHAR;      -- catboost, or btyd (BG/NBD + Gamma-Gamma)
ALTER TABLE ml.model_registry ADD COLUMN IF NOT EXISTS refit_of VARCHAR;  -- the evaluated version this refit repeats
ALTER TABLE ml.model_registry ADD COLUMN IF NOT EXISTS gate_action VARCHAR;  -- NULL on rows gated before it existed
ALTER TABLE ml.model_evaluation ADD COLUMN IF NOT EXISTS cutoff DATE;     -- the backtest cutoff; NULL = mean over cutoffs

-- Every backtest forecast of a candidate: what it would have said at each cutoff, and what happened.
CREATE TABLE IF NOT EXISTS ml.backtest_predictions (
    model       VARCHAR NOT NULL,
    version     VARCHAR NOT NULL,   -- the refit version the backtest graded
    cutoff      DATE    NOT NULL,
    customer_id VARCHAR NOT NULL,
    actual      DOUBLE,             -- spend or churned in (cutoff, cutoff + H]
    catboost    DOUBLE,             -- the CatBoost forecast fitted on what was known at the cutoff
    btyd        DOUBLE,             -- BG/NBD + Gamma-Gamma's forecast
    candidate   DOUBLE              -- the candidate's forecast: blended and scaled with parameters from the other cutoffs
);
