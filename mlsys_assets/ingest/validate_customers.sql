-- Type and judge every staged customer line; see validate_transactions.sql for the conventions.
-- Bound parameters: the e-mail pattern, 3 times (pii.EMAIL_SQL_PATTERN).
-- Personal fields are hashed here (pii_hash: HMAC-SHA256 keyed by MLSYS_PII_KEY, pii.register_pii_hash) and never stored in clear.
CREATE OR REPLACE TEMP TABLE _checked_customers AS
WITH typed AS (
    SELECT
        s.*,
        $excluded AS excluded,
        nullif(trim(s.customer_id), '') AS customer_key,
        $signup_date AS signup_value
    FROM _staged_customers s
)
SELECT
    typed.* EXCLUDE (email, name),
    pii_hash(lower(trim(email))) AS email_hash,
    pii_hash(lower(trim(name))) AS name_hash,
    CASE
        WHEN excluded IS NOT NULL THEN excluded
        WHEN customer_key IS NULL THEN
            {'column': 'customer_id', 'reason': 'missing_value', 'detail': 'customer_id is empty'}
        -- A shifted or dirty line can carry an e-mail (and the name next to it) into a clear column: the
        -- line is quarantined (masked), never loaded. `?` is the e-mail pattern, bound by the caller.
        WHEN regexp_matches(concat_ws(' ', customer_key, country, acquisition_channel), ?) THEN
            {'column': CASE WHEN regexp_matches(coalesce(customer_key, ''), ?) THEN 'customer_id'
                            WHEN regexp_matches(coalesce(country, ''), ?) THEN 'country'
                            ELSE 'acquisition_channel' END,
             'reason': 'personal_data', 'detail': 'an e-mail address in a column that is stored in clear'}
        WHEN nullif(trim(signup_date), '') IS NOT NULL AND signup_value IS NULL THEN
            {'column': 'signup_date', 'reason': 'invalid_date',
             'detail': 'cannot parse ''' || signup_date || ''' as $date_formats'}
        WHEN signup_value > current_date THEN
            {'column': 'signup_date', 'reason': 'future_event', 'detail': 'signup date ' || signup_value || ' is in the future'}
    END AS problem
FROM typed;
