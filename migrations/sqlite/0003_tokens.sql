-- Token service state: authorization codes, refresh-token families and their
-- tokens, revoked access tokens. Same in both flavours (no booleans: a
-- nullable time says whether something happened). Every code and token is
-- stored only as `sha256:<hex>` of its value; times are unix milliseconds.
-- `organization` is the organization's namespace, as everywhere in the store.

CREATE TABLE authorization_codes (
    code_hash      TEXT   NOT NULL PRIMARY KEY,
    organization   TEXT   NOT NULL,
    client_id      TEXT   NOT NULL,
    user_id        TEXT   NOT NULL,
    redirect_uri   TEXT   NOT NULL,
    scope          TEXT   NOT NULL,
    nonce          TEXT,
    code_challenge TEXT,
    auth_time_ms   BIGINT NOT NULL,
    amr            TEXT   NOT NULL,
    session_id     TEXT,
    created_ms     BIGINT NOT NULL,
    expires_ms     BIGINT NOT NULL,
    -- Set by the one redemption that wins; a second one finds it set.
    used_ms        BIGINT,
    -- What that redemption issued, revoked if the code comes back.
    family_id      TEXT,
    access_jti     TEXT,
    access_exp_ms  BIGINT
);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_ms);

CREATE TABLE refresh_token_families (
    family_id      TEXT   NOT NULL PRIMARY KEY,
    organization   TEXT   NOT NULL,
    client_id      TEXT   NOT NULL,
    user_id        TEXT   NOT NULL,
    scope          TEXT   NOT NULL,
    auth_time_ms   BIGINT NOT NULL,
    amr            TEXT   NOT NULL,
    session_id     TEXT,
    -- Counter of the only token of the family that may still be used.
    counter        BIGINT NOT NULL,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL,
    -- From the sign-in; rotation never extends it.
    expires_ms     BIGINT NOT NULL,
    revoked_ms     BIGINT,
    revoked_reason TEXT
);
CREATE INDEX refresh_token_families_session ON refresh_token_families (organization, session_id);
CREATE INDEX refresh_token_families_expiry ON refresh_token_families (expires_ms);

CREATE TABLE refresh_tokens (
    token_hash TEXT   NOT NULL PRIMARY KEY,
    family_id  TEXT   NOT NULL,
    counter    BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Access tokens revoked before their expiry (RFC 7009, code reuse), by jti.
-- Introspection and userinfo consult it; rows can go once expires_ms passed.
CREATE TABLE revoked_access_tokens (
    jti          TEXT   NOT NULL PRIMARY KEY,
    organization TEXT   NOT NULL,
    expires_ms   BIGINT NOT NULL
);
