-- The `sources` projection: each user's source library.
--
-- `sources`: one row per document (its current version; `deleted_at` once
-- removed). `source_chunks`: every chunk of every version, so that a course
-- citing version 1 keeps its passage after version 2 arrives; only the
-- current version's chunks of live documents have `current` set, and only
-- those are searched. Each chunk's `tsv` weighs the document title (A) over
-- the heading path (B) over the passage (C), in the text search
-- configuration of the document's language.

-- The text search configuration for a language code: PostgreSQL's own where
-- it has one, `simple` otherwise.
CREATE OR REPLACE FUNCTION coursegen_ts_config(language text)
RETURNS regconfig LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (CASE lower(split_part(coalesce(language, ''), '-', 1))
        WHEN 'en' THEN 'english' WHEN 'fr' THEN 'french' WHEN 'de' THEN 'german'
        WHEN 'es' THEN 'spanish' WHEN 'it' THEN 'italian' WHEN 'pt' THEN 'portuguese'
        WHEN 'nl' THEN 'dutch' WHEN 'ru' THEN 'russian' WHEN 'sv' THEN 'swedish'
        WHEN 'no' THEN 'norwegian' WHEN 'nb' THEN 'norwegian' WHEN 'da' THEN 'danish'
        WHEN 'fi' THEN 'finnish' WHEN 'hu' THEN 'hungarian' WHEN 'ro' THEN 'romanian'
        WHEN 'tr' THEN 'turkish'
        ELSE 'simple' END)::regconfig
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
            text         text        NOT NULL,
            ts_config    regconfig   NOT NULL,
            tsv          tsvector    NOT NULL,
            current      boolean     NOT NULL
        )$f$, c);
    EXECUTE format('CREATE INDEX %I ON %I (source_id, version, ordinal)', c || '_source_idx', c);
    EXECUTE format('CREATE INDEX %I ON %I USING gin (tsv) WHERE current', c || '_tsv_idx', c);
    EXECUTE format('CREATE INDEX %I ON %I (user_id, path text_pattern_ops) WHERE current',
                   c || '_user_path_idx', c);
END
$$;

CREATE OR REPLACE FUNCTION coursegen_create_sources_views()
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
END
$$;

SELECT coursegen_drop_tables(ARRAY['sources', 'source_chunks'], '_next');
DO $$
BEGIN
    IF to_regclass('sources') IS NULL THEN
        PERFORM coursegen_create_sources_tables('');
    END IF;
END
$$;
