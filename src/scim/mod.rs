//! SCIM 2.0 provisioning (RFC 7643 / RFC 7644) over HTTP: the [`service`]
//! that identity providers such as Okta and Entra ID call.
//!
//! The pure protocol core it builds on (filter and PATCH path parsers, the
//! User and Group schema, filter evaluation, PatchOp) is the
//! `portcullis-scim` crate (`crates/portcullis-scim/`); callers import it
//! directly (`portcullis_scim::filter`, `portcullis_scim::patch`). Queries
//! live in the store (`store::scim`, and `store::scim_query`, which turns a
//! parsed filter into SQL). This module owns what needs I/O.

pub mod service;
