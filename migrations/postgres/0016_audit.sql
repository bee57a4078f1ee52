-- The audit trail (keep the sqlite and postgres flavours in step; numbered
-- apart from the other migrations of the same round of work).
--
-- An event is appended unsealed (`chain_seq` NULL) in the transaction of the
-- write it records; writers touch no shared row. A sealer then links the
-- unsealed events of an organization, in the order it finds them, into the
-- organization's hash chain: `chain_seq`, `prev_hash`, `hash`. Sealers of one
-- organization exclude each other through its `audit_chains` row, which
-- writers never lock.
CREATE TABLE audit_events (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization TEXT    NOT NULL,
    occurred_ms  BIGINT  NOT NULL,
    action       TEXT    NOT NULL,
    outcome      TEXT    NOT NULL,
    -- Filters of the admin API: any of the actor's subject, name, client or
    -- identity provider; the target's id or name.
    actor_subject TEXT,
    actor_name    TEXT,
    actor_client  TEXT,
    actor_idp     TEXT,
    target_type   TEXT   NOT NULL,
    target_id     TEXT,
    target_name   TEXT,
    -- The event's canonical JSON, hashed byte for byte.
    event_json   TEXT    NOT NULL,
    chain_seq    BIGINT,
    prev_hash    TEXT,
    hash         TEXT
);
CREATE UNIQUE INDEX audit_events_chain ON audit_events (organization, chain_seq);
CREATE INDEX audit_events_unsealed ON audit_events (organization, id) WHERE chain_seq IS NULL;
CREATE INDEX audit_events_time ON audit_events (organization, occurred_ms);

-- The head of each organization's chain (the last sealed link) and its
-- anchor (the last link retention deleted; seq 0 and the genesis hash until
-- then): the first stored event must follow the anchor, so a deleted oldest
-- row is told apart from retention.
CREATE TABLE audit_chains (
    organization TEXT   NOT NULL PRIMARY KEY,
    last_seq     BIGINT NOT NULL,
    last_hash    TEXT   NOT NULL,
    sealed_ms    BIGINT NOT NULL,
    pruned_seq   BIGINT NOT NULL DEFAULT 0,
    pruned_hash  TEXT   NOT NULL DEFAULT '0000000000000000000000000000000000000000000000000000000000000000'
);
