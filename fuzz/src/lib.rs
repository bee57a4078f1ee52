//! The pure SCIM core of Portcullis, compiled on its own for fuzzing: the
//! very source files of `src/scim/` that parse filters and PATCH paths
//! (and the schema table and evaluator the targets exercise), without the
//! rest of the crate. Those files use only `serde_json`, `thiserror` and each
//! other (see `src/scim/mod.rs`), so a cold fuzz build compiles three small
//! dependencies instead of kube, sqlx and the HTTP stack.
#![allow(dead_code)]

// Inside this inline module, `mod x;` reads `../src/scim/x.rs` of the main crate.
#[path = "../../src/scim"]
pub mod scim {
    pub mod eval;
    pub mod filter;
    mod json;
    pub mod path;
    pub mod schema;
    mod scim_type;

    pub use scim_type::ScimType;
}
