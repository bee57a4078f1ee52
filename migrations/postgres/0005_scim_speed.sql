-- SCIM service speed (keep the sqlite and postgres flavours in step).
--
-- `userName co "…"` (and sw / ew) is `user_name_key LIKE '%…%'`: without an
-- index it reads every user of the table, twice per page (the page and the
-- COUNT(*) of totalResults). A GIN trigram index answers the LIKE from the
-- index. pg_trgm ships with the PostgreSQL server package and is a trusted
-- extension since PostgreSQL 13: the database's owner may create it without
-- being superuser. Where it cannot be created (no CREATE privilege on the
-- database, a build without contrib), the migration still succeeds, without
-- the index: those filters then scan, as before. Create the extension and
-- `users_user_name_trgm` by hand to get it later.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm is not available (%): userName co/sw/ew filters will scan', SQLERRM;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX users_user_name_trgm ON users USING gin (user_name_key gin_trgm_ops);
    END IF;
END
$$;
