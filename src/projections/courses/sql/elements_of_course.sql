-- The interactive elements of every lesson of course $1: lesson number and
-- body, in lesson and element order (queries::ELEMENTS_OF_COURSE).
SELECT lesson_number, body FROM interactive_elements
WHERE course_id = $1
ORDER BY lesson_number, position
