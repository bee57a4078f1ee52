//! Invitations as the admin API and the admin page make them: the checks
//! (provisioning mode, roles, workspace, no escalation, no existing user),
//! the store write, then the mail, sent after the transaction.
//!
//! ```text
//!  create / resend ── checks ── store (token hash, audited) ── commit ── mail (lettre, SMTP)
//!                                                                         └─ outcome recorded: sent | error
//!  revoke ─────────── store (audited)
//! ```
//!
//! The link's token (256 random bits) exists only in the mail: the store
//! keeps its SHA-256, the API and the page never show it, and it is never
//! logged. When the SMTP server cannot take the mail, the invitation stays
//! (pending, its `mail.error` saying why) and a resend makes a new link and
//! tries again.

use jiff::SignedDuration;

use super::state::{OrganizationView, TokenServiceState};
use crate::api::{ProvisioningMode, RoleSource};
use crate::audit::AuditContext;
use crate::authz::{Decision, Principal, Scope};
use crate::secret::SecretString;
use crate::store::{
    DesiredStateStore as _, Invitation, InvitationChange, InvitationStore as _, NewInvitation, RoleRecord,
    RoleScope, StoreError, UserStore as _,
};

/// How long a link works when the request does not say.
pub const DEFAULT_LIFETIME: SignedDuration = SignedDuration::from_hours(7 * 24);
/// The longest lifetime a request may ask for.
pub const MAX_LIFETIME: SignedDuration = SignedDuration::from_hours(30 * 24);
/// Roles one invitation may carry.
const MAX_ROLES: usize = 32;

/// What an administrator asks for.
#[derive(Clone, Debug, Default)]
pub struct InvitationRequest {
    pub email: String,
    pub workspace: Option<String>,
    pub roles: Vec<String>,
    /// `None`: [`DEFAULT_LIFETIME`].
    pub lifetime: Option<SignedDuration>,
}

/// Why an invitation was not made or changed.
#[derive(Debug, thiserror::Error)]
pub enum InvitationError {
    /// A field of the request is wrong; `field` names it as the API does.
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
    /// Under `spec.provisioning.mode: scim` the identity provider provisions people.
    #[error("the organization provisions users through SCIM")]
    ScimProvisioning,
    /// Under `roleSource: GitOps`, roles are granted in Git, not by invitations.
    #[error("roles are kept in Git")]
    RolesKeptInGit,
    /// The invitation would grant a permission its inviter does not hold there.
    #[error("{permission} is not yours to grant")]
    Escalation { role: String, permission: String },
    #[error("a user {0} already exists")]
    UserExists(String),
    #[error("{0} has a pending invitation")]
    AlreadyInvited(String),
    /// No SMTP server was given: the link could reach nobody.
    #[error("no SMTP server is configured")]
    MailNotConfigured,
    #[error("no invitation {0}")]
    NotFound(String),
    /// Accepted or revoked already.
    #[error("invitation {id} is {state}")]
    NotPending { id: String, state: &'static str },
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Server(super::OAuthError),
}

impl From<StoreError> for InvitationError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<super::OAuthError> for InvitationError {
    fn from(error: super::OAuthError) -> Self {
        match error {
            super::OAuthError::Store(store) => Self::Store(store),
            other => Self::Server(other),
        }
    }
}

fn invalid(field: &str, detail: impl Into<String>) -> InvitationError {
    InvitationError::Invalid { field: field.to_owned(), detail: detail.into() }
}

/// How the mail of a link went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailOutcome {
    Sent,
    /// The invitation stands; a resend tries again.
    Failed(String),
}

/// Who invites: their principal (for the escalation check), their name
/// (kept on the invitation) and the audit context of the request.
pub struct Inviter {
    pub principal: Principal,
    pub name: String,
    pub audit: AuditContext,
}

/// The invitation link of `token`: `{issuer}/invitations/{token}`.
pub fn invitation_link(state: &TokenServiceState, organization: &str, token: &str) -> String {
    format!("{}/invitations/{token}", state.issuer(organization))
}

