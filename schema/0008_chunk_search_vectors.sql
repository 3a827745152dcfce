-- Each document chunk's full-text search vector, computed at ingest by the
-- statement that appends the document's event (so in its transaction: a
-- chunk of the log has its vector here from the moment it is in the log),
-- on the ingesting connection, several of which run at once. The `sources`
-- projector (live and replay) takes a chunk's vector from here rather than
-- computing it on its single connection, and computes it itself only when
-- it is absent (a log older than this table, or restored without it): the
-- log stays the source of truth and this table a cache of a pure function
-- of it. Keyed by chunk id: a chunk id (UUIDv5 of the document, version and
-- ordinal, `src/domain/sources.rs`) fixes the document's title and language
-- and the chunk's headings and text, so it fixes the vector too. Not a
-- projection: `replay` leaves it alone.
CREATE TABLE IF NOT EXISTS chunk_search_vectors (
    chunk_id uuid     PRIMARY KEY,
    tsv      tsvector COMPRESSION lz4 NOT NULL
);

-- A chunk's search vector in text search configuration `cfg` (see
-- `coursegen_ts_config`, projections/0010_sources.sql): the document title
-- weighted A over the heading path B over the passage C. Ingest and the
-- projector's fallback both compute it with this function.
CREATE OR REPLACE FUNCTION coursegen_chunk_tsv(cfg regconfig, title text, heading_path text[], body text)
RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT setweight(to_tsvector(cfg, title), 'A')
        || setweight(to_tsvector(cfg, array_to_string(heading_path, ' ')), 'B')
        || setweight(to_tsvector(cfg, body), 'C')
$$;
