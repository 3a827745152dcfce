-- Every lesson of course $1 with its content and quiz, in order (rows of
-- queries::Lesson; what an export reads in one statement).
SELECT lesson_number, title, concepts, objectives, status, generated_at,
       content_md, content_json, sources, model, checks
FROM v_lessons_full WHERE course_id = $1 ORDER BY lesson_number
