//! SCIM 2.0 (RFC 7643 / RFC 7644): the pure protocol core of Portcullis's
//! provisioning service. No I/O here: the HTTP service (`portcullis::scim`)
//! and the store (`portcullis::store::scim_query`) build on these pieces, and
//! the fuzz targets (`fuzz/`) exercise them without the rest of Portcullis.
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
//! - [`json`] reads resource JSON with SCIM's case-insensitive attribute names.
//!
//! Every error type here says which [`ScimType`] it is reported as. The crate
//! depends on `serde_json` and `thiserror` only, so it builds in seconds.
#![forbid(unsafe_code)]

pub mod eval;
pub mod filter;
pub mod json;
pub mod patch;
pub mod path;
pub mod schema;
mod scim_type;

pub use scim_type::ScimType;
