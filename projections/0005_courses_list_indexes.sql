-- The `courses` projection, list indexes shaped like the API's list queries:
-- live courses only (`deleted_at IS NULL`, which every list filters on), in
-- the default order with its tie-breaker (`created_at DESC, id DESC`), per
-- user and for everyone. A page is then a walk of offset + per_page index
-- entries, and the page's `total` an index-only count, instead of reading
-- and sorting every course of the user. They replace the plain
-- `(user_id, created_at)` and `(created_at)` indexes of 0004.
--
-- 0004's table function is kept under a new name and wrapped, so a replay
-- builds its fresh tables with the same indexes as the live ones.
ALTER FUNCTION coursegen_create_courses_tables(text) RENAME TO coursegen_create_courses_tables_0004;

CREATE OR REPLACE FUNCTION coursegen_create_courses_list_indexes(suffix text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c text := 'courses' || suffix;
BEGIN
    EXECUTE format('DROP INDEX IF EXISTS %I', c || '_user_created_idx');
    EXECUTE format('DROP INDEX IF EXISTS %I', c || '_created_idx');
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (user_id, created_at DESC, id DESC)
                    WHERE deleted_at IS NULL', c || '_user_list_idx', c);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (created_at DESC, id DESC)
                    WHERE deleted_at IS NULL', c || '_list_idx', c);
END
$$;

CREATE OR REPLACE FUNCTION coursegen_create_courses_tables(suffix text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM coursegen_create_courses_tables_0004(suffix);
    PERFORM coursegen_create_courses_list_indexes(suffix);
END
$$;

SELECT coursegen_create_courses_list_indexes('');
