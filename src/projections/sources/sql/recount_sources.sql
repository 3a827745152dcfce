WITH ev AS (
    SELECT stream_id, stream_version, event_type, payload, recorded_at
    FROM events
    WHERE event_type IN ('SourceAdded', 'SourceUpdated', 'SourceRemoved')
), last_content AS (
    SELECT DISTINCT ON (stream_id) stream_id, payload
    FROM ev WHERE event_type <> 'SourceRemoved'
    ORDER BY stream_id, stream_version DESC
), span AS (
    SELECT stream_id, min(recorded_at) AS created_at, max(recorded_at) AS updated_at
    FROM ev GROUP BY stream_id
), last AS (
    SELECT DISTINCT ON (stream_id) stream_id, event_type, recorded_at
    FROM ev ORDER BY stream_id, stream_version DESC
)
SELECT lc.stream_id, (lc.payload->>'user_id')::uuid, lc.payload->>'path', lc.payload->>'title',
       lc.payload->>'media_type', (lc.payload->>'size')::bigint, lc.payload->>'content_hash',
       lc.payload->>'language', (lc.payload->>'version')::int,
       jsonb_array_length(lc.payload->'chunks'), s.created_at, s.updated_at,
       CASE WHEN l.event_type = 'SourceRemoved' THEN l.recorded_at END
FROM last_content lc JOIN span s USING (stream_id) JOIN last l USING (stream_id)
