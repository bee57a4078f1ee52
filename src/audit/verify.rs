//! Verifying an export (`portcullis audit verify FILE`): every line must be
//! the link that follows the line before it. The first line that does not
//! is named, with what is wrong with it.
//!
//! What each finding means:
//!
//! - a line's `hash` does not match its content: that event was edited;
//! - a line's `prevHash` is not the previous line's `hash`, or its `seq` is
//!   not the next one: an event was removed, inserted or moved just before
//!   it (or the previous line was edited and its hash recomputed);
//! - the first line's `seq` may be above 1 (older events were deleted by
//!   retention): its `prevHash` is then taken as the anchor, and reported.

use std::io::BufRead;

use super::chain::{ExportLine, GENESIS_HASH, link_hash};
use super::event::AuditEvent;

/// Why an export does not verify; `line` counts from 1.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("could not read the export")]
    Read(#[source] std::io::Error),

    #[error("line {line}: not an audit record: {problem}")]
    Malformed { line: u64, problem: String },

    #[error("line {line}: the event does not match its hash: it was edited")]
    Edited { line: u64 },

    #[error(
        "line {line}: its previous hash is not the hash of line {previous}: an event was removed, \
         inserted or reordered before it, or line {previous} was edited"
    )]
    Broken { line: u64, previous: u64 },

    #[error(
        "line {line}: does not follow the chain's start (the first event, or the last one retention \
         deleted): an older event was removed or edited"
    )]
    Unanchored { line: u64 },

    #[error("line {line}: seq {found} follows seq {expected_after}: events are missing or out of order")]
    OutOfSequence { line: u64, found: i64, expected_after: i64 },

    #[error("line {line}: event of organization {found}, the chain is of {expected}")]
    OtherOrganization { line: u64, found: String, expected: String },

    #[error("line {line}: the chain's last hash is {found}, not the expected head {expected}")]
    HeadMismatch { line: u64, found: String, expected: String },

    #[error("the export holds no event")]
    Empty,
}

impl VerifyError {
    /// The line the finding is about, if it is about one.
    pub fn line(&self) -> Option<u64> {
        match self {
            VerifyError::Malformed { line, .. }
            | VerifyError::Edited { line }
            | VerifyError::Broken { line, .. }
            | VerifyError::Unanchored { line }
            | VerifyError::OutOfSequence { line, .. }
            | VerifyError::OtherOrganization { line, .. }
            | VerifyError::HeadMismatch { line, .. } => Some(*line),
            VerifyError::Read(_) | VerifyError::Empty => None,
        }
    }
}

/// What a verified export holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub organization: String,
    pub events: u64,
    pub first_seq: i64,
    pub last_seq: i64,
    /// The `prevHash` of the first line: [`GENESIS_HASH`] for a complete chain.
    pub anchor: String,
    /// The `hash` of the last line: compare with the head the admin API reports.
    pub head: String,
}

impl VerifyReport {
    /// Whether the export starts at the organization's first event.
    pub fn complete_from_start(&self) -> bool {
        self.first_seq == 1 && self.anchor == GENESIS_HASH
    }
}

/// Checks a chain line by line, as the lines arrive (from a file or from
/// the store): one line in memory at a time, whatever the chain's length.
#[derive(Debug, Default)]
pub struct Verifier {
    line: u64,
    report: Option<VerifyReport>,
    /// What the first line must follow, when it is known (the store knows
    /// the last link retention deleted; a file alone does not).
    anchor: Option<(i64, String)>,
}

impl Verifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// A verifier whose first line must be the link after `(seq, hash)`.
    pub fn anchored(seq: i64, hash: &str) -> Self {
        Self { anchor: Some((seq, hash.to_owned())), ..Self::default() }
    }

    /// Checks the next line (without its newline).
    pub fn push_line(&mut self, text: &str) -> Result<(), VerifyError> {
        self.line += 1;
        let number = self.line;
        if text.trim().is_empty() {
            return Err(VerifyError::Malformed { line: number, problem: "empty line".to_owned() });
        }
        let parsed: ExportLine<'_> = serde_json::from_str(text)
            .map_err(|e| VerifyError::Malformed { line: number, problem: e.to_string() })?;
        if link_hash(parsed.seq, &parsed.prev_hash, parsed.event.get()) != parsed.hash {
            return Err(VerifyError::Edited { line: number });
        }
        let event: AuditEvent = serde_json::from_str(parsed.event.get())
            .map_err(|e| VerifyError::Malformed { line: number, problem: format!("event: {e}") })?;
        match &mut self.report {
            Some(report) => {
                if parsed.prev_hash != report.head {
                    return Err(VerifyError::Broken { line: number, previous: number - 1 });
                }
                if parsed.seq != report.last_seq + 1 {
                    return Err(VerifyError::OutOfSequence {
                        line: number,
                        found: parsed.seq,
                        expected_after: report.last_seq,
                    });
                }
                if event.organization != report.organization {
                    return Err(VerifyError::OtherOrganization {
                        line: number,
                        found: event.organization,
                        expected: report.organization.clone(),
                    });
                }
                report.events += 1;
                report.last_seq = parsed.seq;
                report.head = parsed.hash;
            }
            None => {
                if let Some((seq, hash)) = &self.anchor {
                    if parsed.seq != seq + 1 {
                        return Err(VerifyError::OutOfSequence {
                            line: number,
                            found: parsed.seq,
                            expected_after: *seq,
                        });
                    }
                    if parsed.prev_hash != *hash {
                        return Err(VerifyError::Unanchored { line: number });
                    }
                }
                if parsed.seq == 1 && parsed.prev_hash != GENESIS_HASH {
                    return Err(VerifyError::Unanchored { line: number });
                }
                self.report = Some(VerifyReport {
                    organization: event.organization,
                    events: 1,
                    first_seq: parsed.seq,
                    last_seq: parsed.seq,
                    anchor: parsed.prev_hash,
                    head: parsed.hash,
                });
            }
        }
        Ok(())
    }

    /// The report on every line pushed; `expected_head`, when given, must be
    /// the last line's hash (it shows that no newest events were cut off).
    pub fn finish(self, expected_head: Option<&str>) -> Result<VerifyReport, VerifyError> {
        let report = self.report.ok_or(VerifyError::Empty)?;
        if let Some(expected) = expected_head
            && expected != report.head
        {
            return Err(VerifyError::HeadMismatch {
                line: self.line,
                found: report.head,
                expected: expected.to_owned(),
            });
        }
        Ok(report)
    }
}

