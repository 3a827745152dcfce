WITH ev AS (
    SELECT stream_id, stream_version, event_type, payload
    FROM events
    WHERE event_type IN ('SourceAdded', 'SourceUpdated', 'SourceRemoved')
), last AS (
    SELECT DISTINCT ON (stream_id) stream_id, event_type, (payload->>'version')::int AS version
    FROM ev ORDER BY stream_id, stream_version DESC
)
SELECT c.id, e.stream_id, (e.payload->>'version')::int, c.ordinal, (e.payload->>'user_id')::uuid,
       e.payload->>'path', coalesce(c.heading_path, '{}'), c.page, c.text,
       coursegen_ts_config(e.payload->>'language'),
       setweight(to_tsvector(coursegen_ts_config(e.payload->>'language'), e.payload->>'title'), 'A')
       || setweight(to_tsvector(coursegen_ts_config(e.payload->>'language'),
                                array_to_string(coalesce(c.heading_path, '{}'), ' ')), 'B')
       || setweight(to_tsvector(coursegen_ts_config(e.payload->>'language'), c.text), 'C'),
       l.event_type <> 'SourceRemoved' AND l.version = (e.payload->>'version')::int
FROM ev e
JOIN last l USING (stream_id)
CROSS JOIN LATERAL jsonb_to_recordset(e.payload->'chunks')
    AS c(id uuid, ordinal int, heading_path text[], page int, text text)
WHERE e.event_type <> 'SourceRemoved'
