-- Login (keep the sqlite and postgres flavours in step): browser sessions at
-- the sign-in pages, and the last TOTP step each enrolment accepted.

-- A signed-in browser. The cookie carries a random secret; only its SHA-256
-- (`secret_hash`, hex) is stored. `id` is the public session id that codes
-- and refresh tokens are issued under (end-session revokes by it).
CREATE TABLE sessions (
    id           TEXT   NOT NULL PRIMARY KEY,
    secret_hash  TEXT   NOT NULL,
    organization TEXT   NOT NULL,
    user_id      TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time_ms BIGINT NOT NULL,
    -- JSON list of RFC 8176 method references (`pwd`, `otp`, `mfa`).
    amr          TEXT   NOT NULL,
    created_ms   BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL,
    ended_ms     BIGINT
);
CREATE UNIQUE INDEX sessions_secret ON sessions (secret_hash);
CREATE INDEX sessions_user ON sessions (organization, user_id);
CREATE INDEX sessions_expiry ON sessions (expires_ms);

-- RFC 6238 §5.2: a TOTP code is accepted once. A step is recorded only if it
-- is later than the one stored (one conditional upsert: no race).
CREATE TABLE totp_last_steps (
    enrolment_id TEXT   NOT NULL PRIMARY KEY REFERENCES mfa_enrolments (id) ON DELETE CASCADE,
    last_step    BIGINT NOT NULL
);