/// Verifies an export read from `input` (see [`Verifier::finish`] for
/// `expected_head`).
pub fn verify_export(input: impl BufRead, expected_head: Option<&str>) -> Result<VerifyReport, VerifyError> {
    let mut verifier = Verifier::new();
    for line in input.lines() {
        verifier.push_line(&line.map_err(VerifyError::Read)?)?;
    }
    verifier.finish(expected_head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::ChainLink;
    use crate::audit::event::{AuditContext, AuditEntry, AuditEvent, Target};

    fn export(events: usize) -> Vec<String> {
        let mut lines = Vec::new();
        let (mut seq, mut hash) = (0, GENESIS_HASH.to_owned());
        for n in 0..events {
            let entry =
                AuditEntry::success("user.create", Target::new("user", Some(&format!("u-{n}")), None));
            let event = AuditEvent::new("acme", &AuditContext::system("test"), entry, 1_700_000_000_000);
            let link = ChainLink::after(seq, &hash, event.to_json());
            (seq, hash) = (link.seq, link.hash.clone());
            lines.push(link.to_line());
        }
        lines
    }

    fn verify(lines: &[String]) -> Result<VerifyReport, VerifyError> {
        verify_export(lines.join("\n").as_bytes(), None)
    }

    #[test]
    fn an_untouched_export_verifies() {
        let lines = export(5);
        let report = verify(&lines).unwrap();
        assert_eq!((report.events, report.first_seq, report.last_seq), (5, 1, 5));
        assert!(report.complete_from_start());
        assert!(verify_export(lines.join("\n").as_bytes(), Some(&report.head)).is_ok());
    }

    #[test]
    fn an_edited_event_is_named_by_its_line() {
        let mut lines = export(5);
        lines[2] = lines[2].replace("u-2", "u-9");
        let error = verify(&lines).unwrap_err();
        assert!(matches!(error, VerifyError::Edited { line: 3 }), "{error}");
        assert!(error.to_string().starts_with("line 3:"));
    }

    #[test]
    fn a_removed_event_breaks_the_next_line() {
        let mut lines = export(5);
        lines.remove(1);
        assert!(matches!(verify(&lines).unwrap_err(), VerifyError::Broken { line: 2, previous: 1 }));
    }

    #[test]
    fn reordered_events_are_found() {
        let mut lines = export(5);
        lines.swap(1, 3);
        assert!(matches!(verify(&lines).unwrap_err(), VerifyError::Broken { line: 2, .. }));
    }

    #[test]
    fn an_edit_with_its_hash_recomputed_breaks_the_next_line() {
        let mut lines = export(4);
        let line: ExportLine<'_> = serde_json::from_str(&lines[1]).unwrap();
        let edited = line.event.get().replace("u-1", "u-7");
        let forged = ChainLink {
            seq: line.seq,
            prev_hash: line.prev_hash.clone(),
            hash: link_hash(line.seq, &line.prev_hash, &edited),
            event_json: edited,
        };
        lines[1] = forged.to_line();
        assert!(matches!(verify(&lines).unwrap_err(), VerifyError::Broken { line: 3, previous: 2 }));
    }

    #[test]
    fn a_chain_cut_at_the_start_verifies_from_its_anchor() {
        let lines = export(5);
        let report = verify(&lines[2..]).unwrap();
        assert_eq!(report.first_seq, 3);
        assert!(!report.complete_from_start());
    }

    #[test]
    fn a_chain_cut_at_the_end_fails_against_the_head() {
        let lines = export(5);
        let head = verify(&lines).unwrap().head;
        let error = verify_export(lines[..4].join("\n").as_bytes(), Some(&head)).unwrap_err();
        assert!(matches!(error, VerifyError::HeadMismatch { line: 4, .. }), "{error}");
    }

    #[test]
    fn garbage_is_malformed_with_its_line() {
        let mut lines = export(2);
        lines.push("not json".into());
        assert!(matches!(verify(&lines).unwrap_err(), VerifyError::Malformed { line: 3, .. }));
        assert!(matches!(verify(&[]).unwrap_err(), VerifyError::Empty));
    }
}
