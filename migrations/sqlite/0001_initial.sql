-- Portcullis store, SQLite flavour. Keep in step with ../postgres/0001_initial.sql:
-- same tables, columns and indexes; only the boolean type and the change
-- notification trigger differ. Times are unix milliseconds, lists are JSON text.

-- Desired state, written by the operator. Keyed by the Kubernetes object's uid;
-- `generation` orders writes. At most one object per (namespace, name).

CREATE TABLE organizations (
    uid          TEXT    NOT NULL PRIMARY KEY,
    namespace    TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    generation   BIGINT  NOT NULL,
    display_name TEXT    NOT NULL,
    catalog      TEXT    NOT NULL,
    workspaces   TEXT    NOT NULL,
    spec_json    TEXT    NOT NULL,
    updated_ms   BIGINT  NOT NULL
);
-- One Organization per namespace.
CREATE UNIQUE INDEX organizations_namespace ON organizations (namespace);
CREATE UNIQUE INDEX organizations_name ON organizations (namespace, name);

CREATE TABLE roles (
    uid            TEXT   NOT NULL PRIMARY KEY,
    namespace      TEXT   NOT NULL,
    name           TEXT   NOT NULL,
    generation     BIGINT NOT NULL,
    scope          TEXT   NOT NULL,
    permissions    TEXT   NOT NULL,
    included_roles TEXT   NOT NULL,
    spec_json      TEXT   NOT NULL,
    updated_ms     BIGINT NOT NULL
);
CREATE UNIQUE INDEX roles_name ON roles (namespace, name);

CREATE TABLE role_assignments (
    uid            TEXT   NOT NULL PRIMARY KEY,
    namespace      TEXT   NOT NULL,
    name           TEXT   NOT NULL,
    generation     BIGINT NOT NULL,
    principal_kind TEXT   NOT NULL,
    principal_name TEXT   NOT NULL,
    role           TEXT   NOT NULL,
    workspace      TEXT,
    expires_at_ms  BIGINT,
    spec_json      TEXT   NOT NULL,
    updated_ms     BIGINT NOT NULL
);
CREATE UNIQUE INDEX role_assignments_name ON role_assignments (namespace, name);
CREATE INDEX role_assignments_principal ON role_assignments (namespace, principal_kind, principal_name)
   ;
CREATE INDEX role_assignments_role ON role_assignments (namespace, role);

CREATE TABLE identity_providers (
    uid           TEXT    NOT NULL PRIMARY KEY,
    namespace     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    generation    BIGINT  NOT NULL,
    protocol      TEXT    NOT NULL,
    stage         TEXT    NOT NULL,
    email_domains TEXT    NOT NULL,
    scim_enabled  INTEGER NOT NULL,
    spec_json     TEXT    NOT NULL,
    updated_ms    BIGINT  NOT NULL
);
CREATE UNIQUE INDEX identity_providers_name ON identity_providers (namespace, name);

CREATE TABLE oauth_clients (
    uid           TEXT   NOT NULL PRIMARY KEY,
    namespace     TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    generation    BIGINT NOT NULL,
    client_type   TEXT   NOT NULL,
    redirect_uris TEXT   NOT NULL,
    spec_json     TEXT   NOT NULL,
    -- Set by the operator when it (re)generates the client secret, never by a spec write.
    secret_hash   TEXT,
    updated_ms    BIGINT NOT NULL
);
CREATE UNIQUE INDEX oauth_clients_name ON oauth_clients (namespace, name);

-- Deleted objects: a later write of the same uid applies only with a greater
-- generation, so a replayed or stale write cannot bring a deleted object back.
CREATE TABLE tombstones (
    uid        TEXT   NOT NULL PRIMARY KEY,
    kind       TEXT   NOT NULL,
    namespace  TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    generation BIGINT NOT NULL,
    deleted_ms BIGINT NOT NULL
);
CREATE INDEX tombstones_deleted ON tombstones (deleted_ms);

-- Public metadata of signing keys; private keys live in Kubernetes Secrets.
CREATE TABLE signing_keys (
    organization TEXT   NOT NULL,
    kid          TEXT   NOT NULL,
    algorithm    TEXT   NOT NULL,
    state        TEXT   NOT NULL,
    public_jwk   TEXT   NOT NULL,
    created_ms   BIGINT NOT NULL,
    activates_ms BIGINT,
    retires_ms   BIGINT,
    updated_ms   BIGINT NOT NULL,
    PRIMARY KEY (organization, kid)
);

-- Identities, written by the services (SCIM, JIT, local sign-up).

CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    organization  TEXT    NOT NULL,
    user_name     TEXT    NOT NULL,
    -- userName is unique per organization regardless of case (RFC 7643 §4.1.1).
    user_name_key TEXT    NOT NULL,
    display_name  TEXT,
    given_name    TEXT,
    family_name   TEXT,
    external_id   TEXT,
    active        INTEGER NOT NULL,
    source        TEXT    NOT NULL,
    password_hash TEXT,
    last_login_ms BIGINT,
    created_ms    BIGINT  NOT NULL,
    updated_ms    BIGINT  NOT NULL,
    version       BIGINT  NOT NULL
);
CREATE UNIQUE INDEX users_name ON users (organization, user_name_key);
CREATE INDEX users_external_id ON users (organization, external_id);

CREATE TABLE user_emails (
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    position     BIGINT  NOT NULL,
    organization TEXT    NOT NULL,
    value        TEXT    NOT NULL,
    value_key    TEXT    NOT NULL,
    kind         TEXT,
    is_primary   INTEGER NOT NULL,
    PRIMARY KEY (user_id, position)
);
CREATE INDEX user_emails_value ON user_emails (organization, value_key);

-- Second factors. Only what verification needs: a WebAuthn public key, or a
-- TOTP secret sealed by the caller (never plaintext).
CREATE TABLE mfa_enrolments (
    id            TEXT   NOT NULL PRIMARY KEY,
    user_id       TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT   NOT NULL,
    label         TEXT,
    credential_id TEXT,
    public_key    TEXT,
    sign_count    BIGINT NOT NULL,
    sealed_secret TEXT,
    created_ms    BIGINT NOT NULL,
    last_used_ms  BIGINT
);
CREATE INDEX mfa_enrolments_user ON mfa_enrolments (user_id);
CREATE UNIQUE INDEX mfa_enrolments_credential ON mfa_enrolments (credential_id);

CREATE TABLE groups (
    id               TEXT   NOT NULL PRIMARY KEY,
    organization     TEXT   NOT NULL,
    display_name     TEXT   NOT NULL,
    display_name_key TEXT   NOT NULL,
    source           TEXT   NOT NULL,
    external_id      TEXT,
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL,
    version          BIGINT NOT NULL
);
CREATE UNIQUE INDEX groups_name ON groups (organization, display_name_key);
CREATE INDEX groups_external_id ON groups (organization, external_id);

-- One row per member: adding a member to a large group is one insert.
CREATE TABLE memberships (
    group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

-- Change log. Every committing transaction that changed something takes the
-- next `seq` from the single counter row as its last statement; the row lock
-- makes sequence order commit order, so any snapshot sees a prefix of the log.

CREATE TABLE change_counter (
    id  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq BIGINT  NOT NULL
);
INSERT INTO change_counter (id, seq) VALUES (1, 0);

CREATE TABLE change_log (
    seq          BIGINT NOT NULL PRIMARY KEY,
    organization TEXT   NOT NULL,
    committed_ms BIGINT NOT NULL,
    changes      TEXT   NOT NULL
);
CREATE INDEX change_log_organization ON change_log (organization, seq);
