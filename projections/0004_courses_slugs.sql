-- The `courses` projection, second shape: slugs numbered by log position
-- instead of the first-come trigger of 0002, so that the live runner (which
-- now applies batches set-wise), a replay and a recount in SQL all give the
-- same slugs. Read models are rebuilt from the log, never migrated in place:
-- the tables are recreated empty and the projection starts over.

-- Slugs: URL-friendly, unique, derived from the title (from the topic until
-- an outline names the course). Courses sharing a base are numbered in the
-- order they took it (the log position of the event that set it): the first
-- is `photosynthesis`, then `photosynthesis-2`, ... A base never ends in
-- `-<digits>` (`physics-101` becomes `physics101`), so numbered slugs cannot
-- clash with plain ones. Being a function of the log alone, the same slugs
-- come out of the live runner, a replay and a recount in SQL.
CREATE OR REPLACE FUNCTION coursegen_slug_base(title text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT regexp_replace(coursegen_slugify(title), '-([0-9]+)$', '\1')
$$;

CREATE OR REPLACE FUNCTION coursegen_create_courses_tables(suffix text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c   text := 'courses' || suffix;
    l   text := 'lessons' || suffix;
    b   text := 'lesson_bodies' || suffix;
    q   text := 'lesson_checks' || suffix;
    -- LZ4 where this server was built with it, the default compression otherwise.
    lz4 text := '';
BEGIN
    BEGIN
        CREATE TEMP TABLE coursegen_lz4_probe (x text COMPRESSION lz4);
        DROP TABLE coursegen_lz4_probe;
        lz4 := ' COMPRESSION lz4';
    EXCEPTION WHEN OTHERS THEN
        lz4 := '';
    END;

    EXECUTE format($f$
        CREATE TABLE %I (
            id                uuid PRIMARY KEY,
            user_id           uuid        NOT NULL,
            request_id        uuid        NOT NULL,
            title             text,
            description       text,
            slug              text        NOT NULL,
            -- What the slug is numbered by (see coursegen_slug_base).
            slug_base         text        NOT NULL,
            slug_transaction_id bigint    NOT NULL,
            slug_position     bigint      NOT NULL,
            topic             text        NOT NULL,
            grade_level       text,
            language          text        NOT NULL,
            source_filter     text,
            status            text        NOT NULL
                              CHECK (status IN ('QUEUED', 'GENERATING', 'READY', 'FAILED')),
            error_message     text,
            total_lessons     integer     NOT NULL,
            lessons_generated integer     NOT NULL DEFAULT 0,
            sources           jsonb       NOT NULL DEFAULT '[]',
            prompt_tokens     bigint      NOT NULL DEFAULT 0,
            completion_tokens bigint      NOT NULL DEFAULT 0,
            total_tokens      bigint      NOT NULL DEFAULT 0,
            attempt           integer     NOT NULL DEFAULT 0,
            model             text,
            created_at        timestamptz NOT NULL,
            updated_at        timestamptz NOT NULL,
            generated_at      timestamptz,
            deleted_at        timestamptz,
            search            tsvector GENERATED ALWAYS AS (
                setweight(to_tsvector('simple'::regconfig, coalesce(title, '')), 'A') ||
                setweight(to_tsvector('simple'::regconfig, coalesce(topic, '')), 'B') ||
                setweight(to_tsvector('simple'::regconfig, coalesce(description, '')), 'C')
            ) STORED
        )$f$, c);
    -- Deferrable: renumbering a base swaps slugs within one statement.
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I UNIQUE (slug) DEFERRABLE INITIALLY IMMEDIATE',
                   c, c || '_slug_key');
    EXECUTE format('CREATE INDEX %I ON %I (slug_base, slug_transaction_id, slug_position)',
                   c || '_slug_base_idx', c);
    EXECUTE format('CREATE INDEX %I ON %I (user_id, created_at DESC)', c || '_user_created_idx', c);
    EXECUTE format('CREATE INDEX %I ON %I (status, created_at DESC)', c || '_status_created_idx', c);
    EXECUTE format('CREATE INDEX %I ON %I (created_at DESC)', c || '_created_idx', c);
    EXECUTE format('CREATE INDEX %I ON %I USING gin (search)', c || '_search_idx', c);

    EXECUTE format($f$
        CREATE TABLE %I (
            course_id     uuid        NOT NULL,
            lesson_number integer     NOT NULL,
            title         text        NOT NULL,
            concepts      text[]      NOT NULL DEFAULT '{}',
            objectives    text[]      NOT NULL DEFAULT '{}',
            status        text        NOT NULL CHECK (status IN ('PENDING', 'GENERATED')),
            generated_at  timestamptz,
            PRIMARY KEY (course_id, lesson_number)
        )$f$, l);

    EXECUTE format($f$
        CREATE TABLE %I (
            course_id     uuid        NOT NULL,
            lesson_number integer     NOT NULL,
            content_md    text %s NOT NULL,
            content_json  jsonb %s NOT NULL,
            sources       jsonb       NOT NULL DEFAULT '[]',
            model         text        NOT NULL,
            total_tokens  bigint      NOT NULL DEFAULT 0,
            generated_at  timestamptz NOT NULL,
            PRIMARY KEY (course_id, lesson_number)
        )$f$, b, lz4, lz4);

    EXECUTE format($f$
        CREATE TABLE %I (
            course_id       uuid    NOT NULL,
            lesson_number   integer NOT NULL,
            question_number integer NOT NULL,
            question        text    NOT NULL,
            options         jsonb   NOT NULL,
            answer_index    integer NOT NULL,
            explanation     text    NOT NULL DEFAULT '',
            PRIMARY KEY (course_id, lesson_number, question_number)
        )$f$, q);
END
$$;

SELECT coursegen_drop_tables(ARRAY['courses', 'lessons', 'lesson_bodies', 'lesson_checks'], '_next');
SELECT coursegen_drop_tables(ARRAY['courses', 'lessons', 'lesson_bodies', 'lesson_checks'], '');
DROP FUNCTION IF EXISTS coursegen_courses_slug();
SELECT coursegen_create_courses_tables('');
SELECT coursegen_create_courses_views();
UPDATE projection_checkpoints
SET transaction_id = 0, global_position = 0, state = 'running', error = NULL,
    failed_transaction_id = NULL, failed_position = NULL, updated_at = now()
WHERE name = 'courses';
