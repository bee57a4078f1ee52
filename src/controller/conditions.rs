//! From findings to `metav1.Condition`s. Pure: time is passed in.
//!
//! Every kind reports `Ready` plus a fixed set of specific conditions, so
//! that `kubectl wait --for=condition=…` and Argo CD health checks can rely
//! on them being there:
//!
//! ```text
//!   validation::Finding (error) ──reason──► specific condition False (reason = finding's reason)
//!   validation::Finding (warning) ────────► Warnings True (reason = first warning's reason)
//!   store write, owned objects ───────────► Stored / SecretReady / SigningKeysReady
//!   any positive condition False ─────────► Ready False, reason of the first failure
//! ```
//!
//! `lastTransitionTime` only moves when a condition's status changes, so a
//! pass that changes nothing produces the status already stored (and the
//! operator then writes nothing).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::validation::{Finding, Reason, Severity};

/// `Ready`: the object is in effect as declared.
pub const READY: &str = "Ready";
/// The namespace has an Organization.
pub const ORGANIZATION_FOUND: &str = "OrganizationFound";
/// No other object claims the same name or email domain.
pub const NO_CONFLICTS: &str = "NoConflicts";
/// Every permission named is in the catalog.
pub const PERMISSIONS_KNOWN: &str = "PermissionsKnown";
/// Every Role or OAuthClient named exists.
pub const REFERENCES_RESOLVED: &str = "ReferencesResolved";
/// Role inclusion has no cycle.
pub const INCLUSION_ACYCLIC: &str = "InclusionAcyclic";
/// Workspaces named are declared, and required ones are given.
pub const WORKSPACE_VALID: &str = "WorkspaceValid";
/// The user, group or client of an assignment exists (informational: a
/// pending principal does not make the assignment not Ready).
pub const PRINCIPAL_RESOLVED: &str = "PrincipalResolved";
/// The desired state is in the store.
pub const STORED: &str = "Stored";
/// An AccessRequest is filed in the store as a request.
pub const FILED: &str = "Filed";
/// A generated secret (SCIM token, client secret) is in its Secret.
pub const SECRET_READY: &str = "SecretReady";
/// The organization's signing keys exist and follow the rotation schedule.
pub const SIGNING_KEYS_READY: &str = "SigningKeysReady";
/// An Organization: its data is in the store of its `dataResidency`.
pub const DATA_RESIDENCY: &str = "DataResidency";
/// The operator has every setting the services it runs need to serve the
/// organization (public base URLs, key-encryption key, database Secret);
/// see `operator_status`.
pub const SERVICES_CONFIGURED: &str = "ServicesConfigured";
/// Present (True) while there are warnings: the object works, but likely not
/// as intended.
pub const WARNINGS: &str = "Warnings";
/// Present (True) while a deletion is refused (legal hold).
pub const DELETION_BLOCKED: &str = "DeletionBlocked";
/// An IdentityProvider's upstream answers as expected (informational).
pub const UPSTREAM_HEALTHY: &str = "UpstreamHealthy";
/// An IdentityProvider's rollout may move to its next stage (informational
/// advice; the stage only changes in Git).
pub const READY_TO_ADVANCE: &str = "ReadyToAdvance";

/// Conditions whose `True` is good; a `False` one makes the object not Ready.
/// (`PrincipalResolved` is informational and not listed.)
const BLOCKING: &[&str] = &[
    ORGANIZATION_FOUND,
    NO_CONFLICTS,
    PERMISSIONS_KNOWN,
    REFERENCES_RESOLVED,
    INCLUSION_ACYCLIC,
    WORKSPACE_VALID,
    STORED,
    FILED,
    SECRET_READY,
    SIGNING_KEYS_READY,
    SERVICES_CONFIGURED,
    DATA_RESIDENCY,
];

