-- Every row of `subtitles`, computed from the log alone: each lesson's latest track per language.
SELECT DISTINCT ON (stream_id, (payload->>'lesson')::int, payload->>'language')
       stream_id, (payload->>'lesson')::int, payload->>'language', payload->'cues',
       payload->>'model', coalesce((payload->'usage'->>'total_tokens')::bigint, 0), recorded_at
FROM events WHERE event_type = 'SubtitlesGenerated'
ORDER BY stream_id, (payload->>'lesson')::int, payload->>'language', stream_version DESC
