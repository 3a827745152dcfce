-- A deleted course is not work: CourseDeleted takes it off the work queue
-- (a scheduler then neither claims it nor renews its lease, so its actor
-- stops after the step in flight), and CourseRestored puts it back if it
-- still is QUEUED or GENERATING, to resume at the first missing step.
-- Retry refuses a deleted course, so GenerationRetried never queues one.

CREATE OR REPLACE FUNCTION course_work_track() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_type IN ('CourseRequested', 'GenerationRetried') THEN
        INSERT INTO course_work (course_id) VALUES (NEW.stream_id)
        ON CONFLICT (course_id) DO NOTHING;
    ELSIF NEW.event_type = 'CourseRestored' THEN
        INSERT INTO course_work (course_id)
        SELECT NEW.stream_id
        WHERE (SELECT e.event_type
               FROM events e
               WHERE e.stream_id = NEW.stream_id
                 AND e.event_type IN ('CourseRequested', 'GenerationRetried',
                                      'CourseCompleted', 'CourseFailed')
               ORDER BY e.stream_version DESC
               LIMIT 1) IN ('CourseRequested', 'GenerationRetried')
        ON CONFLICT (course_id) DO NOTHING;
    ELSE
        -- CourseCompleted, CourseFailed, CourseDeleted.
        DELETE FROM course_work WHERE course_id = NEW.stream_id;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS events_track_course_work ON events;
CREATE TRIGGER events_track_course_work
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.event_type IN ('CourseRequested', 'GenerationRetried', 'CourseCompleted',
                             'CourseFailed', 'CourseDeleted', 'CourseRestored'))
    EXECUTE FUNCTION course_work_track();

-- Courses deleted before this migration leave the queue now.
DELETE FROM course_work w
WHERE (SELECT e.event_type
       FROM events e
       WHERE e.stream_id = w.course_id
         AND e.event_type IN ('CourseDeleted', 'CourseRestored')
       ORDER BY e.stream_version DESC
       LIMIT 1) = 'CourseDeleted';