/// The condition an error finding of this reason is reported under.
pub fn condition_type_of(reason: Reason) -> &'static str {
    match reason {
        Reason::OrganizationNotFound => ORGANIZATION_FOUND,
        Reason::DuplicateOrganization | Reason::DomainConflict => NO_CONFLICTS,
        Reason::UnknownPermission => PERMISSIONS_KNOWN,
        Reason::RoleNotFound | Reason::ClientNotFound => REFERENCES_RESOLVED,
        Reason::InclusionCycle => INCLUSION_ACYCLIC,
        Reason::WorkspaceNotFound | Reason::WorkspaceRequired => WORKSPACE_VALID,
        // Warnings-only reasons; should one ever be an error it still shows.
        Reason::OrganizationRoleInWorkspace
        | Reason::PrivilegedGroupMapping
        | Reason::ApprovalBypassed
        | Reason::ClientCannotUseGrant
        | Reason::Expired
        | Reason::DomainNotOwned
        | Reason::ProvisioningModeMismatch => REFERENCES_RESOLVED,
    }
}

/// The reason a condition carries when all is well.
fn success_reason(condition_type: &str) -> &'static str {
    match condition_type {
        ORGANIZATION_FOUND => "OrganizationFound",
        NO_CONFLICTS => "NoConflicts",
        PERMISSIONS_KNOWN => "PermissionsKnown",
        REFERENCES_RESOLVED => "ReferencesResolved",
        INCLUSION_ACYCLIC => "NoCycle",
        WORKSPACE_VALID => "WorkspaceDeclared",
        STORED => "Stored",
        _ => "Ok",
    }
}

/// A condition before timestamps: what a pass wants to say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(type_: &str, status: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Desired { type_: type_.to_owned(), status, reason: reason.into(), message: message.into() }
    }
}

/// What one pass found about one object, built up and then turned into
/// conditions with [`Report::conditions`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    desired: Vec<Desired>,
    warnings: Vec<(String, String)>,
    /// The first failure, in the order they were added: Ready's reason.
    failures: Vec<(String, String)>,
}

impl Report {
    /// Starts a report with the kind's specific condition types, each judged
    /// from the object's findings (errors make a type False, warnings go to
    /// `Warnings`).
    pub fn from_findings<'f>(types: &[&str], findings: impl IntoIterator<Item = &'f Finding>) -> Self {
        let mut report = Report::default();
        let mut errors: Vec<&Finding> = Vec::new();
        for finding in findings {
            match finding.severity {
                Severity::Error => errors.push(finding),
                Severity::Warning => {
                    report.warnings.push((finding.reason.to_string(), finding.message.clone()))
                }
            }
        }
        for error in &errors {
            report.failures.push((error.reason.to_string(), error.message.clone()));
        }
        for type_ in types {
            let failing: Vec<&&Finding> =
                errors.iter().filter(|f| condition_type_of(f.reason) == *type_).collect();
            match failing.first() {
                None => report.desired.push(Desired::new(type_, true, success_reason(type_), "")),
                Some(first) => report.desired.push(Desired::new(
                    type_,
                    false,
                    first.reason.to_string(),
                    join_messages(failing.iter().map(|f| f.message.as_str())),
                )),
            }
        }
        // An error whose reason maps to a type the kind does not list still
        // has to show somewhere: under its own type.
        for error in &errors {
            let type_ = condition_type_of(error.reason);
            if !report.desired.iter().any(|d| d.type_ == type_) {
                report.desired.push(Desired::new(
                    type_,
                    false,
                    error.reason.to_string(),
                    error.message.clone(),
                ));
            }
        }
        report
    }

    /// Adds (or replaces) a condition. A False one among the blocking types
    /// makes the object not Ready, after the failures already recorded.
    pub fn set(&mut self, condition: Desired) {
        if !condition.status && BLOCKING.contains(&condition.type_.as_str()) {
            self.failures.push((condition.reason.clone(), condition.message.clone()));
        }
        self.desired.retain(|d| d.type_ != condition.type_);
        self.desired.push(condition);
    }

    /// Adds a warning (reported under `Warnings`).
    pub fn warn(&mut self, reason: &str, message: impl Into<String>) {
        self.warnings.push((reason.to_owned(), message.into()));
    }

    /// Whether nothing blocks the object.
    pub fn is_ready(&self) -> bool {
        self.failures.is_empty()
    }

    /// Ready's reason and message as they will be written.
    pub fn ready(&self, ready_message: &str) -> Desired {
        match self.failures.first() {
            None => Desired::new(READY, true, "Reconciled", ready_message),
            Some((reason, _)) => Desired::new(
                READY,
                false,
                reason.clone(),
                join_messages(self.failures.iter().map(|(_, m)| m.as_str())),
            ),
        }
    }

    /// The conditions to write: Ready first, then the others by type, with
    /// transition times carried over from `previous` where the status did
    /// not change.
    pub fn conditions(
        &self,
        ready_message: &str,
        previous: &[Condition],
        generation: Option<i64>,
        now: jiff::Timestamp,
    ) -> Vec<Condition> {
        let mut desired = self.desired.clone();
        if let Some((reason, _)) = self.warnings.first() {
            desired.push(Desired::new(
                WARNINGS,
                true,
                reason.clone(),
                join_messages(self.warnings.iter().map(|(_, m)| m.as_str())),
            ));
        }
        desired.sort_by(|a, b| a.type_.cmp(&b.type_));
        desired.insert(0, self.ready(ready_message));
        finalize(desired, previous, generation, now)
    }
}

