-- SCIM service speed (keep the sqlite and postgres flavours in step).
--
-- The PostgreSQL flavour adds a pg_trgm GIN index for `userName co "…"`.
-- SQLite has no trigram index for LIKE on an ordinary table: there, `co`
-- filters read the organization's users through `users_name`, which is fast
-- enough at the sizes an embedded store holds. This migration only keeps the
-- version numbers of the two flavours in step.
SELECT 1;
