//! Sending a sign-in to the upstream: the pending request is recorded
//! (bound to this browser), then the browser goes to the provider.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{
    Refusal, SSO_REQUEST_LIFETIME_MS, clients_for, flow_values, provider, refuse, stage_name, token_hash,
};
use crate::api::IdentityProviderType;
use crate::federation::oidc::OidcUpstream;
use crate::federation::routing::{ProviderEntry, stage_admits};
use crate::secret::SecretHash;
use crate::store::{FederationStore as _, SsoRequest};
use crate::token::service::login::SourceAddress;
use crate::token::service::login::csrf::random_token;
use crate::token::service::login::error::LoginError;
use crate::token::service::login::extract::SignInPost;
use crate::token::service::login::flow::see_other;
use crate::token::service::login::request::AuthorizationRequest;
use crate::token::service::state::{OrganizationView, TokenServiceState};

/// `POST {issuer}/sso/start`: a "Continue with …" button of the sign-in
/// page (fields `provider`, optional `login_hint`, the CSRF token and the request).
pub(in crate::token::service::login) async fn start(
    State(state): State<TokenServiceState>,
    post: SignInPost,
) -> Result<Response, LoginError> {
    let name = post.params.get("provider").unwrap_or_default().to_owned();
    let hint = post.params.get("login_hint").map(str::to_owned);
    let Some(entry) = provider(&state, &post.org, &name).await? else {
        let refusal = Refusal::new(
            StatusCode::NOT_FOUND,
            "Single sign-on unavailable",
            "This organization has no such identity provider.",
            "UnknownProvider",
            format!("no IdentityProvider {name:?}"),
        );
        return Err(refusal.page());
    };
    begin(&state, &post, &entry, hint.as_deref()).await
}

/// Sends the browser of `post` to `entry`'s upstream, if its stage lets
/// `login_hint` (or anyone, from Optional on) use it.
pub(in crate::token::service::login) async fn begin(
    state: &TokenServiceState,
    post: &SignInPost,
    entry: &ProviderEntry,
    login_hint: Option<&str>,
) -> Result<Response, LoginError> {
    let org = &post.org;
    let stage = stage_name(entry);
    let source = post.source.clone();
    let names: Vec<&str> = login_hint.into_iter().collect();
    if !stage_admits(&entry.spec, &names) {
        let refusal = Refusal::new(
            StatusCode::FORBIDDEN,
            "Single sign-on unavailable",
            "Signing in through this identity provider is not offered to you yet.",
            "NotOffered",
            format!("stage {stage} does not admit {login_hint:?}"),
        );
        return Err(refuse(state, org, &entry.name, stage, &source, refusal).await);
    }
    match send_upstream(state, org, Resume::Authorization(&post.request), &post.browser.id, entry).await {
        Ok(location) => Ok(see_other(&location, &[])),
        Err(refusal) => Err(refuse(state, org, &entry.name, stage, &source, refusal).await),
    }
}

/// Sends the browser of the invitation page to `entry`'s upstream, to
/// accept the invitation of `invitation_hash` as the identity it returns.
pub(in crate::token::service::login) async fn begin_invitation(
    state: &TokenServiceState,
    org: &OrganizationView,
    pre_login_id: &str,
    entry: &ProviderEntry,
    invitation_hash: &SecretHash,
    invited_email: &str,
    source: SourceAddress,
) -> Result<Response, LoginError> {
    let stage = stage_name(entry);
    if !stage_admits(&entry.spec, &[invited_email]) {
        let refusal = Refusal::new(
            StatusCode::FORBIDDEN,
            "Single sign-on unavailable",
            "Signing in through this identity provider is not offered to you yet.",
            "NotOffered",
            format!("stage {stage} does not admit {invited_email:?}"),
        );
        return Err(refuse(state, org, &entry.name, stage, &source, refusal).await);
    }
    match send_upstream(state, org, Resume::Invitation(invitation_hash), pre_login_id, entry).await {
        Ok(location) => Ok(see_other(&location, &[])),
        Err(refusal) => Err(refuse(state, org, &entry.name, stage, &source, refusal).await),
    }
}

