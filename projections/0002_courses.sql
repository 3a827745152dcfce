-- The `courses` projection: courses, lessons, lesson_bodies, lesson_checks and
-- the views v_course_summary, v_course_lessons, v_lessons_full.
--
-- The tables are made by a function taking a name suffix, so that a replay
-- can build `courses_next`, ... beside the live tables and swap them in
-- (coursegen_swap_tables) while queries keep reading the old ones.

-- Keeps `slug` unique and derived from the title (the topic until an outline
-- names the course): `photosynthesis`, then `photosynthesis-2`, ...
-- A course keeps its slug while its derived base does not change.
CREATE OR REPLACE FUNCTION coursegen_courses_slug() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    base      text := coursegen_slugify(coalesce(NEW.title, NEW.topic));
    candidate text;
    n         int := 1;
    taken     boolean;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.slug IS NOT NULL
       AND coursegen_slugify(coalesce(OLD.title, OLD.topic)) = base THEN
        NEW.slug := OLD.slug;
        RETURN NEW;
    END IF;
    candidate := base;
    LOOP
        -- Static statements (planned once per session) for the live and the
        -- rebuilt table, rather than dynamic SQL planned on every row.
        IF TG_TABLE_NAME = 'courses' THEN
            taken := EXISTS (SELECT 1 FROM courses WHERE slug = candidate AND id <> NEW.id);
        ELSIF TG_TABLE_NAME = 'courses_next' THEN
            taken := EXISTS (SELECT 1 FROM courses_next WHERE slug = candidate AND id <> NEW.id);
        ELSE
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE slug = $1 AND id <> $2)', TG_TABLE_NAME)
                INTO taken USING candidate, NEW.id;
        END IF;
        EXIT WHEN NOT taken;
        n := n + 1;
        candidate := left(base, 72) || '-' || n;
    END LOOP;
    NEW.slug := candidate;
    RETURN NEW;
END
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
    EXECUTE format('CREATE UNIQUE INDEX %I ON %I (slug)', c || '_slug_key', c);
    EXECUTE format('CREATE INDEX %I ON %I (user_id, created_at DESC)', c || '_user_created_idx', c);
    EXECUTE format('CREATE INDEX %I ON %I (status, created_at DESC)', c || '_status_created_idx', c);
    EXECUTE format('CREATE INDEX %I ON %I (created_at DESC)', c || '_created_idx', c);
    EXECUTE format('CREATE INDEX %I ON %I USING gin (search)', c || '_search_idx', c);
    EXECUTE format('CREATE TRIGGER courses_slug BEFORE INSERT OR UPDATE OF title, topic ON %I
                    FOR EACH ROW EXECUTE FUNCTION coursegen_courses_slug()', c);

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

CREATE OR REPLACE FUNCTION coursegen_create_courses_views()
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- One row per visible course, for list pages.
    CREATE OR REPLACE VIEW v_course_summary AS
    SELECT c.id, c.user_id, c.request_id, c.title, c.slug, c.topic, c.description,
           c.grade_level, c.language, c.status, c.error_message, c.total_lessons,
           c.lessons_generated, c.total_tokens, c.model, c.created_at, c.updated_at,
           c.generated_at
    FROM courses c
    WHERE c.deleted_at IS NULL;

    -- A course's table of contents.
    CREATE OR REPLACE VIEW v_course_lessons AS
    SELECT l.course_id, c.title AS course_title, c.slug AS course_slug, l.lesson_number,
           l.title, l.concepts, l.objectives, l.status, l.generated_at
    FROM lessons l
    JOIN courses c ON c.id = l.course_id;

    -- Lessons with their content and quiz.
    CREATE OR REPLACE VIEW v_lessons_full AS
    SELECT l.course_id, c.title AS course_title, c.slug AS course_slug, l.lesson_number,
           l.title, l.concepts, l.objectives, l.status, l.generated_at,
           b.content_md, b.content_json, b.sources, b.model,
           coalesce((SELECT jsonb_agg(jsonb_build_object(
                         'question', q.question, 'options', q.options,
                         'answer_index', q.answer_index, 'explanation', q.explanation)
                         ORDER BY q.question_number)
                     FROM lesson_checks q
                     WHERE q.course_id = l.course_id AND q.lesson_number = l.lesson_number),
                    '[]'::jsonb) AS checks
    FROM lessons l
    JOIN courses c ON c.id = l.course_id
    LEFT JOIN lesson_bodies b ON b.course_id = l.course_id AND b.lesson_number = l.lesson_number;
END
$$;

SELECT coursegen_create_courses_tables('');
SELECT coursegen_create_courses_views();
