-- Access requests (issue 17, part 1; keep the sqlite and postgres flavours
-- in step): a principal asks for a role, in the organization or one
-- workspace, for a bounded time; approvers of the Organization's
-- `spec.accessRequests` policy approve (one, or two distinct for the roles
-- it names) or deny. On approval the grant is a RoleAssignment row with
-- `owner = 'access-request'` and `expires_at_ms`, which the access index
-- stops honouring at that instant; the expiry sweep then marks the request
-- `expired` and deletes the row.
--
-- `status`: pending | approved | denied | expired | revoked (an approved
-- request past `expires_ms` reads as expired before the sweep has run).
-- `requester_key`: the principal as the access index keys it (lowercase
-- for users and groups), so that "mine" and "never your own" compare alike.
CREATE TABLE access_requests (
    id               TEXT    NOT NULL PRIMARY KEY,
    organization     TEXT    NOT NULL,
    requester_kind   TEXT    NOT NULL,
    requester_name   TEXT    NOT NULL,
    requester_key    TEXT    NOT NULL,
    -- Who filed it: the requester, or an administrator on their behalf.
    requested_by     TEXT    NOT NULL,
    role             TEXT    NOT NULL,
    workspace        TEXT,
    duration_ms      BIGINT  NOT NULL,
    justification    TEXT    NOT NULL,
    -- How many distinct approvers the policy asked for when it was filed.
    approvals_needed BIGINT  NOT NULL,
    status           TEXT    NOT NULL,
    created_ms       BIGINT  NOT NULL,
    decided_ms       BIGINT,
    decided_by       TEXT,
    decision_comment TEXT,
    expires_ms       BIGINT,
    -- The uid of the RoleAssignment row the approval made.
    assignment_uid   TEXT,
    updated_ms       BIGINT  NOT NULL,
    version          BIGINT  NOT NULL
);
CREATE INDEX access_requests_by_created ON access_requests (organization, created_ms, id);
CREATE INDEX access_requests_by_requester ON access_requests (organization, requester_key, status);
CREATE INDEX access_requests_due ON access_requests (status, expires_ms);

-- One row per approver and request: the same approver approving twice
-- counts once (the primary key refuses the second).
CREATE TABLE access_request_approvals (
    request_id    TEXT    NOT NULL,
    approver_key  TEXT    NOT NULL,
    approver      TEXT    NOT NULL,
    approved_ms   BIGINT  NOT NULL,
    comment       TEXT,
    PRIMARY KEY (request_id, approver_key)
);

-- The notifications outbox: one row per step of a request (`event`:
-- requested | approved | denied | expired | revoked), written in that
-- step's transaction, delivered by the token service to the webhooks of
-- the Organization's `spec.accessRequests.notifications` and retried with
-- backoff. A worker claims a row by setting `lease_until_ms` (compare-and-
-- set), so replicas never deliver the same row at once. `delivered_json`:
-- the webhook URLs that accepted it (a retry skips them); `done_ms` set
-- when every webhook has, or when the attempts are spent (`last_error`).
CREATE TABLE access_request_notifications (
    id              TEXT    NOT NULL PRIMARY KEY,
    organization    TEXT    NOT NULL,
    request_id      TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    created_ms      BIGINT  NOT NULL,
    attempts        BIGINT  NOT NULL,
    next_attempt_ms BIGINT  NOT NULL,
    lease_until_ms  BIGINT,
    delivered_json  TEXT    NOT NULL,
    done_ms         BIGINT,
    last_error      TEXT
);
CREATE INDEX access_request_notifications_due ON access_request_notifications (done_ms, next_attempt_ms);