/// What the upstream's answer goes on with.
enum Resume<'a> {
    /// The client's authorization request: a sign-in.
    Authorization(&'a AuthorizationRequest),
    /// Accepting the invitation of this link token's hash.
    Invitation(&'a SecretHash),
}

async fn send_upstream(
    state: &TokenServiceState,
    org: &OrganizationView,
    resume: Resume<'_>,
    pre_login_id: &str,
    entry: &ProviderEntry,
) -> Result<String, Refusal> {
    let token = random_token();
    let now = state.now();
    let clients = clients_for(state, org, entry)?;
    let (fields, invitation_hash) = match resume {
        Resume::Authorization(request) => {
            let fields: Vec<(String, String)> =
                request.hidden_fields().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            (fields, None)
        }
        Resume::Invitation(hash) => (Vec::new(), Some(hash.to_string())),
    };
    let mut row = SsoRequest {
        id_hash: token_hash(&token),
        organization: org.namespace.clone(),
        identity_provider: entry.name.clone(),
        pre_login_hash: token_hash(pre_login_id),
        saml_request_id: None,
        authorization_request: serde_json::to_string(&fields)
            .map_err(|e| Refusal::unavailable("ServerError", e.to_string()))?,
        invitation_hash,
        verified_identity: None,
        created_ms: now.as_millisecond(),
        expires_ms: now.as_millisecond() + SSO_REQUEST_LIFETIME_MS,
    };
    let location =
        match entry.spec.protocol {
            IdentityProviderType::Oidc => {
                let settings = entry.spec.oidc.as_ref().ok_or_else(|| {
                    Refusal::unavailable("Misconfigured", "type OIDC without oidc settings")
                })?;
                let secret = state.upstreams().secrets().secret(
                    &org.namespace,
                    &settings.client_secret_ref.name,
                    &settings.client_secret_ref.key,
                );
                if secret.is_none() {
                    return Err(Refusal::unavailable(
                        "ClientSecretMissing",
                        format!(
                            "Secret {} (key {}) is not readable",
                            settings.client_secret_ref.name, settings.client_secret_ref.key
                        ),
                    ));
                }
                let redirect_uri = callback_uri(state, org, &entry.name);
                let upstream = OidcUpstream {
                    issuer: &settings.issuer,
                    client_id: &settings.client_id,
                    client_secret: secret.as_ref(),
                    scopes: &settings.scopes,
                    claims: &settings.claim_mapping,
                    redirect_uri: &redirect_uri,
                };
                clients
                    .oidc
                    .authorization_url(&upstream, &flow_values(state, org, &token))
                    .await
                    .map_err(|e| Refusal::unavailable(e.reason(), crate::error_chain::error_chain(&e)))?
            }
            IdentityProviderType::Saml => {
                let settings = entry.spec.saml.as_ref().ok_or_else(|| {
                    Refusal::unavailable("Misconfigured", "type SAML without saml settings")
                })?;
                // An xs:ID (an NCName: not starting with a digit), 256 random bits.
                let request_id = format!("_{}", random_token());
                let urls = super::saml::urls(state, org, &entry.name);
                let location = clients
                    .saml
                    .authn_request_url(&super::saml::upstream(settings, &urls), &request_id, &token, now)
                    .await
                    .map_err(|e| Refusal::unavailable(e.reason(), crate::error_chain::error_chain(&e)))?;
                row.saml_request_id = Some(request_id);
                location
            }
        };
    state
        .store()
        .create_sso_request(&row)
        .await
        .map_err(|e| Refusal::unavailable("StoreUnavailable", crate::error_chain::error_chain(&e)))?;
    Ok(location)
}

/// Our redirect URI at the upstream for provider `name`.
pub(super) fn callback_uri(state: &TokenServiceState, org: &OrganizationView, name: &str) -> String {
    format!("{}/sso/oidc/{name}/callback", state.issuer(&org.name))
}
