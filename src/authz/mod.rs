//! Access resolution: who may do what, where. Pure and synchronous; the store
//! and the services feed it, it never does I/O.
//!
//! ```text
//!   User ──member of──► Group           Client
//!  (active?)              │                │
//!     │                   │                │      principal
//!     └─────────────┐     │     ┌──────────┘
//!                   ▼     ▼     ▼
//!                  Assignment (id, scope: organization | workspace, expiry?)
//!                        │ role
//!                        ▼
//!                      Role ──includes──► Role    (cycles reported, never followed twice)
//!                        │ grants `a.b`, `a.*`, `*`
//!                        ▼
//!                  catalog permission             (anything else grants nothing)
//! ```
//!
//! - [`role_graph`] expands roles into the catalog permissions they give.
//! - [`index`] holds one organization's [`AccessIndex`], updated one resource
//!   at a time, and evaluates [`AccessIndex::check`] and
//!   [`AccessIndex::effective_permissions`] over it.
//! - [`decision`] is what a check answers: allowed by which assignment, role
//!   and group, or denied and why.

pub mod decision;
pub mod index;
pub mod role_graph;

pub use decision::{Decision, Denial, Grant};
pub use index::{AccessIndex, Assignment, HeldPermission, Principal, PrincipalKind, Scope, name_key};
