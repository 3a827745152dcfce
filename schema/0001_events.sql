-- The event store: one append-only table holding every fact about every course.

CREATE TABLE IF NOT EXISTS events (
    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id       uuid        NOT NULL,
    stream_version  integer     NOT NULL CHECK (stream_version >= 0),
    event_type      text        NOT NULL,
    event_version   smallint    NOT NULL DEFAULT 1 CHECK (event_version >= 1),
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The writing transaction: readers only pass the horizon of transactions that
    -- can no longer commit (see read_all_after), so no late commit is skipped.
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);

-- The gap-safe global scan: ORDER BY (transaction_id, global_position).
CREATE INDEX IF NOT EXISTS events_transaction_position_idx
    ON events (transaction_id, global_position);
-- Listing by type (projections that only want a few types, operators).
CREATE INDEX IF NOT EXISTS events_type_idx ON events (event_type);

-- Append-only, enforced by the database rather than by convention.
CREATE OR REPLACE FUNCTION events_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

DROP TRIGGER IF EXISTS events_no_update_delete ON events;
CREATE TRIGGER events_no_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_reject_change();

DROP TRIGGER IF EXISTS events_no_truncate ON events;
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_reject_change();

-- Subscribers are woken by NOTIFY coursegen_events, sent by the store right
-- after an append commits (src/store/mod.rs, EventStore::wake_readers): a
-- NOTIFY inside the appending transaction would hold the cluster-wide notify
-- lock through every commit and serialize all appends.
