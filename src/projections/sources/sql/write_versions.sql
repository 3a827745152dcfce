-- The rows and chunks of one or more documents' new versions (no document
-- twice), copied from their events (`$1`: their positions; payloads of
-- version 1, the only one there is) server-side, each payload read
-- (detoasted) and its fields taken once (`jsonb_to_record`, its
-- configuration looked up once) for both tables: the chunk text is never
-- sent to the projector and back.
--
-- `sources{suffix}`: inserted, or replacing the row of the document's
-- older version (its `created_at` stays).
--
-- `source_chunks{suffix}`: a chunk's search vector is the one ingest stored
-- in the appending transaction (`chunk_search_vectors`,
-- schema/0008_chunk_search_vectors.sql), looked up by its key; computed
-- here only when absent (a log older than that table, or restored without
-- it), by the same function.
WITH d AS MATERIALIZED (
    SELECT e.stream_id, e.recorded_at, p.*, coursegen_ts_config(p.language) AS cfg
    FROM events e
    CROSS JOIN LATERAL jsonb_to_record(e.payload)
        AS p(user_id uuid, path text, title text, media_type text, size int8,
             content_hash text, language text, version int4, chunks jsonb)
    WHERE e.global_position = ANY($1::int8[])
), rows AS (
    INSERT INTO sources{suffix} ({source_columns})
    SELECT stream_id, user_id, path, title, media_type, size, content_hash, language,
           version, jsonb_array_length(chunks), recorded_at, recorded_at, NULL
    FROM d
    ON CONFLICT (id) DO UPDATE SET
        title = EXCLUDED.title, media_type = EXCLUDED.media_type,
        size_bytes = EXCLUDED.size_bytes, content_hash = EXCLUDED.content_hash,
        language = EXCLUDED.language, version = EXCLUDED.version,
        chunk_count = EXCLUDED.chunk_count, updated_at = EXCLUDED.updated_at,
        deleted_at = NULL
)
INSERT INTO source_chunks{suffix} ({chunk_columns})
SELECT c.id, d.stream_id, d.version, c.ordinal, d.user_id, d.path,
       coalesce(c.heading_path, '{}'), c.page, c.text, d.cfg,
       coalesce((SELECT v.tsv FROM chunk_search_vectors v WHERE v.chunk_id = c.id),
                coursegen_chunk_tsv(d.cfg, d.title, coalesce(c.heading_path, '{}'), c.text)),
       true
FROM d
CROSS JOIN LATERAL jsonb_to_recordset(d.chunks)
    AS c(id uuid, ordinal int4, heading_path text[], page int4, text text)
