//! What an audit event says: who (actor), did what (action) to what (target),
//! when, from where (address, user agent), and how it ended (outcome).
//!
//! Who and where belong to the request (an [`AuditContext`], set once at the
//! edge of a service, like a tracing span); what belongs to the write that is
//! recorded (an [`AuditEntry`], made by the code that performs it). The
//! store joins the two into an [`AuditEvent`] inside the write's transaction.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// What kind of party acted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ActorKind {
    /// A person, signed in (or signing in) to Portcullis.
    User,
    /// An OAuth client acting for itself (client credentials).
    Client,
    /// An identity provider's SCIM client, by its bearer token.
    IdentityProvider,
    /// Someone who changed a Portcullis resource in Kubernetes, as the
    /// operator saw it (the field manager of the change).
    Kubernetes,
    /// Portcullis itself (the operator's key rotation, housekeeping, bootstrap).
    #[default]
    System,
    /// Nobody identified yet (a failed sign-in of an unknown account).
    Anonymous,
}

/// Who acted. Every field but `kind` is present only when known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Actor {
    pub kind: ActorKind,
    /// The user's id (the `sub` of its tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The user's userName, a Kubernetes field manager or user, or the
    /// component of Portcullis that acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The OAuth client through which it acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The IdentityProvider through which it acted or signed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<String>,
}

impl Actor {
    /// Portcullis itself, naming the component that acted.
    pub fn system(component: &str) -> Self {
        Self { kind: ActorKind::System, name: Some(component.to_owned()), ..Self::default() }
    }

    /// A user, by id and userName, acting through `client` if any.
    pub fn user(subject: &str, user_name: &str, client: Option<&str>) -> Self {
        Self {
            kind: ActorKind::User,
            subject: Some(subject.to_owned()),
            name: Some(user_name.to_owned()),
            client: client.map(str::to_owned),
            identity_provider: None,
        }
    }

    /// An OAuth client acting for itself.
    pub fn client(client_id: &str) -> Self {
        Self { kind: ActorKind::Client, client: Some(client_id.to_owned()), ..Self::default() }
    }

    /// An IdentityProvider's SCIM client.
    pub fn identity_provider(name: &str) -> Self {
        Self {
            kind: ActorKind::IdentityProvider,
            identity_provider: Some(name.to_owned()),
            ..Self::default()
        }
    }

    /// Someone who changed a resource in Kubernetes: the field manager of the
    /// change (`kubectl-client-side-apply`, `argocd-controller`), when known.
    pub fn kubernetes(manager: Option<&str>) -> Self {
        Self { kind: ActorKind::Kubernetes, name: manager.map(str::to_owned), ..Self::default() }
    }

    /// Someone not identified (yet): `name` is what they typed, if anything.
    pub fn anonymous(name: Option<&str>) -> Self {
        Self { kind: ActorKind::Anonymous, name: name.map(str::to_owned), ..Self::default() }
    }
}

/// Where a request came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// The client's address, as [`source_address`] decides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// The one place that decides which address a request comes from. For now
/// the TCP peer; once trusted proxies are configured, the address they
/// forwarded (never a header by default).
pub fn source_address(peer: Option<IpAddr>) -> Option<String> {
    peer.map(|ip| ip.to_string())
}

/// What was acted on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// `user`, `group`, `membership`, `roleAssignment`, `role`, `invitation`,
    /// `session`, `refreshTokenFamily`, `signingKey`, a Kubernetes kind, …
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A readable name (userName, group name, `namespace/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Target {
    pub fn new(kind: &str, id: Option<&str>, name: Option<&str>) -> Self {
        Self { kind: kind.to_owned(), id: id.map(str::to_owned), name: name.map(str::to_owned) }
    }
}

/// How the action ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    #[default]
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            _ => None,
        }
    }
}

/// Who is acting and from where: set once per request (or per operator
/// pass) and carried by the store handle the request writes through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditContext {
    pub actor: Actor,
    pub source: Source,
}

impl AuditContext {
    pub fn new(actor: Actor, source: Source) -> Self {
        Self { actor, source }
    }

    /// Portcullis acting on its own.
    pub fn system(component: &str) -> Self {
        Self { actor: Actor::system(component), source: Source::default() }
    }
}

/// What one action did: made by the code that performs it.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// `noun.verb`, e.g. `user.create`, `signIn.password`, `roleAssignment.delete`.
    pub action: String,
    pub target: Target,
    pub outcome: Outcome,
    /// Why it failed, or what it was for; machine-readable where possible.
    pub reason: Option<String>,
    /// What else matters (changed fields, roles granted), never a secret.
    pub details: Option<serde_json::Value>,
}

impl AuditEntry {
    /// A successful action on `target`.
    pub fn success(action: &str, target: Target) -> Self {
        Self { action: action.to_owned(), target, outcome: Outcome::Success, reason: None, details: None }
    }

    /// A refused or failed action on `target`, and why.
    pub fn failure(action: &str, target: Target, reason: &str) -> Self {
        Self {
            action: action.to_owned(),
            target,
            outcome: Outcome::Failure,
            reason: Some(reason.to_owned()),
            details: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn with_reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_owned());
        self
    }
}

/// One event as it is stored, exported and hashed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditEvent {
    /// Unique id (UUID v4).
    pub id: String,
    /// When it happened (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The organization's namespace.
    pub organization: String,
    pub actor: Actor,
    pub action: String,
    pub target: Target,
    pub source: Source,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl AuditEvent {
    /// The event of `entry`, done by `context`'s actor at `at_ms` (unix ms).
    pub fn new(organization: &str, context: &AuditContext, entry: AuditEntry, at_ms: i64) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            time: rfc3339_ms(at_ms),
            organization: organization.to_owned(),
            actor: context.actor.clone(),
            action: entry.action,
            target: entry.target,
            source: context.source.clone(),
            outcome: entry.outcome,
            reason: entry.reason,
            details: entry.details,
        }
    }

    /// The canonical text: what is stored, hashed and exported byte for byte.
    pub fn to_json(&self) -> String {
        // A struct of strings, enums and a JSON value always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Unix milliseconds as RFC 3339 with milliseconds, UTC.
pub fn rfc3339_ms(at_ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(at_ms) {
        Ok(at) => format!("{at:.3}"),
        Err(_) => at_ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_says_who_what_when_where_and_how() {
        let context = AuditContext::new(
            Actor::user("u-1", "ada", Some("console")),
            Source { address: source_address(Some([10, 0, 0, 7].into())), user_agent: Some("curl/8".into()) },
        );
        let entry = AuditEntry::failure(
            "signIn.password",
            Target::new("user", Some("u-1"), Some("ada")),
            "WrongPassword",
        );
        let event = AuditEvent::new("acme", &context, entry, 1_700_000_000_123);
        let json: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(json["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(json["actor"]["kind"], "user");
        assert_eq!(json["actor"]["name"], "ada");
        assert_eq!(json["actor"]["client"], "console");
        assert_eq!(json["target"]["type"], "user");
        assert_eq!(json["source"]["address"], "10.0.0.7");
        assert_eq!(json["outcome"], "failure");
        assert_eq!(json["reason"], "WrongPassword");
        let back: AuditEvent = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(back, event);
    }
}
