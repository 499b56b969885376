-- Type and judge every staged transaction line. A row gets a `problem` (column, reason, detail) or
-- NULL; the first rule that fails wins, so each bad line is quarantined once with its main defect.
-- $event_time: expression parsing the event_time text; $amount_text: the amount text with '.' decimals;
-- $excluded: the mapping's `exclude` filter (a problem struct or NULL). An excluded row (a cancelled order,
-- say) is not part of the feed: it is quarantined as excluded_by_mapping and never counts as a duplicate.
CREATE OR REPLACE TEMP TABLE _checked_transactions AS
WITH typed AS (
    SELECT
        s.rowid AS staged_row,
        s.*,
        $excluded AS excluded,
        nullif(trim(s.customer_id), '') AS customer_key,
        $event_time AS event_ts,
        try_cast($amount_text AS DOUBLE) AS amount_value,
        -- Only a whole number is a quantity: casting '1.5' to INTEGER would round it to 2.
        CASE WHEN regexp_full_match(trim(s.quantity), '[+-]?[0-9]+(\.0*)?')
             THEN try_cast(try_cast(trim(s.quantity) AS DOUBLE) AS INTEGER) END AS quantity_value,
        -- An event time with a UTC offset or zone ('…T23:30:00-05:00', '…Z') would lose it when typed.
        regexp_matches(trim(s.event_time), '[0-9]:[0-9]{2}(:[0-9]{2}(\.[0-9]*)?)?\s*([zZ]|UTC|GMT|[+-][0-9]{2}(:?[0-9]{2})?)$$')
            AS has_timezone,
        coalesce(nullif(trim(s.transaction_id), ''),
                 'L' || strftime(s.delivery_date, '%Y%m%d') || '-' || s.line) AS txn_id
    FROM _staged_transactions s
),
-- Only an id that occurs more than once in the run needs ranking (the first by day and line wins): the
-- window runs over those rows alone, not over every row of the run.
repeated AS (
    SELECT txn_id, excluded IS NULL AS kept FROM typed GROUP BY ALL HAVING count(*) > 1
),
ranked AS (
    SELECT
        typed.staged_row,
        row_number() OVER same_id AS occurrence,
        first_value(typed.source_file || ' line ' || coalesce(typed.line::VARCHAR, '?')) OVER same_id AS first_seen
    FROM typed SEMI JOIN repeated ON repeated.txn_id = typed.txn_id AND repeated.kept = (typed.excluded IS NULL)
    WINDOW same_id AS (PARTITION BY typed.txn_id, typed.excluded IS NULL ORDER BY typed.delivery_date, typed.line)
),
-- Transactions already stored from deliveries this run does not replace.
stored AS (
    SELECT transaction_id, any_value(source_file || ' line ' || coalesce(source_line::VARCHAR, '?')) AS stored_at
    FROM raw.transactions
    WHERE delivery_date NOT IN (SELECT day FROM _delivery_days)
      AND transaction_id IN (SELECT txn_id FROM typed)
    GROUP BY transaction_id
)
SELECT
    typed.* EXCLUDE (staged_row),
    coalesce(ranked.occurrence, 1) AS occurrence,
    ranked.first_seen,
    CASE
        WHEN excluded IS NOT NULL THEN excluded
        WHEN customer_key IS NULL THEN
            {'column': 'customer_id', 'reason': 'missing_value', 'detail': 'customer_id is empty'}
        -- Ids are stored in clear: an e-mail there (an export keyed by e-mail) must never reach a table.
        -- (The pattern needs an '@': the cheap test first, the regular expression only where one is.)
        WHEN contains(concat_ws(' ', customer_key, txn_id), '@') AND regexp_matches(concat_ws(' ', customer_key, txn_id), ?) THEN
            {'column': CASE WHEN regexp_matches(customer_key, ?) THEN 'customer_id' ELSE 'transaction_id' END,
             'reason': 'personal_data', 'detail': 'an e-mail address in a column that is stored in clear'}
        WHEN nullif(trim(event_time), '') IS NULL THEN
            {'column': 'event_time', 'reason': 'missing_value', 'detail': 'event_time is empty'}
        WHEN has_timezone THEN
            {'column': 'event_time', 'reason': 'unsupported_timezone',
             'detail': '''' || event_time || ''' carries a UTC offset or time zone; event times are local shop time without one'}
        WHEN event_ts IS NULL THEN
            {'column': 'event_time', 'reason': 'invalid_date',
             'detail': 'cannot parse ''' || event_time || ''' as $date_formats'}
        WHEN nullif(trim(amount), '') IS NULL THEN
            {'column': 'amount', 'reason': 'missing_value', 'detail': 'amount is empty'}
        WHEN amount_value IS NULL OR isnan(amount_value) OR isinf(amount_value) THEN
            {'column': 'amount', 'reason': 'invalid_number',
             'detail': '''' || amount || ''' is not a number (decimal separator ''$decimal_separator'')'}
        WHEN nullif(trim(quantity), '') IS NOT NULL AND quantity_value IS NULL THEN
            {'column': 'quantity', 'reason': 'invalid_number', 'detail': '''' || quantity || ''' is not a whole number: quantity must be a whole number'}
        WHEN quantity_value < 1 THEN
            {'column': 'quantity', 'reason': 'out_of_range', 'detail': 'quantity ' || quantity_value || ' is below 1'}
        WHEN amount_value < 0 THEN
            {'column': 'amount', 'reason': 'negative_amount',
             'detail': 'amount ' || amount_value || ' is negative; this feed takes sales only, refunds are netted upstream'}
        WHEN amount_value > $max_amount THEN
            {'column': 'amount', 'reason': 'amount_too_large',
             'detail': 'amount ' || amount_value || ' is above the limit of $max_amount'}
        WHEN event_ts::DATE > delivery_date THEN
            {'column': 'event_time', 'reason': 'future_event',
             'detail': 'event date ' || event_ts::DATE || ' is after the delivery day ' || delivery_date}
        WHEN event_ts::DATE < delivery_date - INTERVAL $max_late_days DAY THEN
            {'column': 'event_time', 'reason': 'too_late',
             'detail': 'event date ' || event_ts::DATE || ' is more than $max_late_days days before the delivery day'}
        WHEN occurrence > 1 THEN
            {'column': 'transaction_id', 'reason': 'duplicate_id',
             'detail': 'transaction_id ' || txn_id || ' already appears at ' || first_seen}
        WHEN stored.stored_at IS NOT NULL THEN
            {'column': 'transaction_id', 'reason': 'duplicate_id',
             'detail': 'transaction_id ' || txn_id || ' was already loaded from ' || stored.stored_at}
    END AS problem
FROM typed
LEFT JOIN ranked USING (staged_row)
LEFT JOIN stored ON stored.transaction_id = typed.txn_id;
