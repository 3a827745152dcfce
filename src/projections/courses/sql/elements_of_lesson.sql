-- The interactive elements of lesson $2 of course $1, in order (queries::ELEMENTS_OF_LESSON).
SELECT body FROM interactive_elements
WHERE course_id = $1 AND lesson_number = $2
ORDER BY position
