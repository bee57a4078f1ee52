//! Everything `portcullis validate` checks, with one implementation for every
//! caller: the CLI prints findings as `file:line`, the operator turns them into
//! status conditions.
//!
//! - [`schema`]: per object, the CRDs' own rules (CEL `x-kubernetes-validations`),
//!   evaluated client-side so that a pull request fails before Argo CD's sync would.
//! - [`references`]: across objects, what no schema can see.
//! - [`report`]: all of it about a folder of manifests, as `file:line` reports.

pub mod references;
pub mod report;
pub mod schema;

pub use references::*;
