INSERT INTO source_chunks{suffix} ({columns})
SELECT c.id, $1, $2, c.ordinal, $3, $4, coalesce(c.heading_path, '{}'), c.page, c.text,
       coursegen_ts_config($5),
       setweight(to_tsvector(coursegen_ts_config($5), $6), 'A')
       || setweight(to_tsvector(coursegen_ts_config($5), array_to_string(coalesce(c.heading_path, '{}'), ' ')), 'B')
       || setweight(to_tsvector(coursegen_ts_config($5), c.text), 'C'),
       true
FROM jsonb_to_recordset($7::jsonb) AS c(id uuid, ordinal int, heading_path text[], page int, text text)
