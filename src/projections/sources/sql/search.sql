WITH cfg AS (
    SELECT DISTINCT coursegen_ts_config(language) AS cfg
    FROM sources
    WHERE user_id = $1 AND deleted_at IS NULL AND path LIKE $3
), q AS (
    SELECT cfg, websearch_to_tsquery(cfg, $2) AS query FROM cfg
)
SELECT c.id, c.source_id, c.version, c.path, s.title, c.heading_path, c.page, c.text,
       ts_rank_cd(c.tsv, q.query)::float8 AS score
FROM q
JOIN source_chunks c ON c.ts_config = q.cfg AND c.tsv @@ q.query
JOIN sources s ON s.id = c.source_id
WHERE c.current AND c.user_id = $1 AND c.path LIKE $3
ORDER BY score DESC, c.path, c.ordinal
LIMIT $4
