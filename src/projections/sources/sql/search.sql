-- The best `$8` current chunks of `$1`'s live documents under the prefix
-- `$6` (a `LIKE` pattern; `$5`: the GIN key of its folder) matching, in
-- configuration `$2[i]`, the query `$3[i]` and the candidates' query
-- `$4[i]` (see `search.rs`): of at most `$7` candidates, the `$9` best by
-- `ts_rank` (cheap: no covers), of those the best by `ts_rank_cd`.
-- `{sample}`: nothing, or the condition keeping a sample (`$10`).
--
-- The index finds the candidates' query alone (rare words: short posting
-- lists); the whole query, whose common words' lists can hold most of the
-- library, is only checked on each candidate (`ts_match_vq`, the `@@`
-- operator as a function: not an index condition).
--
-- The configurations and queries are cast once, as whole arrays: cast
-- from text in the query's expressions, they would be parsed again for
-- every candidate and in every expression.
WITH p AS (
    SELECT *
    FROM unnest($2::text[]::regconfig[], $3::text[]::tsquery[], $4::text[]::tsquery[])
        AS p(cfg, query, cand)
), cand AS (
    -- (Lateral, with its own limit: a subquery the planner neither
    -- flattens nor hash joins, so the index is read with `p`'s query.)
    SELECT m.*
    FROM p CROSS JOIN LATERAL (
        SELECT c.id, c.path, c.ordinal, p.query, ts_rank(c.tsv, p.query) AS rough
        FROM source_chunks c
        WHERE c.tsv @@ p.cand AND ts_match_vq(c.tsv, p.query) AND c.ts_config = p.cfg
          AND c.current AND coursegen_chunk_keys(c.user_id, c.path, c.id) @> $5::text[] {sample}
          AND c.user_id = $1 AND c.path LIKE $6
        LIMIT $7
    ) m
    LIMIT $7
), rough AS (
    SELECT * FROM cand ORDER BY rough DESC, path, ordinal LIMIT $9
), top AS (
    SELECT r.id, r.path, r.ordinal, ts_rank_cd(c.tsv, r.query)::float8 AS score
    FROM rough r JOIN source_chunks c ON c.id = r.id
    ORDER BY score DESC, r.path, r.ordinal
    LIMIT $8
)
SELECT c.id, c.source_id, c.version, c.path, s.title, c.heading_path, c.page, c.text, top.score
FROM top
JOIN source_chunks c ON c.id = top.id
JOIN sources s ON s.id = c.source_id
ORDER BY top.score DESC, top.path, top.ordinal
