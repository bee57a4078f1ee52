-- A group member's `display` as the SCIM client sent it (RFC 7643 §4.2),
-- returned instead of the user's userName when set (keep the sqlite and
-- postgres flavours in step).
ALTER TABLE memberships ADD COLUMN display TEXT;
