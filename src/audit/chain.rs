//! The hash chain of one organization's events, and the line an exported
//! event takes.
//!
//! A link commits to its position, to the link before it and to the event's
//! canonical text, byte for byte:
//!
//! ```text
//!  hash(n) = hex(SHA-256("portcullis.audit.v1\n" ‖ seq(n) ‖ "\n" ‖ hash(n-1) ‖ "\n" ‖ event_json(n)))
//!  hash(0) = GENESIS_HASH (64 zeros)
//! ```
//!
//! Removing, inserting or reordering events breaks the `prevHash` of the
//! event after the change; editing an event breaks its own `hash`. What a
//! chain alone cannot show is the loss of its newest events (nothing follows
//! them): compare the last line with the head the admin API reports.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The `prevHash` of an organization's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const DOMAIN: &[u8] = b"portcullis.audit.v1\n";

/// The hash of the link at `seq` whose predecessor hashed to `prev_hash`.
pub fn link_hash(seq: i64, prev_hash: &str, event_json: &str) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(DOMAIN);
    context.update(seq.to_string().as_bytes());
    context.update(b"\n");
    context.update(prev_hash.as_bytes());
    context.update(b"\n");
    context.update(event_json.as_bytes());
    hex::encode(context.finish().as_ref())
}

/// A sealed event: its place in the chain and the hashes that tie it there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainLink {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    /// The event's canonical text, as stored.
    pub event_json: String,
}

impl ChainLink {
    /// Links `event_json` after `(prev_seq, prev_hash)`.
    pub fn after(prev_seq: i64, prev_hash: &str, event_json: String) -> Self {
        let seq = prev_seq + 1;
        Self {
            seq,
            prev_hash: prev_hash.to_owned(),
            hash: link_hash(seq, prev_hash, &event_json),
            event_json,
        }
    }

    /// The export's JSON line (without the newline). The event is written
    /// verbatim, so that the line can be verified byte for byte.
    pub fn to_line(&self) -> String {
        let event = RawValue::from_string(self.event_json.clone())
            .unwrap_or_else(|_| RawValue::from_string("null".to_owned()).expect("null is JSON"));
        let line =
            ExportLineOut { seq: self.seq, prev_hash: &self.prev_hash, hash: &self.hash, event: &event };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportLineOut<'a> {
    seq: i64,
    prev_hash: &'a str,
    hash: &'a str,
    event: &'a RawValue,
}

/// One line of an export, as read back: the event's text kept exactly as
/// it stands in the file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportLine<'a> {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    #[serde(borrow)]
    #[schemars(with = "super::AuditEvent")]
    pub event: &'a RawValue,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_link_commits_to_its_place_its_predecessor_and_its_text() {
        let first = ChainLink::after(0, GENESIS_HASH, r#"{"a":1}"#.to_owned());
        assert_eq!(first.seq, 1);
        assert_eq!(first.hash.len(), 64);
        let second = ChainLink::after(1, &first.hash, r#"{"a":2}"#.to_owned());
        assert_eq!(second.prev_hash, first.hash);
        assert_ne!(link_hash(2, GENESIS_HASH, r#"{"a":2}"#), second.hash, "the predecessor counts");
        assert_ne!(link_hash(3, &first.hash, r#"{"a":2}"#), second.hash, "the position counts");
        assert_ne!(link_hash(2, &first.hash, r#"{"a": 2}"#), second.hash, "every byte counts");
    }

    #[test]
    fn a_line_keeps_the_event_verbatim() {
        let link = ChainLink::after(0, GENESIS_HASH, r#"{"b":"x","a":[1, 2]}"#.to_owned());
        let line = link.to_line();
        let read: ExportLine<'_> = serde_json::from_str(&line).unwrap();
        assert_eq!(read.event.get(), r#"{"b":"x","a":[1, 2]}"#);
        assert_eq!(read.hash, link.hash);
    }
}
