-- The `course_summary` projection: how many courses there are, by status,
-- user and day (of the request, UTC).
--
-- `course_summary` holds counts at the finest grain (user, day, status,
-- deleted); the views roll it up. `course_summary_courses` is the
-- projection's own memory of each course's current cell.

CREATE OR REPLACE FUNCTION coursegen_create_course_summary_tables(suffix text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($f$
        CREATE TABLE %I (
            user_id uuid    NOT NULL,
            day     date    NOT NULL,
            status  text    NOT NULL,
            deleted boolean NOT NULL,
            courses bigint  NOT NULL,
            PRIMARY KEY (user_id, day, status, deleted)
        )$f$, 'course_summary' || suffix);
    EXECUTE format('CREATE INDEX %I ON %I (day)',
                   'course_summary' || suffix || '_day_idx', 'course_summary' || suffix);
    EXECUTE format($f$
        CREATE TABLE %I (
            course_id uuid PRIMARY KEY,
            user_id   uuid    NOT NULL,
            day       date    NOT NULL,
            status    text    NOT NULL,
            deleted   boolean NOT NULL DEFAULT false
        )$f$, 'course_summary_courses' || suffix);
END
$$;

CREATE OR REPLACE FUNCTION coursegen_create_course_summary_views()
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    CREATE OR REPLACE VIEW v_course_counts_by_status AS
    SELECT status, sum(courses)::bigint AS courses
    FROM course_summary WHERE NOT deleted AND courses > 0 GROUP BY status;

    CREATE OR REPLACE VIEW v_course_counts_by_user AS
    SELECT user_id,
           sum(courses)::bigint AS courses,
           (sum(courses) FILTER (WHERE status = 'QUEUED'))::bigint     AS queued,
           (sum(courses) FILTER (WHERE status = 'GENERATING'))::bigint AS generating,
           (sum(courses) FILTER (WHERE status = 'READY'))::bigint      AS ready,
           (sum(courses) FILTER (WHERE status = 'FAILED'))::bigint     AS failed
    FROM course_summary WHERE NOT deleted AND courses > 0 GROUP BY user_id;

    CREATE OR REPLACE VIEW v_course_counts_by_day AS
    SELECT day,
           sum(courses)::bigint AS courses,
           (sum(courses) FILTER (WHERE status = 'READY'))::bigint  AS ready,
           (sum(courses) FILTER (WHERE status = 'FAILED'))::bigint AS failed
    FROM course_summary WHERE NOT deleted AND courses > 0 GROUP BY day;
END
$$;

SELECT coursegen_create_course_summary_tables('');
SELECT coursegen_create_course_summary_views();
