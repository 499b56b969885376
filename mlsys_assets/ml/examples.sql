-- One chunk of the training grid: the as-of snapshots (_snapshots, from pandas because of the BTYD
-- features) with what each customer did in the following H days (_labels, from labels.sql); the
-- parameter is the list of holdout as-of days.
SELECT s.* REPLACE (s.as_of::DATE AS as_of),
       coalesce(l.label_spend, 0)::DOUBLE AS label_spend,
       coalesce(l.label_transactions, 0)::BIGINT AS label_transactions,
       (coalesce(l.label_transactions, 0) = 0)::BIGINT AS churned,
       CASE WHEN s.as_of::DATE IN (SELECT unnest(?::DATE[])) THEN 'holdout' ELSE 'train' END AS split
FROM _snapshots s
LEFT JOIN _labels l ON l.as_of = s.as_of::DATE AND l.customer_id = s.customer_id
ORDER BY s.as_of, s.customer_id
