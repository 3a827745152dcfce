-- The work queue of generation: one row per course that is QUEUED or
-- GENERATING, kept by a trigger in the appending transaction itself, so a
-- course can never be requested without being queued (or finish without
-- leaving the queue), whatever crashes.
--
-- A scheduler claims rows with FOR UPDATE SKIP LOCKED and holds a lease
-- (owner, lease_expires_at) that it renews while its actor works; a lease
-- that expires (its process died) is taken over by another scheduler.

CREATE TABLE IF NOT EXISTS course_work (
    course_id        uuid PRIMARY KEY,
    enqueued_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    owner            uuid,
    lease_expires_at timestamptz
);

CREATE INDEX IF NOT EXISTS course_work_enqueued_idx ON course_work (enqueued_at);

CREATE OR REPLACE FUNCTION course_work_track() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_type IN ('CourseRequested', 'GenerationRetried') THEN
        INSERT INTO course_work (course_id) VALUES (NEW.stream_id)
        ON CONFLICT (course_id) DO NOTHING;
    ELSE
        DELETE FROM course_work WHERE course_id = NEW.stream_id;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS events_track_course_work ON events;
CREATE TRIGGER events_track_course_work
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.event_type IN ('CourseRequested', 'GenerationRetried', 'CourseCompleted', 'CourseFailed'))
    EXECUTE FUNCTION course_work_track();

-- Courses already in the log when this migration first runs.
INSERT INTO course_work (course_id)
SELECT stream_id
FROM (
    SELECT DISTINCT ON (stream_id) stream_id, event_type
    FROM events
    WHERE event_type IN ('CourseRequested', 'GenerationRetried', 'CourseCompleted', 'CourseFailed')
    ORDER BY stream_id, stream_version DESC
) AS last_status
WHERE event_type IN ('CourseRequested', 'GenerationRetried')
ON CONFLICT (course_id) DO NOTHING;
