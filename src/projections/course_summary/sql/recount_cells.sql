-- Each course's cell of `course_summary` (user, day, current status, deleted), computed from the log alone.
SELECT r.stream_id, (r.payload->>'user_id')::uuid AS user_id,
       (r.recorded_at AT TIME ZONE 'UTC')::date AS day,
       CASE s.event_type WHEN 'GenerationStarted' THEN 'GENERATING' WHEN 'CourseCompleted' THEN 'READY'
                         WHEN 'CourseFailed' THEN 'FAILED' ELSE 'QUEUED' END AS status,
       coalesce(d.event_type = 'CourseDeleted', false) AS deleted
FROM events r
LEFT JOIN LATERAL (SELECT event_type FROM events
                   WHERE stream_id = r.stream_id
                     AND event_type IN ('CourseRequested', 'GenerationStarted', 'CourseCompleted',
                                        'CourseFailed', 'GenerationRetried')
                   ORDER BY stream_version DESC LIMIT 1) s ON true
LEFT JOIN LATERAL (SELECT event_type FROM events
                   WHERE stream_id = r.stream_id AND event_type IN ('CourseDeleted', 'CourseRestored')
                   ORDER BY stream_version DESC LIMIT 1) d ON true
WHERE r.event_type = 'CourseRequested'
