-- The current chunks `$2` of `$1`, with their documents, as search hits
-- (score 0: the caller ranks them).
SELECT c.id, c.source_id, c.version, c.path, s.title, c.heading_path, c.page, c.text,
       0::float8 AS score
FROM source_chunks c
JOIN sources s ON s.id = c.source_id
WHERE c.current AND c.user_id = $1 AND c.id = ANY($2)
