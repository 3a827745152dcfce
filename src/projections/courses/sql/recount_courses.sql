-- Every row of `courses`, computed from the log alone (columns as queries::COURSE_COLUMNS).
WITH c AS (
    SELECT r.stream_id AS id,
           (r.payload->>'user_id')::uuid AS user_id,
           (r.payload->>'request_id')::uuid AS request_id,
           o.payload->>'title' AS title,
           o.payload->>'description' AS description,
           r.payload->>'topic' AS topic,
           r.payload->>'grade_level' AS grade_level,
           coalesce(m_lang.v #>> '{}', r.payload->>'language') AS language,
           r.payload->>'source_filter' AS source_filter,
           CASE s.event_type WHEN 'GenerationStarted' THEN 'GENERATING' WHEN 'CourseCompleted' THEN 'READY'
                             WHEN 'CourseFailed' THEN 'FAILED' ELSE 'QUEUED' END AS status,
           CASE WHEN s.event_type = 'CourseFailed'
                THEN (s.payload->>'step') || ': ' || (s.payload->>'error') END AS error_message,
           CASE t.event_type WHEN 'CourseRequested' THEN (t.payload->>'num_lessons')::int
                             WHEN 'OutlineGenerated' THEN jsonb_array_length(t.payload->'lessons')
                             ELSE (t.payload->>'total_lessons')::int END AS total_lessons,
           u.lessons::int AS lessons_generated,
           coalesce(src.sources, '[]'::jsonb) AS sources,
           u.prompt_tokens, u.completion_tokens, u.total_tokens,
           coalesce((g.payload->>'attempt')::int, 0) AS attempt,
           g.payload->>'model' AS model,
           r.recorded_at AS created_at,
           u.updated_at,
           done.recorded_at AS generated_at,
           CASE WHEN d.event_type = 'CourseDeleted' THEN d.recorded_at END AS deleted_at,
           coursegen_slug_base(coalesce(o.payload->>'title', r.payload->>'topic')) AS base,
           CASE WHEN o.tx IS NOT NULL
                 AND coursegen_slug_base(o.payload->>'title') <> coursegen_slug_base(r.payload->>'topic')
                THEN o.tx ELSE r.transaction_id::text::bigint END AS slug_transaction_id,
           CASE WHEN o.tx IS NOT NULL
                 AND coursegen_slug_base(o.payload->>'title') <> coursegen_slug_base(r.payload->>'topic')
                THEN o.pos ELSE r.global_position END AS slug_position,
           -- Metadata: the latest edit of a field, else the request's, else the outline's
           -- proposal (empty values are not stored, so they are null here).
           coalesce(m_author.v #>> '{}', r.payload->>'author') AS author,
           ARRAY(SELECT jsonb_array_elements_text(
                     coalesce(m_tags.v, r.payload->'tags', o.payload->'tags', '[]'))) AS tags,
           coalesce(m_diff.v #>> '{}', r.payload->>'difficulty', o.payload->>'difficulty') AS difficulty,
           ARRAY(SELECT jsonb_array_elements_text(
                     coalesce(m_pre.v, r.payload->'prerequisites', '[]'))) AS prerequisites,
           ARRAY(SELECT jsonb_array_elements_text(
                     coalesce(m_out.v, r.payload->'learning_outcomes',
                              o.payload->'learning_outcomes', '[]'))) AS learning_outcomes,
           u.estimated_minutes, u.subtitle_languages, u.subtitles_generated
    FROM events r
    LEFT JOIN LATERAL (SELECT payload, transaction_id::text::bigint AS tx, global_position AS pos
                       FROM events
                       WHERE stream_id = r.stream_id AND event_type = 'OutlineGenerated'
                       ORDER BY stream_version DESC LIMIT 1) o ON true
    LEFT JOIN LATERAL (SELECT event_type, payload FROM events
                       WHERE stream_id = r.stream_id
                         AND event_type IN ('CourseRequested', 'GenerationStarted', 'CourseCompleted',
                                            'CourseFailed', 'GenerationRetried')
                       ORDER BY stream_version DESC LIMIT 1) s ON true
    LEFT JOIN LATERAL (SELECT event_type, payload FROM events
                       WHERE stream_id = r.stream_id
                         AND event_type IN ('CourseRequested', 'OutlineGenerated', 'CourseCompleted')
                       ORDER BY stream_version DESC LIMIT 1) t ON true
    LEFT JOIN LATERAL (SELECT payload FROM events
                       WHERE stream_id = r.stream_id AND event_type = 'GenerationStarted'
                       ORDER BY stream_version DESC LIMIT 1) g ON true
    LEFT JOIN LATERAL (SELECT recorded_at FROM events
                       WHERE stream_id = r.stream_id AND event_type = 'CourseCompleted'
                       ORDER BY stream_version DESC LIMIT 1) done ON true
    LEFT JOIN LATERAL (SELECT event_type, recorded_at FROM events
                       WHERE stream_id = r.stream_id AND event_type IN ('CourseDeleted', 'CourseRestored')
                       ORDER BY stream_version DESC LIMIT 1) d ON true
    LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE event_type = 'LessonGenerated') AS lessons,
               coalesce(sum((payload->'usage'->>'prompt_tokens')::bigint)
                        FILTER (WHERE event_type IN ('OutlineGenerated', 'LessonGenerated', 'SubtitlesGenerated')), 0)::bigint AS prompt_tokens,
               coalesce(sum((payload->'usage'->>'completion_tokens')::bigint)
                        FILTER (WHERE event_type IN ('OutlineGenerated', 'LessonGenerated', 'SubtitlesGenerated')), 0)::bigint AS completion_tokens,
               coalesce(sum((payload->'usage'->>'total_tokens')::bigint)
                        FILTER (WHERE event_type IN ('OutlineGenerated', 'LessonGenerated', 'SubtitlesGenerated')), 0)::bigint AS total_tokens,
               max(recorded_at) AS updated_at,
               coalesce(sum((payload->>'estimated_minutes')::int)
                        FILTER (WHERE event_type = 'LessonGenerated'), 0)::int AS estimated_minutes,
               count(*) FILTER (WHERE event_type = 'SubtitlesGenerated')::int AS subtitles_generated,
               ARRAY(SELECT DISTINCT x.l COLLATE "C" FROM events s,
                            jsonb_array_elements_text(CASE s.event_type WHEN 'CourseRequested'
                                THEN coalesce(s.payload->'subtitle_languages', '[]')
                                ELSE s.payload->'languages' END) AS x(l)
                     WHERE s.stream_id = r.stream_id
                       AND s.event_type IN ('CourseRequested', 'SubtitlesRequested')
                     ORDER BY 1) AS subtitle_languages
        FROM events WHERE stream_id = r.stream_id) u ON true
    LEFT JOIN LATERAL (
        SELECT jsonb_agg(x ORDER BY v, o) AS sources
        FROM (SELECT DISTINCT ON (coalesce(a.x->'cited'->'chunk_id', a.x)) a.x, e.stream_version AS v, a.o
              FROM events e, jsonb_array_elements(coalesce(e.payload->'sources', '[]')) WITH ORDINALITY AS a(x, o)
              WHERE e.stream_id = r.stream_id AND e.event_type = 'LessonGenerated'
              ORDER BY coalesce(a.x->'cited'->'chunk_id', a.x), e.stream_version, a.o) f) src ON true
    LEFT JOIN LATERAL (SELECT payload->'language' AS v FROM events
                       WHERE stream_id = r.stream_id AND event_type = 'CourseMetadataChanged'
                         AND payload ? 'language'
                       ORDER BY stream_version DESC LIMIT 1) m_lang ON true
    LEFT JOIN LATERAL (SELECT payload->'author' AS v FROM events
                       WHERE stream_id = r.stream_id AND event_type = 'CourseMetadataChanged'
                         AND payload ? 'author'
                       ORDER BY stream_version DESC LIMIT 1) m_author ON true
    LEFT JOIN LATERAL (SELECT payload->'tags' AS v FROM events
                       WHERE stream_id = r.stream_id AND event_type = 'CourseMetadataChanged'
                         AND payload ? 'tags'
                       ORDER BY stream_version DESC LIMIT 1) m_tags ON true
    LEFT JOIN LATERAL (SELECT payload->'difficulty' AS v FROM events
                       WHERE stream_id = r.stream_id AND event_type = 'CourseMetadataChanged'
                         AND payload ? 'difficulty'
                       ORDER BY stream_version DESC LIMIT 1) m_diff ON true
    LEFT JOIN LATERAL (SELECT payload->'prerequisites' AS v FROM events
                       WHERE stream_id = r.stream_id AND event_type = 'CourseMetadataChanged'
                         AND payload ? 'prerequisites'
                       ORDER BY stream_version DESC LIMIT 1) m_pre ON true
    LEFT JOIN LATERAL (SELECT payload->'learning_outcomes' AS v FROM events
                       WHERE stream_id = r.stream_id AND event_type = 'CourseMetadataChanged'
                         AND payload ? 'learning_outcomes'
                       ORDER BY stream_version DESC LIMIT 1) m_out ON true
    WHERE r.event_type = 'CourseRequested'
)
SELECT id, user_id, request_id, title, description,
       CASE WHEN n = 1 THEN base ELSE left(base, 72) || '-' || n END AS slug,
       base, slug_transaction_id, slug_position,
       topic, grade_level, language, source_filter, status, error_message, total_lessons,
       lessons_generated, sources, prompt_tokens, completion_tokens, total_tokens, attempt, model,
       created_at, updated_at, generated_at, deleted_at,
       author, tags, difficulty, prerequisites, learning_outcomes, estimated_minutes,
       subtitle_languages, subtitles_generated
FROM (SELECT c.*, row_number() OVER (PARTITION BY base ORDER BY slug_transaction_id, slug_position) AS n
      FROM c) numbered
