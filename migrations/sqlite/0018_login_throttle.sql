-- Sign-in throttle counters, shared by every replica of the token service
-- (issue 13, several replicas; keep the sqlite and postgres flavours in step).
-- One row per counter: an account, a source address, or a source's passkey
-- ceremony starts, in one organization. `counter_key` is
-- `{scope}\n{organization}\n{subject}`; a counter is counted and checked in
-- one transaction that holds its row. `expires_ms`: when the counter is idle
-- long enough (and no longer locked) to be forgotten; the housekeeping
-- deletes it some time after.
CREATE TABLE login_throttle (
    counter_key     TEXT   NOT NULL PRIMARY KEY,
    organization    TEXT   NOT NULL,
    failures        BIGINT NOT NULL,
    last_failure_ms BIGINT NOT NULL,
    expires_ms      BIGINT NOT NULL
);
CREATE INDEX login_throttle_expiry ON login_throttle (expires_ms);
