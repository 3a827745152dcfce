-- The `courses` projection, third shape: course metadata (author, tags,
-- difficulty, prerequisites, learning outcomes, estimated duration) as
-- columns of `courses`, tags in the full-text search, and a GIN index for
-- the `tag=` filter. The language becomes editable (CourseMetadataChanged).
--
-- Like 0004, the tables are recreated empty and the projection starts over
-- from the log, so every course gets its metadata from its events. 0005's
-- table function is kept under a new name and wrapped, so a replay builds
-- its fresh tables with the same columns and indexes as the live ones.

-- Tags as one text for to_tsvector. array_to_string is only STABLE (for
-- arbitrary element types); for text[] it is immutable, as a generated
-- column needs.
CREATE OR REPLACE FUNCTION coursegen_tags_text(tags text[])
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_to_string(tags, ' ')
$$;

ALTER FUNCTION coursegen_create_courses_tables(text) RENAME TO coursegen_create_courses_tables_0005;

CREATE OR REPLACE FUNCTION coursegen_add_courses_metadata(suffix text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c text := 'courses' || suffix;
BEGIN
    EXECUTE format($f$
        ALTER TABLE %I
            ADD COLUMN author            text,
            ADD COLUMN tags              text[]  NOT NULL DEFAULT '{}',
            ADD COLUMN difficulty        text
                       CHECK (difficulty IN ('beginner', 'intermediate', 'advanced')),
            ADD COLUMN prerequisites     text[]  NOT NULL DEFAULT '{}',
            ADD COLUMN learning_outcomes text[]  NOT NULL DEFAULT '{}',
            ADD COLUMN estimated_minutes integer NOT NULL DEFAULT 0,
            DROP COLUMN search
        $f$, c);
    EXECUTE format($f$
        ALTER TABLE %I ADD COLUMN search tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('simple'::regconfig, coalesce(title, '')), 'A') ||
            setweight(to_tsvector('simple'::regconfig, coursegen_tags_text(tags)), 'B') ||
            setweight(to_tsvector('simple'::regconfig, coalesce(topic, '')), 'B') ||
            setweight(to_tsvector('simple'::regconfig, coalesce(description, '')), 'C')
        ) STORED
        $f$, c);
    EXECUTE format('CREATE INDEX %I ON %I USING gin (search)', c || '_search_idx', c);
    EXECUTE format('CREATE INDEX %I ON %I USING gin (tags)', c || '_tags_idx', c);
END
$$;

CREATE OR REPLACE FUNCTION coursegen_create_courses_tables(suffix text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM coursegen_create_courses_tables_0005(suffix);
    PERFORM coursegen_add_courses_metadata(suffix);
END
$$;

SELECT coursegen_drop_tables(ARRAY['courses', 'lessons', 'lesson_bodies', 'lesson_checks'], '_next');
SELECT coursegen_drop_tables(ARRAY['courses', 'lessons', 'lesson_bodies', 'lesson_checks'], '');
SELECT coursegen_create_courses_tables('');
SELECT coursegen_create_courses_views();
UPDATE projection_checkpoints
SET transaction_id = 0, global_position = 0, state = 'running', error = NULL,
    failed_transaction_id = NULL, failed_position = NULL, updated_at = now()
WHERE name = 'courses';
