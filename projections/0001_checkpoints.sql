-- Where each projection is in the log, and whether it is healthy.
--
-- A runner advances its row in the same transaction as the rows it projected,
-- so a crash never applies an event twice nor skips one. A poison event sets
-- state = 'failed' with the error and the event's position; the runner then
-- idles until an operator sets the state back to 'running' (or a replay
-- rebuilds the projection).

CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name                   text PRIMARY KEY,
    transaction_id         bigint      NOT NULL DEFAULT 0,
    global_position        bigint      NOT NULL DEFAULT 0,
    state                  text        NOT NULL DEFAULT 'running'
                           CHECK (state IN ('running', 'stopped', 'failed')),
    error                  text,
    failed_transaction_id  bigint,
    failed_position        bigint,
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- Swaps a rebuilt set of tables in: for each name in `tables`, drops the live
-- table (and the views on it), renames `<name><suffix>` to `<name>` and strips
-- the suffix from its index and constraint names. Run it inside the
-- transaction that also recreates the views and writes the checkpoint.
CREATE OR REPLACE FUNCTION coursegen_swap_tables(tables text[], suffix text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t   text;
    idx text;
BEGIN
    FOREACH t IN ARRAY tables LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', t);
        EXECUTE format('ALTER TABLE %I RENAME TO %I', t || suffix, t);
        FOR idx IN
            SELECT indexname FROM pg_indexes
            WHERE schemaname = current_schema() AND tablename = t
              AND starts_with(indexname, t || suffix)
        LOOP
            EXECUTE format('ALTER INDEX %I RENAME TO %I',
                           idx, t || substr(idx, length(t || suffix) + 1));
        END LOOP;
    END LOOP;
END
$$;

-- Drops a half-built set of tables left by an interrupted replay.
CREATE OR REPLACE FUNCTION coursegen_drop_tables(tables text[], suffix text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY tables LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', t || suffix);
    END LOOP;
END
$$;

-- A URL-friendly form of a title: lower case ASCII letters and digits joined
-- by single dashes, at most 80 characters, 'course' when nothing is left.
CREATE OR REPLACE FUNCTION coursegen_slugify(title text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(
        nullif(trim(BOTH '-' FROM left(
            trim(BOTH '-' FROM regexp_replace(lower(coalesce(title, '')), '[^a-z0-9]+', '-', 'g')),
            80)), ''),
        'course')
$$;
