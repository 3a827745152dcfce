-- The statistics of `source_chunks.tsv`: its most common lexemes, the
-- fraction of chunks containing each, then (PostgreSQL's layout) the
-- lowest and highest of those fractions and the fraction of NULLs.
SELECT s.most_common_elems::text::text[], s.most_common_elem_freqs
FROM pg_stats s
WHERE s.schemaname = current_schema() AND s.tablename = 'source_chunks' AND s.attname = 'tsv'
