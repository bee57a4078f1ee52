-- Hardening for production (issue 13; keep the sqlite and postgres flavours
-- in step).

-- The housekeeping purges revoked access tokens once they expired.
CREATE INDEX revoked_access_tokens_expiry ON revoked_access_tokens (expires_ms);
