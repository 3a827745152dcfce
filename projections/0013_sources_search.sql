-- Search of the `sources` projection without ranking every match.
--
-- One GIN index over each current chunk's `coursegen_chunk_keys` (its
-- user's library folders and a sampling bucket) and its `tsv` replaces the
-- GIN index over `tsv` alone and the b-tree over (user_id, path) (one index
-- fewer to keep up at ingest), so that a search reads only the matches in the
-- requesting user's library under the folder of its prefix, and, when even
-- those are too many to rank, a deterministic sample of them (see
-- `src/projections/sources/search.rs`). Ranking stays `ts_rank_cd` over
-- the full query.
--
-- A chunk's tsvector (larger than its text) is kept in the row (`STORAGE
-- MAIN`: the text goes out of line first), so that ranking a candidate
-- reads no TOAST; it and the text are compressed with lz4, several times
-- cheaper than pglz both ways. The tsvector's statistics list the 5,000
-- most common lexemes (a search plans with them).

-- The GIN keys of a chunk of `user_id`'s document at `path` whose id is
-- `id`: `<user_id>:<folder>` for every folder above the document (`''`,
-- `a/`, `a/b/` for `a/b/c.md`), and `~<n>`, its sampling bucket (0 to 255,
-- the id's last byte: uniform, as chunk ids are name-based UUIDs).
CREATE OR REPLACE FUNCTION coursegen_chunk_keys(user_id uuid, path text, id uuid)
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_append(
        ARRAY(SELECT user_id::text || ':' || left(path, p)
              FROM generate_series(0, length(path)) AS p
              WHERE p = 0 OR substr(path, p, 1) = '/'),
        '~' || get_byte(uuid_send(id), 15))
$$;

CREATE OR REPLACE FUNCTION coursegen_create_sources_tables(suffix text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s text := 'sources' || suffix;
    c text := 'source_chunks' || suffix;
BEGIN
    EXECUTE format($f$
        CREATE TABLE %I (
            id           uuid        PRIMARY KEY,
            user_id      uuid        NOT NULL,
            path         text        NOT NULL,
            title        text        NOT NULL,
            media_type   text        NOT NULL,
            size_bytes   bigint      NOT NULL,
            content_hash text        NOT NULL,
            language     text        NOT NULL,
            version      integer     NOT NULL,
            chunk_count  integer     NOT NULL,
            created_at   timestamptz NOT NULL,
            updated_at   timestamptz NOT NULL,
            deleted_at   timestamptz
        )$f$, s);
    EXECUTE format('CREATE INDEX %I ON %I (user_id, path text_pattern_ops) WHERE deleted_at IS NULL',
                   s || '_user_path_idx', s);
    EXECUTE format($f$
        CREATE TABLE %I (
            id           uuid        PRIMARY KEY,
            source_id    uuid        NOT NULL,
            version      integer     NOT NULL,
            ordinal      integer     NOT NULL,
            user_id      uuid        NOT NULL,
            path         text        NOT NULL,
            heading_path text[]      NOT NULL DEFAULT '{}',
            page         integer,
            text         text        COMPRESSION lz4 NOT NULL,
            ts_config    regconfig   NOT NULL,
            tsv          tsvector    COMPRESSION lz4 NOT NULL,
            current      boolean     NOT NULL
        )$f$, c);
    EXECUTE format('ALTER TABLE %I ALTER COLUMN tsv SET STORAGE MAIN, ALTER COLUMN tsv SET STATISTICS 500', c);
    EXECUTE format('CREATE INDEX %I ON %I (source_id, version, ordinal)', c || '_source_idx', c);
    EXECUTE format('CREATE INDEX %I ON %I USING gin (coursegen_chunk_keys(user_id, path, id), tsv) WHERE current',
                   c || '_search_idx', c);
END
$$;

ALTER TABLE source_chunks
    ALTER COLUMN text SET COMPRESSION lz4,
    ALTER COLUMN tsv SET COMPRESSION lz4,
    ALTER COLUMN tsv SET STORAGE MAIN,
    ALTER COLUMN tsv SET STATISTICS 500;
CREATE INDEX source_chunks_search_idx ON source_chunks
    USING gin (coursegen_chunk_keys(user_id, path, id), tsv) WHERE current;
DROP INDEX source_chunks_tsv_idx;
DROP INDEX source_chunks_user_path_idx;
