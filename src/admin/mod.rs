//! Protecting APIs with Portcullis access tokens: the [`RequirePermission`]
//! extractor (the seeds' `@requires_permission`), used by the check API and,
//! later, the admin API.

pub mod require_permission;

pub use require_permission::{Permission, PermissionAuthority, RequirePermission};
