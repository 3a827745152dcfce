-- The `courses` projection gains `interactive_elements`: each lesson's code
-- blocks, exercises and quizzes as recorded in its latest LessonGenerated
-- (v3 on), one row per element in the lesson's order. Lessons recorded
-- before v3 have none, so the live table starts empty and needs no rebuild.
-- 0007's table function is kept under a new name and wrapped, so a replay
-- builds the new table beside the others.

ALTER FUNCTION coursegen_create_courses_tables(text) RENAME TO coursegen_create_courses_tables_0007;

CREATE OR REPLACE FUNCTION coursegen_create_interactive_elements(suffix text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text := 'interactive_elements' || suffix;
BEGIN
    EXECUTE format($f$
        CREATE TABLE %I (
            course_id     uuid    NOT NULL,
            lesson_number integer NOT NULL,
            -- 1, 2, ...: the element's place in the lesson.
            position      integer NOT NULL,
            element_id    text    NOT NULL,
            kind          text    NOT NULL CHECK (kind IN ('code_block', 'exercise', 'single_choice',
                                                           'multiple_choice', 'true_false', 'short_answer')),
            -- The whole element as the event has it (id and kind included).
            body          jsonb   NOT NULL,
            PRIMARY KEY (course_id, lesson_number, position)
        )$f$, t);
END
$$;

CREATE OR REPLACE FUNCTION coursegen_create_courses_tables(suffix text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM coursegen_create_courses_tables_0007(suffix);
    PERFORM coursegen_create_interactive_elements(suffix);
END
$$;

SELECT coursegen_drop_tables(ARRAY['interactive_elements'], '_next');
SELECT coursegen_create_interactive_elements('');
