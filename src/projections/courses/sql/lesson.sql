-- One lesson with its content and quiz (queries::Lesson).
SELECT lesson_number, title, concepts, objectives, status, generated_at,
       content_md, content_json, sources, model, checks
FROM v_lessons_full WHERE course_id = $1 AND lesson_number = $2
