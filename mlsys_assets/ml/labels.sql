-- What each customer did in (as_of, as_of + $horizon days], for every as-of day in _as_of.
CREATE OR REPLACE TEMP TABLE _labels AS
SELECT a.as_of, t.customer_id,
       sum(t.amount)::DOUBLE AS label_spend,
       count(*) AS label_transactions
FROM _as_of a
JOIN raw.transactions t
  ON t.event_date > a.as_of AND t.event_date <= a.as_of + INTERVAL $horizon DAY
GROUP BY ALL;
