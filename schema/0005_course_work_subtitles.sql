-- Subtitles asked for after a course is READY are work too:
-- SubtitlesRequested queues the course (its actor translates the missing
-- tracks) and SubtitlesCompleted takes it off the queue again. A restored
-- course is queued when its latest such event left work open.

CREATE OR REPLACE FUNCTION course_work_track() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_type IN ('CourseRequested', 'GenerationRetried', 'SubtitlesRequested') THEN
        INSERT INTO course_work (course_id) VALUES (NEW.stream_id)
        ON CONFLICT (course_id) DO NOTHING;
    ELSIF NEW.event_type = 'CourseRestored' THEN
        INSERT INTO course_work (course_id)
        SELECT NEW.stream_id
        WHERE (SELECT e.event_type
               FROM events e
               WHERE e.stream_id = NEW.stream_id
                 AND e.event_type IN ('CourseRequested', 'GenerationRetried',
                                      'CourseCompleted', 'CourseFailed',
                                      'SubtitlesRequested', 'SubtitlesCompleted')
               ORDER BY e.stream_version DESC
               LIMIT 1) IN ('CourseRequested', 'GenerationRetried', 'SubtitlesRequested')
        ON CONFLICT (course_id) DO NOTHING;
    ELSE
        -- CourseCompleted, CourseFailed, CourseDeleted, SubtitlesCompleted.
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
                             'CourseFailed', 'CourseDeleted', 'CourseRestored',
                             'SubtitlesRequested', 'SubtitlesCompleted'))
    EXECUTE FUNCTION course_work_track();
