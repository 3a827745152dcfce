-- The folders of user $1's live documents (queries::prefixes): every
-- directory prefix of each path ('a/b/c.md' gives 'a/' and 'a/b/'), with
-- the number of live documents under it, by prefix.
SELECT array_to_string(parts[1:depth], '/') || '/' AS prefix, count(*) AS documents
FROM (
    SELECT string_to_array(path, '/') AS parts
    FROM sources
    WHERE user_id = $1 AND deleted_at IS NULL
) AS live,
LATERAL generate_series(1, cardinality(parts) - 1) AS depth
GROUP BY prefix
ORDER BY prefix
