-- Checkpoint of the AMQP reply publisher: the place in the global log
-- (see read_all_after) up to which every reply has been confirmed by the
-- broker. It only advances after the publisher confirms, so a crash re-sends
-- the replies of the last unconfirmed batch (at-least-once), never loses one.

CREATE TABLE IF NOT EXISTS amqp_reply_checkpoint (
    name            text PRIMARY KEY,
    transaction_id  bigint NOT NULL DEFAULT 0,
    global_position bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
