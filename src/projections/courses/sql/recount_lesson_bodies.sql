-- Every row of `lesson_bodies`, computed from the log alone: each lesson's latest generation.
SELECT DISTINCT ON (stream_id, (payload->>'number')::int)
       stream_id, (payload->>'number')::int, payload->>'content_md',
       coalesce(payload->'sections', '[]'),
       (SELECT coalesce(jsonb_agg(x ORDER BY o), '[]')
        FROM (SELECT DISTINCT ON (a.x) a.x, a.o
              FROM jsonb_array_elements(coalesce(payload->'sources', '[]')) WITH ORDINALITY AS a(x, o)
              ORDER BY a.x, a.o) f),
       payload->>'model', coalesce((payload->'usage'->>'total_tokens')::bigint, 0), recorded_at
FROM events WHERE event_type = 'LessonGenerated'
ORDER BY stream_id, (payload->>'number')::int, stream_version DESC
