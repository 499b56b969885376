-- The offline feature store.
CREATE TABLE IF NOT EXISTS features.customer_daily (
    delivery_date   DATE          NOT NULL,  -- the raw partition the activity was delivered in (known from then on)
    customer_id     VARCHAR       NOT NULL,
    event_date      DATE          NOT NULL,  -- the day the purchases happened (on or before delivery_date)
    transactions    INTEGER       NOT NULL,
    spend           DECIMAL(18,2) NOT NULL,
    quantity        INTEGER       NOT NULL,  -- items; a transaction without quantity counts as one
    max_amount      DECIMAL(18,2) NOT NULL   -- the largest single transaction of the day
);
