//! Portcullis: identity and access management for Kubernetes, driven by CRDs.
//!
//! ```text
//! manifests (Git) ──► api (CRD types) ──► validation (cross-resource checks)
//!                                           │
//!                                           ▼
//!                                  authz (access resolution, pure)
//!                                           │ two sides
//!                                           ▼
//!                                  review (`portcullis diff`: the access delta)
//! ```
//!
//! `main.rs` only parses arguments and calls one subcommand in [`cli`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod authz;
pub mod cli;
pub mod controller;
pub mod manifests;
pub mod probes;
pub mod review;
pub mod scim;
pub mod standalone;
pub mod store;
pub mod token;
pub mod validation;
