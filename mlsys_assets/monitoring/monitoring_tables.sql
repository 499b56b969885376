-- Monitoring history: every report run, and every number and test it produced.
CREATE TABLE IF NOT EXISTS monitoring.reports (
    report_id       VARCHAR   NOT NULL,  -- <kind>:<partition>:<run id>
    kind            VARCHAR   NOT NULL,  -- feature_drift, prediction_drift, model_performance, data_quality
    partition_day   DATE      NOT NULL,  -- the daily partition the report describes
    model_version   VARCHAR,             -- production version(s) it concerns, 'ltv-…,churn-…'
    reference_rows  BIGINT    NOT NULL,  -- after sampling
    current_rows    BIGINT    NOT NULL,
    passed          BOOLEAN   NOT NULL,  -- every Evidently test passed
    headline        VARCHAR   NOT NULL,  -- JSON: the numbers the index shows
    html_path       VARCHAR   NOT NULL,  -- data/reports/<kind>/<day>.html (pruned after report_retention_days)
    snapshot_json   VARCHAR   NOT NULL,  -- the full Evidently snapshot: `mlsys reports render <id>` rebuilds the HTML
    created_at      TIMESTAMP NOT NULL,
    run_id          VARCHAR
);

CREATE TABLE IF NOT EXISTS monitoring.metrics (
    report_id       VARCHAR   NOT NULL,
    run_time        TIMESTAMP NOT NULL,
    kind            VARCHAR   NOT NULL,
    partition_day   DATE      NOT NULL,
    model_version   VARCHAR,
    metric          VARCHAR   NOT NULL,  -- an Evidently metric, or 'test: <name>' (value 1 = passed, 0 = failed)
    column_name     VARCHAR,
    value           DOUBLE
);
