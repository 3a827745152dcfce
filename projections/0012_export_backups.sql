-- The file backup projector (`file_backup`, src/export/backup.rs): which
-- directory under EXPORT_DIR holds which course, so that a renamed course's
-- old directory is removed and a deleted one's moved to .deleted/. Written in
-- the projector's batch transaction, with its checkpoint.

CREATE TABLE IF NOT EXISTS export_backups (
    course_id   uuid        PRIMARY KEY,
    slug        text        NOT NULL,
    exported_at timestamptz NOT NULL
);
