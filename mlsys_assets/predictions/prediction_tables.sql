-- Daily forecasts for every customer, and the retention team's action list.
CREATE TABLE IF NOT EXISTS predictions.customer_predictions (
    as_of             DATE      NOT NULL,  -- the daily partition: features known by the end of this day
    customer_id       VARCHAR   NOT NULL,
    predicted_spend   DOUBLE    NOT NULL,  -- forecast revenue in the next horizon_days
    churn_probability DOUBLE    NOT NULL,  -- probability of no purchase in the next horizon_days
    risk_segment      VARCHAR   NOT NULL,  -- low / medium / high churn risk
    value_decile      INTEGER   NOT NULL,  -- 10 = the top tenth of predicted spend that day
    horizon_days      INTEGER   NOT NULL,
    ltv_version       VARCHAR   NOT NULL,  -- production model versions that made the row
    churn_version     VARCHAR   NOT NULL,
    scored_at         TIMESTAMP NOT NULL,
    run_id            VARCHAR
);

CREATE TABLE IF NOT EXISTS predictions.retention_targets (
    as_of             DATE      NOT NULL,
    customer_id       VARCHAR   NOT NULL,
    predicted_spend   DOUBLE    NOT NULL,
    churn_probability DOUBLE    NOT NULL,
    value_decile      INTEGER   NOT NULL,
    value_at_risk     DOUBLE    NOT NULL,  -- predicted_spend x churn_probability: the ranking key
    priority          INTEGER   NOT NULL,  -- 1 = contact first
    ltv_version       VARCHAR   NOT NULL,
    churn_version     VARCHAR   NOT NULL
);
