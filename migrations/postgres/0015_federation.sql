-- Single sign-on through upstream identity providers (keep the sqlite and
-- postgres flavours in step; numbered after issue 15).

-- A sign-in sent to an upstream and not answered yet. The browser carries
-- the random `state` (OIDC) or `RelayState` (SAML) token; only its SHA-256
-- is stored (`id_hash`), with the SHA-256 of the browser's pre-login id it
-- is bound to. `authorization_request` holds the client's authorization
-- request (JSON) to resume once the upstream answers; `saml_request_id` is
-- the AuthnRequest's ID a response must answer; `verified_identity` is what
-- the ACS verified, waiting for the browser's next request.
CREATE TABLE sso_requests (
    id_hash               TEXT   NOT NULL PRIMARY KEY,
    organization          TEXT   NOT NULL,
    identity_provider     TEXT   NOT NULL,
    pre_login_hash        TEXT   NOT NULL,
    saml_request_id       TEXT,
    authorization_request TEXT   NOT NULL,
    verified_identity     TEXT,
    created_ms            BIGINT NOT NULL,
    expires_ms            BIGINT NOT NULL
);
CREATE INDEX sso_requests_expiry ON sso_requests (expires_ms);

-- SAML assertion IDs accepted, kept until the assertion could no longer be
-- presented: a second post of one is a replay, whichever replica gets it.
CREATE TABLE saml_assertions_seen (
    organization      TEXT   NOT NULL,
    identity_provider TEXT   NOT NULL,
    assertion_id      TEXT   NOT NULL,
    expires_ms        BIGINT NOT NULL,
    PRIMARY KEY (organization, identity_provider, assertion_id)
);
CREATE INDEX saml_assertions_seen_expiry ON saml_assertions_seen (expires_ms);

-- Which local user an upstream subject is.
CREATE TABLE federated_identities (
    organization      TEXT   NOT NULL,
    identity_provider TEXT   NOT NULL,
    subject           TEXT   NOT NULL,
    user_id           TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_ms        BIGINT NOT NULL,
    last_sign_in_ms   BIGINT NOT NULL,
    PRIMARY KEY (organization, identity_provider, subject)
);
CREATE INDEX federated_identities_user ON federated_identities (user_id);

-- Sign-ins through each IdentityProvider per hour (for "the last 24 hours"),
-- written by the token service, read by the operator into the status.
CREATE TABLE sso_sign_in_counts (
    organization      TEXT   NOT NULL,
    identity_provider TEXT   NOT NULL,
    hour              BIGINT NOT NULL,
    successes         BIGINT NOT NULL,
    failures          BIGINT NOT NULL,
    PRIMARY KEY (organization, identity_provider, hour)
);

-- The last error and success of each IdentityProvider, and the successful
-- sign-ins since its rollout stage last changed.
CREATE TABLE sso_health (
    organization        TEXT   NOT NULL,
    identity_provider   TEXT   NOT NULL,
    stage               TEXT   NOT NULL,
    successes_in_stage  BIGINT NOT NULL,
    last_success_ms     BIGINT,
    last_error          TEXT,
    last_error_reason   TEXT,
    last_error_ms       BIGINT,
    PRIMARY KEY (organization, identity_provider)
);
