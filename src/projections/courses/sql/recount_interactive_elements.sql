-- Every row of `interactive_elements`, computed from the log alone: the elements of each lesson's latest generation.
SELECT l.stream_id, l.number, e.ord::int, e.x->>'id', e.x->>'kind', e.x
FROM (SELECT DISTINCT ON (stream_id, (payload->>'number')::int)
             stream_id, (payload->>'number')::int AS number, payload
      FROM events WHERE event_type = 'LessonGenerated'
      ORDER BY stream_id, (payload->>'number')::int, stream_version DESC) l,
     jsonb_array_elements(coalesce(l.payload->'elements', '[]')) WITH ORDINALITY AS e(x, ord)
