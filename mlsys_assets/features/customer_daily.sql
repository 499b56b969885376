-- Customer x day aggregates of the delivery days [$start, $end]; the caller deletes them first.
INSERT INTO features.customer_daily
SELECT delivery_date, customer_id, event_date,
       count(*) AS transactions,
       sum(amount) AS spend,
       sum(coalesce(quantity, 1)) AS quantity,
       max(amount) AS max_amount
FROM raw.transactions
WHERE delivery_date BETWEEN '$start' AND '$end'
GROUP BY delivery_date, customer_id, event_date;
