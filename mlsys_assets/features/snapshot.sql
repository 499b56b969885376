-- THE feature definition: one row per (as_of, customer) for every as-of day in the temp table _as_of,
-- from data known by the end of that day only (delivered on or before it). Training examples, batch
-- scoring and the online store all come from here. The two customer filters below are empty except for
-- the training grid of a large shop, which is built for a sample of its customers (ml/assets.py).
CREATE OR REPLACE TEMP TABLE _snapshot AS
WITH purchase_days AS (
    SELECT a.as_of, d.customer_id, d.event_date,
           sum(d.transactions) AS transactions, sum(d.spend)::DOUBLE AS spend,
           sum(d.quantity) AS quantity, max(d.max_amount)::DOUBLE AS max_amount
    FROM _as_of a
    JOIN features.customer_daily d ON d.delivery_date <= a.as_of $customers_daily
    GROUP BY ALL
),
with_gaps AS (
    SELECT *, event_date - lag(event_date) OVER (PARTITION BY as_of, customer_id ORDER BY event_date) AS gap_days
    FROM purchase_days
),
activity AS (
    SELECT
        as_of, customer_id,
        min(event_date) AS first_purchase,
        max(event_date) AS last_purchase,
        count(*) AS purchase_days,
        sum(transactions) AS tx_lifetime,
        sum(spend) AS spend_lifetime,
        sum(quantity) AS qty_lifetime,
        arg_min(spend, event_date) AS first_day_spend,
        $window_aggregates,
        sum(spend) FILTER (WHERE event_date > as_of - 180 AND event_date <= as_of - 90) AS spend_prev_90,
        avg(gap_days) AS gap_mean_days,
        stddev_samp(gap_days) AS gap_std_days,
        arg_max(gap_days, event_date) AS last_gap_days,
        max(max_amount) AS max_amount
    FROM with_gaps
    GROUP BY as_of, customer_id
),
known_customers AS (
    SELECT a.as_of, c.customer_id, c.signup_date, c.country, c.acquisition_channel
    FROM _as_of a JOIN raw.customers c ON c.signup_date <= a.as_of $customers_known
)
SELECT
    coalesce(act.as_of, k.as_of) AS as_of,
    coalesce(act.customer_id, k.customer_id) AS customer_id,
    (coalesce(act.as_of, k.as_of) - act.last_purchase)::INTEGER AS recency_days,
    (coalesce(act.as_of, k.as_of) - act.first_purchase)::INTEGER AS tenure_days,
    (coalesce(act.as_of, k.as_of) - coalesce(k.signup_date, act.first_purchase))::INTEGER AS days_since_signup,
    coalesce(act.purchase_days, 0) AS purchase_days,
    coalesce(act.tx_lifetime, 0) AS tx_lifetime,
    coalesce(act.spend_lifetime, 0) AS spend_lifetime,
    coalesce(act.qty_lifetime, 0) AS qty_lifetime,
    $window_columns,
    coalesce(act.spend_90, 0) - coalesce(act.spend_prev_90, 0) AS spend_trend_90,
    act.gap_mean_days,
    act.gap_std_days,
    act.last_gap_days,
    act.spend_lifetime / nullif(act.tx_lifetime, 0) AS avg_basket,
    act.qty_lifetime / nullif(act.tx_lifetime, 0) AS avg_items,
    act.max_amount,
    -- Where in the year the forecast window starts: spend is seasonal, and the window's season is known.
    -- The formula lives in derived.py, which the API also evaluates for a single row.
    $season_columns,
    coalesce(k.country, sc.country, 'unknown') AS country,
    coalesce(k.acquisition_channel, sc.acquisition_channel, 'unknown') AS acquisition_channel,
    -- Inputs of the buy-till-you-die baseline (repeat purchase days, in days).
    act.purchase_days - 1 AS rfm_frequency,
    (act.last_purchase - act.first_purchase)::INTEGER AS rfm_recency,
    (coalesce(act.as_of, k.as_of) - act.first_purchase)::INTEGER AS rfm_age,
    (act.spend_lifetime - act.first_day_spend) / nullif(act.purchase_days - 1, 0) AS rfm_repeat_spend
FROM activity act
FULL OUTER JOIN known_customers k ON k.as_of = act.as_of AND k.customer_id = act.customer_id
-- A buyer whose signup date is missing or later than the purchase keeps country and channel.
LEFT JOIN raw.customers sc ON sc.customer_id = act.customer_id AND k.customer_id IS NULL;
