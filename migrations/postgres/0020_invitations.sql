-- Invitations (issue 16, part 2; keep the sqlite and postgres flavours in
-- step): an administrator invites an email address, with roles, to the
-- organization or one workspace; the invitee accepts through a single-use
-- link that only the mail carries.
--
-- `token_hash`: SHA-256 of the link's token (hex); the token itself is never
-- stored. A resend replaces it, so the previous link stops working.
-- `status`: pending | accepted | revoked (an expired invitation stays
-- `pending` with `expires_ms` in the past).
-- `roles_json`: the role names, JSON; at acceptance each becomes an
-- API-owned RoleAssignment of the new user (in `workspace` when set).
CREATE TABLE invitations (
    id               TEXT    NOT NULL PRIMARY KEY,
    organization     TEXT    NOT NULL,
    email            TEXT    NOT NULL,
    -- lowercased: one pending invitation per address, filters ignore case.
    email_key        TEXT    NOT NULL,
    workspace        TEXT,
    roles_json       TEXT    NOT NULL,
    token_hash       TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    invited_by       TEXT    NOT NULL,
    created_ms       BIGINT  NOT NULL,
    expires_ms       BIGINT  NOT NULL,
    -- How many links were made (1 + resends), the last mail's outcome.
    -- The lifetime each link gets (a resend starts it again).
    lifetime_ms      BIGINT  NOT NULL,
    sends            BIGINT  NOT NULL,
    mail_sent_ms     BIGINT,
    mail_error       TEXT,
    accepted_ms      BIGINT,
    accepted_user_id TEXT,
    revoked_ms       BIGINT,
    updated_ms       BIGINT  NOT NULL,
    version          BIGINT  NOT NULL
);
CREATE UNIQUE INDEX invitations_token ON invitations (token_hash);
CREATE INDEX invitations_by_created ON invitations (organization, created_ms, id);
CREATE INDEX invitations_by_email ON invitations (organization, email_key);
