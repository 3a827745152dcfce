-- The `courses` projection gains subtitles: a `subtitles` table (each
-- lesson's latest track per language, its cues as JSON) and, on `courses`,
-- the languages asked for and the tracks recorded (the job's subtitle
-- steps). Courses in the log before this have no subtitle events, so the
-- defaults are their values and nothing needs a rebuild. 0008's table
-- function is kept under a new name and wrapped, as before.

ALTER FUNCTION coursegen_create_courses_tables(text) RENAME TO coursegen_create_courses_tables_0008;

CREATE OR REPLACE FUNCTION coursegen_create_subtitles(suffix text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c text := 'courses' || suffix;
    t text := 'subtitles' || suffix;
BEGIN
    EXECUTE format($f$
        ALTER TABLE %I
            ADD COLUMN subtitle_languages  text[]  NOT NULL DEFAULT '{}',
            ADD COLUMN subtitles_generated integer NOT NULL DEFAULT 0
        $f$, c);
    EXECUTE format($f$
        CREATE TABLE %I (
            course_id     uuid        NOT NULL,
            lesson_number integer     NOT NULL,
            language      text        NOT NULL,
            cues          jsonb       NOT NULL,
            model         text,
            total_tokens  bigint      NOT NULL DEFAULT 0,
            generated_at  timestamptz NOT NULL,
            PRIMARY KEY (course_id, lesson_number, language)
        )$f$, t);
END
$$;

CREATE OR REPLACE FUNCTION coursegen_create_courses_tables(suffix text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM coursegen_create_courses_tables_0008(suffix);
    PERFORM coursegen_create_subtitles(suffix);
END
$$;

SELECT coursegen_drop_tables(ARRAY['subtitles'], '_next');
SELECT coursegen_create_subtitles('');
