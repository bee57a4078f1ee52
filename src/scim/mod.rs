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

pub mod eval;
pub mod filter;
mod json;
pub mod patch;
pub mod path;
pub mod schema;
pub mod service;

/// The `scimType` of a SCIM error response (RFC 7644 §3.12, Table 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
}

impl ScimType {
    /// The keyword as it appears in the `scimType` member of an error response.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }

    /// The HTTP status that goes with this `scimType` (RFC 7644 §3.12).
    pub fn http_status(self) -> u16 {
        match self {
            ScimType::Uniqueness => 409,
            _ => 400,
        }
    }
}

impl std::fmt::Display for ScimType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
