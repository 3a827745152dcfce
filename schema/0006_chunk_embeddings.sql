-- Chunk vectors of optional semantic retrieval (EMBEDDINGS_MODEL and
-- EMBEDDINGS_BASE_URL set), content-addressed: one row per model and
-- SHA-256 of a chunk's text (its UTF-8 bytes). Written at ingest before the
-- document's event is appended, so the log's chunks always find their
-- vectors here: a replay rebuilds `source_chunks` from the log and never
-- calls the endpoint, and a text seen before (another version, another
-- user, the same paragraph twice) is never embedded again. Not a
-- projection: nothing in the log says what is here, and `replay` leaves it
-- alone. Retrieval joins the current chunks to it by
-- `sha256(convert_to(text, 'UTF8'))`.
CREATE TABLE IF NOT EXISTS chunk_embeddings (
    model      text        NOT NULL,
    text_hash  bytea       NOT NULL CHECK (length(text_hash) = 32),
    vector     real[]      NOT NULL CHECK (cardinality(vector) > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, text_hash)
);
