-- The subtitles of lesson $2 of course $1 in language $3 (queries::SUBTITLES): cues, model.
SELECT cues, model FROM subtitles
WHERE course_id = $1 AND lesson_number = $2 AND language = $3
