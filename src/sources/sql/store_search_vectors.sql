-- The search vectors of the chunks of the document events being appended
-- (`new_events`: see `EventStore::append_and`), for `chunk_search_vectors`
-- (schema/0008_chunk_search_vectors.sql): computed before the events are
-- written, stored in their statement. Each payload's fields are read once
-- (`jsonb_to_record`, its configuration looked up once: `OFFSET 0` keeps
-- the subquery from being flattened into an expression per chunk), its
-- chunks once each.
SELECT c.id AS chunk_id,
       coursegen_chunk_tsv(d.cfg, d.title, coalesce(c.heading_path, '{}'), c.text) AS tsv
FROM (
    SELECT p.title, p.chunks, coursegen_ts_config(p.language) AS cfg
    FROM new_events n
    CROSS JOIN LATERAL jsonb_to_record(n.payload) AS p(title text, language text, chunks jsonb)
    WHERE n.event_type IN ('SourceAdded', 'SourceUpdated')
    OFFSET 0
) d
CROSS JOIN LATERAL jsonb_to_recordset(d.chunks) AS c(id uuid, heading_path text[], text text)