/// Refuses every invitation change while SCIM provisions the organization.
fn refuse_under_scim(org: &OrganizationView) -> Result<(), InvitationError> {
    match org.spec.provisioning.mode {
        ProvisioningMode::Scim => Err(InvitationError::ScimProvisioning),
        ProvisioningMode::Disabled | ProvisioningMode::Jit => Ok(()),
    }
}

/// Checks `request`, stores the invitation and mails its link.
pub async fn create(
    state: &TokenServiceState,
    org: &OrganizationView,
    inviter: &Inviter,
    request: InvitationRequest,
) -> Result<(Invitation, MailOutcome), InvitationError> {
    refuse_under_scim(org)?;
    let email = request.email.trim().to_owned();
    if email.len() > 254 || !crate::mail::is_mail_address(&email) {
        return Err(invalid("email", "not a mail address (local@domain)"));
    }
    let workspace = match request.workspace.map(|w| w.trim().to_owned()).filter(|w| !w.is_empty()) {
        Some(name) if !org.spec.workspaces.iter().any(|w| w.name == name) => {
            return Err(invalid("workspace", format!("the organization declares no workspace {name}")));
        }
        other => other,
    };
    let lifetime = request.lifetime.unwrap_or(DEFAULT_LIFETIME);
    if lifetime < SignedDuration::from_secs(1) || lifetime > MAX_LIFETIME {
        return Err(invalid("expiresIn", "between 1s and 720h"));
    }
    let mut roles: Vec<String> = Vec::new();
    for role in request.roles {
        let role = role.trim().to_owned();
        if !role.is_empty() && !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.len() > MAX_ROLES {
        return Err(invalid("roles", format!("at most {MAX_ROLES} roles")));
    }
    if !roles.is_empty() && org.spec.administration.role_source == RoleSource::GitOps {
        return Err(InvitationError::RolesKeptInGit);
    }
    check_roles(state, org, &inviter.principal, workspace.as_deref(), &roles).await?;
    if state.store().find_user_by_name(&org.namespace, &email).await?.is_some()
        || !state.store().find_users_by_email(&org.namespace, &email).await?.is_empty()
    {
        return Err(InvitationError::UserExists(email));
    }
    let Some(mailer) = state.mailer().cloned() else { return Err(InvitationError::MailNotConfigured) };
    let token = SecretString::generate();
    let new = NewInvitation {
        organization: org.namespace.clone(),
        email: email.clone(),
        workspace,
        roles,
        token_hash: token.hash(),
        invited_by: inviter.name.clone(),
        lifetime_ms: lifetime.as_millis().try_into().unwrap_or(i64::MAX),
    };
    let store = state.store().with_audit(inviter.audit.clone());
    let invitation = match store.create_invitation(&new).await {
        Err(StoreError::AlreadyExists { .. }) => return Err(InvitationError::AlreadyInvited(email)),
        other => other?,
    };
    let outcome = send_link(state, org, &mailer, &invitation, &token).await?;
    Ok((invitation, outcome))
}

/// Every role exists, fits the scope, and grants nothing `inviter` lacks there.
async fn check_roles(
    state: &TokenServiceState,
    org: &OrganizationView,
    inviter: &Principal,
    workspace: Option<&str>,
    roles: &[String],
) -> Result<(), InvitationError> {
    if roles.is_empty() {
        return Ok(());
    }
    let stored = state.store().list::<RoleRecord>(&org.namespace).await?;
    let snapshot = state.access_index(org).await?;
    let index = &snapshot.index;
    let scope = workspace.map_or(Scope::Organization, |w| Scope::Workspace(w.into()));
    let now = state.now().as_second();
    for (n, role) in roles.iter().enumerate() {
        let field = format!("roles[{n}]");
        let Some(record) = stored.iter().find(|r| r.meta.name == *role) else {
            return Err(invalid(&field, format!("no role {role} in this organization")));
        };
        if record.scope == RoleScope::Workspace && workspace.is_none() {
            return Err(invalid(&field, format!("role {role} is scoped to a workspace: name the workspace")));
        }
        for permission in index.role_expansion().effective.get(role).into_iter().flatten() {
            if !matches!(index.check(inviter, permission, &scope, now), Decision::Allowed(_)) {
                return Err(InvitationError::Escalation {
                    role: role.clone(),
                    permission: permission.clone(),
                });
            }
        }
    }
    Ok(())
}

/// A new link for a pending or expired invitation, mailed; the old link dies.
pub async fn resend(
    state: &TokenServiceState,
    org: &OrganizationView,
    inviter: &Inviter,
    id: &str,
) -> Result<(Invitation, MailOutcome), InvitationError> {
    refuse_under_scim(org)?;
    let Some(mailer) = state.mailer().cloned() else { return Err(InvitationError::MailNotConfigured) };
    let token = SecretString::generate();
    let store = state.store().with_audit(inviter.audit.clone());
    let invitation = match store.resend_invitation(&org.namespace, id, &token.hash()).await? {
        InvitationChange::Done(invitation) => invitation,
        InvitationChange::NotPending(found) => return Err(not_pending(state, &found)),
        InvitationChange::Absent => return Err(InvitationError::NotFound(id.to_owned())),
    };
    let outcome = send_link(state, org, &mailer, &invitation, &token).await?;
    Ok((invitation, outcome))
}

/// Revokes a pending invitation: its link stops working.
pub async fn revoke(
    state: &TokenServiceState,
    org: &OrganizationView,
    inviter: &Inviter,
    id: &str,
) -> Result<Invitation, InvitationError> {
    let store = state.store().with_audit(inviter.audit.clone());
    match store.revoke_invitation(&org.namespace, id).await? {
        InvitationChange::Done(invitation) => Ok(invitation),
        InvitationChange::NotPending(found) => Err(not_pending(state, &found)),
        InvitationChange::Absent => Err(InvitationError::NotFound(id.to_owned())),
    }
}

fn not_pending(state: &TokenServiceState, invitation: &Invitation) -> InvitationError {
    InvitationError::NotPending {
        id: invitation.id.clone(),
        state: invitation.state(state.now().as_millisecond()),
    }
}

/// Mails the link (outside any transaction) and records how it went.
async fn send_link(
    state: &TokenServiceState,
    org: &OrganizationView,
    mailer: &crate::mail::Mailer,
    invitation: &Invitation,
    token: &SecretString,
) -> Result<MailOutcome, InvitationError> {
    let link = invitation_link(state, &org.name, token.expose());
    let expires = jiff::Timestamp::from_millisecond(invitation.expires_ms)
        .map(|at| at.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let place = match &invitation.workspace {
        Some(workspace) => format!("the workspace {workspace} of {}", org.display_name),
        None => org.display_name.clone(),
    };
    let text = format!(
        "Hello,\n\n{inviter} invites you to {place}.\n\nTo accept, open this link and choose a password:\n\n\
         {link}\n\nThe link works once, until {expires}. If you did not expect this invitation, ignore \
         this message.\n",
        inviter = invitation.invited_by,
    );
    let subject = format!("You are invited to {}", org.display_name);
    let outcome = match mailer.send_text(&invitation.email, &subject, text).await {
        Ok(()) => MailOutcome::Sent,
        Err(error) => {
            // The error names the server and what it answered, never the link.
            tracing::warn!(
                organization = %org.name, invitation = %invitation.id,
                error = %crate::error_chain::ErrorChain(&error),
                "an invitation's mail could not be sent; a resend tries again"
            );
            MailOutcome::Failed(error.to_string())
        }
    };
    let error = match &outcome {
        MailOutcome::Sent => None,
        MailOutcome::Failed(reason) => Some(reason.as_str()),
    };
    state.store().record_invitation_mail(&org.namespace, &invitation.id, invitation.sends, error).await?;
    Ok(outcome)
}
