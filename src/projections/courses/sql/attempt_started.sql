-- When a course's latest generation attempt started (NULL before the first):
-- read from the log, which keeps every attempt.
SELECT max(recorded_at) FROM events
WHERE stream_id = $1 AND event_type = 'GenerationStarted'
