-- The admin API (issue 16): who owns a Role or RoleAssignment row (keep the
-- sqlite and postgres flavours in step).
--
-- `manifest`: synced from Kubernetes or the standalone manifests folder; the
-- operator's sweep and the folder sync delete it when its manifest goes.
-- `api`: written through the admin API of an organization whose
-- `spec.administration.roleSource` is `API`; no sync ever removes it.
ALTER TABLE roles ADD COLUMN owner TEXT NOT NULL DEFAULT 'manifest';
ALTER TABLE role_assignments ADD COLUMN owner TEXT NOT NULL DEFAULT 'manifest';