/// Stamps desired conditions with `observedGeneration` and `lastTransitionTime`
/// (kept from the previous condition of the same type when its status is
/// unchanged; `now`, to the second, otherwise).
pub fn finalize(
    desired: Vec<Desired>,
    previous: &[Condition],
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Vec<Condition> {
    let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    desired
        .into_iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" }.to_owned();
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == d.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: d.type_,
                status,
                reason: d.reason,
                message: d.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Longest condition message written; the API allows 32768 bytes, and a
/// screenful is what helps.
const MAX_MESSAGE: usize = 2000;

fn join_messages<'m>(messages: impl Iterator<Item = &'m str>) -> String {
    let mut out = String::new();
    for message in messages {
        if message.is_empty() || out.split("; ").any(|m| m == message) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(message);
    }
    if out.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// The condition of a type, if present.
pub fn find<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// A change of a condition worth an Event: `(type, became true?, reason, message)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub type_: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
    /// Whether the new state is bad news (a Warning Event, else Normal).
    pub warning: bool,
}

/// The condition types whose changes are Events, and the status that is bad
/// news for each (`None`: neither is).
const EVENTFUL: &[(&str, Option<bool>)] = &[
    (READY, Some(false)),
    (DELETION_BLOCKED, Some(true)),
    (UPSTREAM_HEALTHY, Some(false)),
    (READY_TO_ADVANCE, None),
];

/// The transitions between two condition lists that deserve an Event: Ready,
/// `UpstreamHealthy` or `ReadyToAdvance` changing status or reason (but not
/// a first True, which would be one Event per object at every initial
/// sync), and `DeletionBlocked` appearing.
pub fn transitions(previous: &[Condition], next: &[Condition]) -> Vec<Transition> {
    let mut out = Vec::new();
    for &(type_, bad) in EVENTFUL {
        let Some(new) = find(next, type_) else { continue };
        let old = find(previous, type_);
        let changed = match old {
            None => new.status != "True" || type_ == DELETION_BLOCKED,
            Some(old) => old.status != new.status || old.reason != new.reason,
        };
        if changed {
            out.push(Transition {
                type_: type_.to_owned(),
                status: new.status == "True",
                reason: new.reason.clone(),
                message: new.message.clone(),
                warning: bad == Some(new.status == "True"),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::ObjectRef;

    fn finding(severity: Severity, reason: Reason, message: &str) -> Finding {
        Finding {
            severity,
            reason,
            object: ObjectRef { kind: "RoleAssignment".into(), namespace: "acme".into(), name: "a".into() },
            field: vec![],
            value: None,
            message: message.into(),
        }
    }

    fn at(second: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    const RA_TYPES: &[&str] = &[ORGANIZATION_FOUND, REFERENCES_RESOLVED, WORKSPACE_VALID];

    #[test]
    fn no_findings_is_ready_with_every_specific_condition_true() {
        let report = Report::from_findings(RA_TYPES, []);
        let conditions = report.conditions("stored", &[], Some(3), at(0));
        let summary: Vec<(&str, &str, &str)> =
            conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str())).collect();
        assert_eq!(
            summary,
            [
                ("Ready", "True", "Reconciled"),
                ("OrganizationFound", "True", "OrganizationFound"),
                ("ReferencesResolved", "True", "ReferencesResolved"),
                ("WorkspaceValid", "True", "WorkspaceDeclared"),
            ]
        );
        assert!(conditions.iter().all(|c| c.observed_generation == Some(3)));
    }

    #[test]
    fn ready_is_false_with_the_first_errors_reason_and_warnings_get_their_own_condition() {
        let findings = [
            finding(Severity::Warning, Reason::Expired, "expired at 2020"),
            finding(Severity::Error, Reason::RoleNotFound, "role ghost does not exist"),
            finding(Severity::Error, Reason::WorkspaceNotFound, "workspace mars is not declared"),
        ];
        let report = Report::from_findings(RA_TYPES, &findings);
        let conditions = report.conditions("", &[], Some(1), at(0));
        let ready = find(&conditions, READY).unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "RoleNotFound"));
        assert_eq!(ready.message, "role ghost does not exist; workspace mars is not declared");
        let references = find(&conditions, REFERENCES_RESOLVED).unwrap();
        assert_eq!((references.status.as_str(), references.reason.as_str()), ("False", "RoleNotFound"));
        let workspace = find(&conditions, WORKSPACE_VALID).unwrap();
        assert_eq!(workspace.reason, "WorkspaceNotFound");
        let warnings = find(&conditions, WARNINGS).unwrap();
        assert_eq!((warnings.status.as_str(), warnings.reason.as_str()), ("True", "Expired"));
    }

    #[test]
    fn transition_times_move_only_when_the_status_does() {
        let ok = Report::from_findings(RA_TYPES, []).conditions("", &[], Some(1), at(0));
        let again = Report::from_findings(RA_TYPES, []).conditions("", &ok, Some(2), at(50));
        assert_eq!(find(&again, READY).unwrap().last_transition_time, Time(at(0)));
        let broken = [finding(Severity::Error, Reason::RoleNotFound, "gone")];
        let failed = Report::from_findings(RA_TYPES, &broken).conditions("", &again, Some(3), at(90));
        assert_eq!(find(&failed, READY).unwrap().last_transition_time, Time(at(90)));
        assert_eq!(find(&failed, ORGANIZATION_FOUND).unwrap().last_transition_time, Time(at(0)));
    }

    #[test]
    fn a_failed_store_write_makes_the_object_not_ready() {
        let mut report = Report::from_findings(RA_TYPES, []);
        report.set(Desired::new(STORED, false, "StoreUnavailable", "database is down"));
        let ready = report.ready("");
        assert_eq!((ready.status, ready.reason.as_str()), (false, "StoreUnavailable"));
        // An informational condition does not.
        let mut report = Report::from_findings(RA_TYPES, []);
        report.set(Desired::new(PRINCIPAL_RESOLVED, false, "PrincipalPending", "no such user yet"));
        assert!(report.is_ready());
    }

    #[test]
    fn events_only_on_transitions() {
        let ok = Report::from_findings(RA_TYPES, []).conditions("", &[], Some(1), at(0));
        assert_eq!(transitions(&[], &ok), [], "a new object becoming Ready is not news");
        assert_eq!(transitions(&ok, &ok), []);
        let broken = [finding(Severity::Error, Reason::RoleNotFound, "gone")];
        let failed = Report::from_findings(RA_TYPES, &broken).conditions("", &ok, Some(2), at(5));
        let events = transitions(&ok, &failed);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].status, events[0].reason.as_str()), (false, "RoleNotFound"));
        assert_eq!(transitions(&failed, &ok).len(), 1, "recovery is news too");
        assert_eq!(transitions(&[], &failed).len(), 1, "a new object that is broken is news");
        assert!(events[0].warning);
    }

    #[test]
    fn an_upstream_going_down_is_a_warning_and_its_return_is_news() {
        let with = |healthy: bool, reason: &str| {
            let mut report = Report::from_findings(&[], []);
            report.set(Desired::new(UPSTREAM_HEALTHY, healthy, reason, ""));
            report.conditions("", &[], Some(1), at(0))
        };
        let up = with(true, "DiscoveryAnswered");
        let down = with(false, "DiscoveryFailed");
        assert_eq!(transitions(&[], &up), [], "healthy from the start is not news");
        let events = transitions(&up, &down);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].type_.as_str(), events[0].warning), (UPSTREAM_HEALTHY, true));
        let events = transitions(&down, &up);
        assert_eq!((events[0].status, events[0].warning), (true, false));
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(3000);
        let joined = join_messages([long.as_str()].into_iter());
        assert!(joined.len() <= MAX_MESSAGE + '…'.len_utf8());
        assert!(joined.ends_with('…'));
    }
}
