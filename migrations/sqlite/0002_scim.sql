-- SCIM service (keep the sqlite and postgres flavours in step): bearer tokens
-- per IdentityProvider, sync health, and the SCIM attributes of a user that
-- have no column of their own.

-- Set by the operator when it (re)generates an IdentityProvider's SCIM token.
-- `token_hash` is `sha256:<hex>` of the token; the token itself is never stored.
CREATE TABLE scim_tokens (
    organization      TEXT   NOT NULL,
    identity_provider TEXT   NOT NULL,
    token_hash        TEXT   NOT NULL,
    created_ms        BIGINT NOT NULL,
    PRIMARY KEY (organization, identity_provider)
);

-- Written by the SCIM service on every authenticated request; read by the
-- operator into the IdentityProvider's status.
CREATE TABLE scim_sync_health (
    organization      TEXT   NOT NULL,
    identity_provider TEXT   NOT NULL,
    last_request_ms   BIGINT NOT NULL,
    last_error        TEXT,
    last_error_ms     BIGINT,
    request_count     BIGINT NOT NULL,
    error_count       BIGINT NOT NULL,
    PRIMARY KEY (organization, identity_provider)
);

-- The rest of a SCIM User (title, phoneNumbers, the enterprise extension…) as
-- JSON; the columns of `users` stay the source of what they hold.
ALTER TABLE users ADD COLUMN scim_json TEXT;
-- The IdentityProvider whose SCIM client created the user or group.
ALTER TABLE users ADD COLUMN provisioned_by TEXT;
ALTER TABLE groups ADD COLUMN provisioned_by TEXT;
CREATE INDEX users_provisioned_by ON users (organization, provisioned_by);
CREATE INDEX groups_provisioned_by ON groups (organization, provisioned_by);
