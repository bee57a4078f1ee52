//! What the CRDs become outside Kubernetes, shared by the operator and
//! standalone mode (neither imports the other; both import this):
//!
//! ```text
//!  api (CRD types) ──► records       ──► store (desired state)
//!                  ──► secrets       ──► names and keys of generated secrets
//!                  ──► signing_keys  ──► an organization's key set: rotation, its
//!                                        Secret/data-directory form, its store records
//! ```

pub mod records;
pub mod secrets;
pub mod signing_keys;

pub use records::ToRecord;
