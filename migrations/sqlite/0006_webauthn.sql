-- WebAuthn (keep the sqlite and postgres flavours in step): the credentials
-- users enrolled at the account page, and the short-lived state of a
-- registration or authentication ceremony between its two requests.

-- One credential of one user of one organization. `passkey` is webauthn-rs'
-- serialised `Passkey` (public key, counter, backup state); `sign_count` and
-- `backed_up` repeat what it holds for people reading the table.
CREATE TABLE webauthn_credentials (
    id            TEXT   NOT NULL PRIMARY KEY,
    organization  TEXT   NOT NULL,
    user_id       TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- base64url of the credential id the authenticator chose.
    credential_id TEXT   NOT NULL,
    -- `passkey` (discoverable, enrolled to sign in without a password) or
    -- `security-key` (a second factor after the password).
    kind          TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    passkey       TEXT   NOT NULL,
    sign_count    BIGINT NOT NULL,
    backed_up     BIGINT NOT NULL,
    created_ms    BIGINT NOT NULL,
    last_used_ms  BIGINT
);
CREATE UNIQUE INDEX webauthn_credentials_id ON webauthn_credentials (organization, credential_id);
CREATE INDEX webauthn_credentials_user ON webauthn_credentials (organization, user_id);

-- A ceremony started and not yet finished. `binding` ties it to the browser
-- that started it (SHA-256 of the pre-login cookie, or the session id); a
-- ceremony is taken (deleted) by the request that finishes it.
CREATE TABLE webauthn_ceremonies (
    id           TEXT   NOT NULL PRIMARY KEY,
    organization TEXT   NOT NULL,
    purpose      TEXT   NOT NULL,
    binding      TEXT   NOT NULL,
    user_id      TEXT,
    state        TEXT   NOT NULL,
    expires_ms   BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies (expires_ms);
