-- The AMQP reply publisher runs under the projection runner: its checkpoint
-- moves from amqp_reply_checkpoint (schema/0003_amqp.sql) to the
-- 'amqp_replies' row of projection_checkpoints, at the same place in the log,
-- so that an upgrade neither re-sends nor skips a reply.
--
-- The old table goes: an older process still publishing from it fails its
-- next checkpoint and lets go of the publisher lock (old and new processes
-- share its key); the batch it could not checkpoint is sent again by the new
-- publisher (replies are at-least-once), none is lost.

INSERT INTO projection_checkpoints (name, transaction_id, global_position, updated_at)
SELECT 'amqp_replies', transaction_id, global_position, updated_at
FROM amqp_reply_checkpoint
WHERE name = 'replies'
ON CONFLICT (name) DO NOTHING;

DROP TABLE amqp_reply_checkpoint;
