//! SCIM 2.0 (RFC 7643 / RFC 7644): the pure core of the provisioning service.
//! No I/O here: the routes and the store build on these pieces.
//!
//! ```text
//!   ?filter=…  ──► filter::parse ──► Filter (AST) ──► eval::matches   (in memory)
//!                        │                  └───────► SQL WHERE       (store::scim_query)
//!                        ▼
//!   PATCH path ──► path::parse ──► PatchPath ─┐
//!   PATCH body ──► patch::PatchRequest ───────┴──► patch::apply ──► new resource
//!                                                         │        + membership changes
//!   schema::{USER, GROUP} (attribute table) ──────────────┘ types, caseExact, mutability
//!                         └──► schema::schema_resource ──► /Schemas
//! ```
//!
//! - [`schema`] is the attribute table of the User (with the enterprise
//!   extension) and Group resource types, and renders it as `/Schemas` JSON.
//! - [`filter`] parses the filter grammar into a [`filter::Filter`], within
//!   length and nesting limits.
//! - [`path`] parses a PATCH `path`.
//! - [`eval`] decides whether a resource (or one value of a multi-valued
//!   attribute) matches a filter.
//! - [`patch`] applies a PatchOp request, all operations or none.
//! - [`service`] is the HTTP service on top of these and the store.
//!
//! Every error type here says which [`ScimType`] it is reported as.
//!
//! `filter`, `path`, `schema`, `eval`, `json` and `scim_type` use nothing
//! but `serde_json` and each other: the fuzz crate (`fuzz/src/lib.rs`)
//! compiles exactly these files without the rest of Portcullis.

pub mod eval;
pub mod filter;
mod json;
pub mod patch;
pub mod path;
pub mod schema;
mod scim_type;
pub mod service;

pub use scim_type::ScimType;
