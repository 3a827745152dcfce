-- Every row of `lessons`, computed from the log alone: the latest plan of each lesson, with its latest generation.
WITH plan AS (
    SELECT DISTINCT ON (e.stream_id, (l->>'number')::int)
           e.stream_id AS course_id, (l->>'number')::int AS lesson_number, l->>'title' AS title,
           ARRAY(SELECT jsonb_array_elements_text(coalesce(l->'concepts', '[]'))) AS concepts,
           ARRAY(SELECT jsonb_array_elements_text(coalesce(l->'objectives', '[]'))) AS objectives
    FROM events e, jsonb_array_elements(e.payload->'lessons') AS l
    WHERE e.event_type = 'OutlineGenerated'
    ORDER BY e.stream_id, (l->>'number')::int, e.stream_version DESC
), done AS (
    SELECT DISTINCT ON (stream_id, (payload->>'number')::int)
           stream_id AS course_id, (payload->>'number')::int AS lesson_number,
           payload->>'title' AS title, recorded_at
    FROM events WHERE event_type = 'LessonGenerated'
    ORDER BY stream_id, (payload->>'number')::int, stream_version DESC
)
SELECT course_id, lesson_number, coalesce(d.title, p.title), coalesce(p.concepts, '{}'),
       coalesce(p.objectives, '{}'),
       CASE WHEN d.course_id IS NULL THEN 'PENDING' ELSE 'GENERATED' END, d.recorded_at
FROM plan p FULL JOIN done d USING (course_id, lesson_number)
