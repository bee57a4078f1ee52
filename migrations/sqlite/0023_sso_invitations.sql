-- Accepting an invitation through single sign-on (keep the sqlite and
-- postgres flavours in step): a sign-in sent upstream from an invitation's
-- page resumes that invitation, not a client's authorization request.
-- `invitation_hash` is the invitation link's token's SHA-256 (`sha256:<hex>`).
ALTER TABLE sso_requests ADD COLUMN invitation_hash TEXT;
