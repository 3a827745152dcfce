-- A course's table of contents (queries::LessonEntry).
SELECT lesson_number, title, concepts, objectives, status, generated_at
FROM lessons WHERE course_id = $1 ORDER BY lesson_number
