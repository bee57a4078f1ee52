-- The change feed without a shared counter (issue 13; keep the sqlite and
-- postgres flavours in step). A change's position is its transaction id
-- plus `xid_offset`, taken without any lock, so concurrent writers commit
-- (and flush WAL) together instead of queueing on `change_counter`. Readers
-- consume positions below the oldest transaction still running (their
-- snapshot's xmin), which no later commit can land under; see
-- src/store/changes.rs. `change_counter` is kept, no longer written.
--
-- `xid_offset` puts the new positions above every position taken from the
-- counter before this migration. `pruned_through` is the highest position
-- pruned from the log: a reader behind it reloads instead of catching up.

CREATE TABLE change_feed (
    id             INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    xid_offset     BIGINT  NOT NULL,
    pruned_through BIGINT  NOT NULL
);
INSERT INTO change_feed (id, xid_offset, pruned_through)
    SELECT 1, GREATEST(0, seq + 1 - pg_current_xact_id()::text::bigint), 0 FROM change_counter;

-- NOTIFY inside a writing transaction takes a server-wide lock from its
-- commit until the commit has been flushed, which queues writers just as the
-- counter did. The store now notifies right after commit instead, in a
-- transaction of its own that writes nothing (so waits for no flush).
ALTER TABLE change_log DISABLE TRIGGER change_log_notify;

-- A process older than this migration would still take positions from
-- `change_counter`, below every transaction-id position, where no reader of
-- this version looks: its changes would be lost to the followers. So its
-- writes fail, saying why, until it is replaced (docs/upgrading.md).
CREATE FUNCTION change_counter_retired() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the store''s change feed moved to transaction-id positions (migration 22): this process is older than the store; upgrade it';
END
$$;
CREATE TRIGGER change_counter_retired BEFORE UPDATE ON change_counter
    FOR EACH ROW EXECUTE FUNCTION change_counter_retired();
