-- The vectors of model `$3` of `$1`'s current chunks (of live documents)
-- under the prefix `$2` (a `LIKE` pattern), found by the SHA-256 of each
-- chunk's text. A chunk without a vector of that model (ingested before
-- embeddings were configured) is no candidate: full text still finds it.
SELECT c.id, e.vector
FROM source_chunks c
JOIN chunk_embeddings e
  ON e.model = $3 AND e.text_hash = sha256(convert_to(c.text, 'UTF8'))
WHERE c.current AND c.user_id = $1 AND c.path LIKE $2
