-- The change feed without a shared counter (issue 13; keep the sqlite and
-- postgres flavours in step). SQLite's writers take turns anyway, so its
-- positions still come from `change_counter`; `xid_offset` is PostgreSQL's
-- and unused here. `pruned_through` is the highest position pruned from the
-- log: a reader behind it reloads instead of catching up.

CREATE TABLE change_feed (
    id             INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    xid_offset     BIGINT  NOT NULL,
    pruned_through BIGINT  NOT NULL
);
INSERT INTO change_feed (id, xid_offset, pruned_through) VALUES (1, 0, 0);
