-- What planning a search needs (see `search.rs`), for each text search
-- configuration of `$1`'s live documents under the prefix `$3` (a `LIKE`
-- pattern): how many chunks they have, the query `$2` in it, and which
-- statistics of `source_chunks.tsv` are current (its database and
-- relation, and when it was last analyzed).
WITH languages AS (
    SELECT language, sum(chunk_count) AS chunks
    FROM sources
    WHERE user_id = $1 AND deleted_at IS NULL AND path LIKE $3
    GROUP BY 1
), scope AS (
    -- (Each language's configuration once: a regconfig cast looks it up.)
    SELECT coursegen_ts_config(language) AS cfg, sum(chunks)::int8 AS chunks
    FROM languages
    GROUP BY 1
), rel AS (
    SELECT 'source_chunks'::regclass::oid AS oid
)
SELECT scope.cfg::text, scope.chunks, websearch_to_tsquery(scope.cfg, $2)::text,
       current_database()::text, rel.oid::int8,
       greatest(pg_stat_get_last_analyze_time(rel.oid), pg_stat_get_last_autoanalyze_time(rel.oid))
FROM scope, rel
ORDER BY 1
