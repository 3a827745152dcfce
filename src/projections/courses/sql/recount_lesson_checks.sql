-- Every row of `lesson_checks`, computed from the log alone: the quiz of each lesson's latest generation.
SELECT l.stream_id, l.number, q.ord::int, q.x->>'question', q.x->'options',
       (q.x->>'answer_index')::int, coalesce(q.x->>'explanation', '')
FROM (SELECT DISTINCT ON (stream_id, (payload->>'number')::int)
             stream_id, (payload->>'number')::int AS number, payload
      FROM events WHERE event_type = 'LessonGenerated'
      ORDER BY stream_id, (payload->>'number')::int, stream_version DESC) l,
     jsonb_array_elements(coalesce(l.payload->'quiz', '[]')) WITH ORDINALITY AS q(x, ord)
