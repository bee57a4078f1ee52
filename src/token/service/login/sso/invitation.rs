//! Accepting an invitation through single sign-on: the upstream's answer
//! to a sign-in started from an invitation's page.
//!
//! The identity the provider vouches for must be the invited address, and
//! that address's domain must be one the provider is routed for (a provider
//! is trusted for its own domains only, as at sign-in). Then the invitation
//! is accepted as with a password (one transaction: consumed, user created
//! with the invited RoleAssignments, audited), the user being `source=jit`
//! without a password, linked to its upstream subject, with the provider's
//! groups applied.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};

use super::complete::{Failure, admitted};
use super::{Refusal, count, refuse, stage_name};
use crate::api::ProvisioningMode;
use crate::audit::Source;
use crate::federation::UpstreamIdentity;
use crate::federation::routing::{ProviderEntry, email_domain};
use crate::secret::SecretHash;
use crate::store::{
    Acceptance, Email, FederationStore as _, InvitationStore as _, NewUser, SsoRequest, StoreError,
    UpstreamSignIn, UserSource,
};
use crate::token::service::error::OAuthError;
use crate::token::service::login::SourceAddress;
use crate::token::service::login::error::LoginError;
use crate::token::service::login::invitation::{invited_assignments, refusal_page};
use crate::token::service::login::pages::Page;
use crate::token::service::state::{OrganizationView, TokenServiceState};

/// Accepts the invitation `pending` names as `identity`; counted and
/// audited like any single sign-on.
pub(super) async fn accept(
    state: &TokenServiceState,
    org: &Arc<OrganizationView>,
    entry: &ProviderEntry,
    pending: &SsoRequest,
    identity: &UpstreamIdentity,
    source: Source,
    address: SourceAddress,
) -> Result<Response, LoginError> {
    let stage = stage_name(entry);
    match accept_inner(state, org, entry, pending, identity, source).await {
        Ok(response) => {
            count(state, org, &entry.name, stage, None).await;
            Ok(response)
        }
        Err(Failure::Refused(refusal)) => {
            Err(refuse(state, org, &entry.name, stage, &address, refusal).await)
        }
        Err(Failure::Other(error)) => Err(error),
    }
}

async fn accept_inner(
    state: &TokenServiceState,
    org: &OrganizationView,
    entry: &ProviderEntry,
    pending: &SsoRequest,
    identity: &UpstreamIdentity,
    source: Source,
) -> Result<Response, Failure> {
    let hash = pending
        .invitation_hash
        .as_deref()
        .and_then(SecretHash::parse)
        .ok_or_else(|| OAuthError::internal("a pending sign-in's invitation hash is unreadable"))?;
    let store = state.store();
    let Some(invitation) = store.invitation_by_token(&org.namespace, &hash).await? else {
        return Err(Failure::Other(refusal_page(crate::store::Refusal::Unknown, None).into()));
    };
    if org.spec.provisioning.mode == ProvisioningMode::Scim {
        return Err(Failure::Other(
            Page::notice(
                StatusCode::CONFLICT,
                "Invitations are turned off",
                "This organization now provisions its users through its identity provider. Ask your \
                 administrator to add you there.",
            )
            .into(),
        ));
    }
    admitted(entry, identity)?;
    let names: Vec<&str> =
        identity.user_name.iter().chain(identity.email.iter()).map(String::as_str).collect();
    let routed = email_domain(&invitation.email)
        .is_some_and(|domain| entry.spec.email_domains.iter().any(|d| d.eq_ignore_ascii_case(&domain)));
    let vouched = names.iter().any(|name| name.trim().eq_ignore_ascii_case(&invitation.email));
    if !(routed && vouched) {
        let provider = entry.spec.display_name.clone().unwrap_or_else(|| entry.name.clone());
        return Err(Failure::Refused(Refusal::new(
            StatusCode::FORBIDDEN,
            "Invitation for someone else",
            format!(
                "This invitation was sent to {}, but {provider} signed you in as someone else. Sign in \
                 to {provider} as {}, or ask {} to invite the address you use.",
                invitation.email, invitation.email, invitation.invited_by
            ),
            "InvitationForAnother",
            format!("identity {names:?} is not the invited {:?} (routed domain: {routed})", invitation.email),
        )));
    }

    let user = NewUser {
        display_name: identity.display_name.clone(),
        emails: vec![Email::primary(&invitation.email)],
        ..NewUser::new(org.namespace.clone(), invitation.email.clone(), UserSource::Jit)
    };
    let assignments = invited_assignments(org, &invitation);
    let user = match store.accept_invitation(&org.namespace, &hash, &user, assignments, source).await {
        Ok(Acceptance::Accepted { user }) => user,
        Ok(Acceptance::Refused(refusal)) => {
            return Err(Failure::Other(refusal_page(refusal, Some(&invitation)).into()));
        }
        Err(StoreError::AlreadyExists { value, .. }) => {
            return Err(Failure::Other(
                Page::notice(
                    StatusCode::CONFLICT,
                    "Account exists",
                    &format!(
                        "An account named {value} exists already. Sign in with it, or ask your administrator."
                    ),
                )
                .into(),
            ));
        }
        Err(error) => return Err(error.into()),
    };
    // After the acceptance's transaction: were this lost, the user would
    // still be found by its email in the provider's domain at sign-in.
    let sign_in = UpstreamSignIn {
        organization: &org.namespace,
        identity_provider: &entry.name,
        subject: &identity.subject,
        user_id: &user.id,
        at_ms: state.now().as_millisecond(),
        groups: identity.groups.as_deref(),
        remove_others: false,
    };
    store.link_upstream_sign_in(&sign_in).await?;
    tracing::info!(
        target: "audit",
        event = "invitation.accept",
        organization = %org.namespace,
        identity_provider = %entry.name,
        user_id = %user.id,
        invitation = %invitation.id,
        "invitation accepted through single sign-on"
    );
    let provider = entry.spec.display_name.clone().unwrap_or_else(|| entry.name.clone());
    let text = format!(
        "Your account {} at {} is ready. Sign in to the organization's applications through {provider}.",
        user.user_name, org.display_name
    );
    Ok(Page::notice(StatusCode::OK, "Invitation accepted", &text).into_response())
}
