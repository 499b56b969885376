-- The raw layer: what the landing zone delivered, validated and typed. Analysts query these tables.
CREATE TABLE IF NOT EXISTS raw.transactions (
    transaction_id  VARCHAR       NOT NULL,  -- from the file, or L<delivery day>-<line> when the feed has none
    customer_id     VARCHAR       NOT NULL,
    event_time      TIMESTAMP     NOT NULL,
    event_date      DATE          NOT NULL,
    amount          DECIMAL(18,2) NOT NULL,
    quantity        INTEGER,
    delivery_date   DATE          NOT NULL,  -- the daily partition: the day the file was delivered for
    source_file     VARCHAR       NOT NULL,
    source_line     BIGINT,
    ingested_at     TIMESTAMP     NOT NULL,
    run_id          VARCHAR
);

CREATE TABLE IF NOT EXISTS raw.customers (
    customer_id         VARCHAR   NOT NULL,
    signup_date         DATE,                -- NULL: unknown; features fall back to the first purchase
    country             VARCHAR,
    acquisition_channel VARCHAR,
    email_hash          VARCHAR,             -- HMAC-SHA256 of the normalized e-mail, keyed by MLSYS_PII_KEY
    name_hash           VARCHAR,             -- HMAC-SHA256 of the normalized name
    source_file         VARCHAR   NOT NULL,
    source_line         BIGINT,
    ingested_at         TIMESTAMP NOT NULL,
    run_id              VARCHAR
);

CREATE TABLE IF NOT EXISTS raw.quarantine (
    feed            VARCHAR   NOT NULL,      -- 'transactions' or 'customers'
    delivery_date   DATE,                    -- the transactions partition; NULL for customers
    source_file     VARCHAR   NOT NULL,
    line            BIGINT,                  -- 1-based line in the file (the header is line 1)
    column_name     VARCHAR,
    reason          VARCHAR   NOT NULL,
    detail          VARCHAR,
    original_text   VARCHAR,                 -- the line as delivered, personal fields masked
    quarantined_at  TIMESTAMP NOT NULL,
    run_id          VARCHAR
);
