-- Sealed signing keys (keep the sqlite and postgres flavours in step): the
-- private half of each signing key, with its metadata, sealed (AES-256-GCM)
-- under the key-encryption key the operator and the token service share
-- (src/sealing.rs). NULL for a key written before keys lived in the store;
-- the operator fills it in from the key's Secret on its next pass.
ALTER TABLE signing_keys ADD COLUMN sealed_key TEXT;
