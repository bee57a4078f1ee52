//! The audit trail's own logic, with no I/O: what an event says, how events
//! of one organization are chained by hashes, and how an exported chain is
//! verified (primitives: the store, the services and the CLI use this).
//!
//! ```text
//!  a privileged action ──► AuditEntry (what: action, target, outcome)
//!        + AuditContext (who: actor; where: address, user agent) ──► AuditEvent ──► event_json
//!                                                                               (canonical text, stored as is)
//!  sealing, per organization, in the order the sealer finds the events:
//!     hash(n) = SHA-256("portcullis.audit.v1" ‖ seq(n) ‖ hash(n-1) ‖ event_json(n))
//!     (event_json names the organization, so a link cannot move to another chain)
//!  export: one JSON line per event {seq, prevHash, hash, organization, event}
//!  verify: recompute line by line; the first line that does not follow names itself
//! ```
//!
//! - [`event`]: the event, its actor, target and source, and the context a
//!   request carries.
//! - [`chain`]: the hash of one link, and the exported line.
//! - [`verify`]: `portcullis audit verify`, over a file or the store.
//! - `request`: [`Source`] as an axum extractor (peer address, user agent).

pub mod chain;
pub mod event;
mod request;
pub mod verify;

pub use chain::{ChainLink, ExportLine, GENESIS_HASH, link_hash};
pub use event::{
    Actor, ActorKind, AuditContext, AuditEntry, AuditEvent, Outcome, Source, Target, source_address,
};
pub use verify::{Verifier, VerifyError, VerifyReport, verify_export};
