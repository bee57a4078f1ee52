//! The SAML 2.0 service provider's endpoints, per IdentityProvider of type
//! SAML (saml-bindings §3.4 HTTP-Redirect out, §3.5 HTTP-POST back):
//!
//! ```text
//!  GET  {issuer}/sso/saml/{idp}/metadata   our metadata; its URL is our entity ID
//!  POST {issuer}/sso/saml/{idp}/acs        SAMLResponse + RelayState, cross-site from the IdP:
//!        pending row by RelayState ─ verify (InResponseTo = its AuthnRequest ID) ─ replay cache
//!        ─ identity kept on the row ─► 303 resume
//!  GET  {issuer}/sso/saml/{idp}/resume     the browser again, with its pre-login cookie
//!        (SameSite=Lax: sent on this top-level GET, not on the IdP's cross-site POST):
//!        row bound to this browser, taken once ─► complete::sign_in (or the invitation)
//! ```

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};

use super::complete::{Pending, take_pending};
use super::{Refusal, clients_for, organization, provider, refuse, stage_name, token_hash};
use crate::api::{IdentityProviderType, SamlSettings};
use crate::audit::Source;
use crate::federation::UpstreamIdentity;
use crate::federation::routing::ProviderEntry;
use crate::federation::saml::{SamlUpstream, service_provider_metadata};
use crate::store::{FederationStore as _, SamlAcceptance, SeenAssertion};
use crate::token::service::login::SourceAddress;
use crate::token::service::login::error::LoginError;
use crate::token::service::login::flow::see_other;
use crate::token::service::login::pages::Page;
use crate::token::service::state::{OrganizationView, TokenServiceState};

/// Our URLs at one IdP.
pub(super) struct ServiceProviderUrls {
    /// Our entity ID: the URL our metadata is served at.
    pub entity_id: String,
    pub acs: String,
}

pub(super) fn urls(state: &TokenServiceState, org: &OrganizationView, idp: &str) -> ServiceProviderUrls {
    let base = format!("{}/sso/saml/{idp}", state.issuer(&org.name));
    ServiceProviderUrls { entity_id: format!("{base}/metadata"), acs: format!("{base}/acs") }
}

pub(super) fn upstream<'a>(settings: &'a SamlSettings, urls: &'a ServiceProviderUrls) -> SamlUpstream<'a> {
    SamlUpstream {
        entity_id: &settings.entity_id,
        metadata_url: settings.metadata_url.as_deref(),
        metadata: settings.metadata.as_deref(),
        attributes: &settings.attribute_mapping,
        sp_entity_id: &urls.entity_id,
        acs_url: &urls.acs,
    }
}

/// The SAML provider `idp` of the organization, or the page saying there is none.
async fn saml_provider(
    state: &TokenServiceState,
    org: &OrganizationView,
    idp: &str,
) -> Result<(ProviderEntry, SamlSettings), LoginError> {
    match provider(state, org, idp).await? {
        Some(entry) if entry.spec.protocol == IdentityProviderType::Saml => match entry.spec.saml.clone() {
            Some(settings) => Ok((entry, settings)),
            None => Err(Refusal::unavailable("Misconfigured", "type SAML without saml settings").page()),
        },
        _ => Err(Page::notice(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such SAML identity provider here.",
        )
        .into()),
    }
}

/// `GET {issuer}/sso/saml/{idp}/metadata`: what an IdP administrator registers.
pub(in crate::token::service::login) async fn metadata(
    State(state): State<TokenServiceState>,
    Path((organization_name, idp)): Path<(String, String)>,
) -> Result<Response, LoginError> {
    let org = organization(&state, &organization_name).await?;
    saml_provider(&state, &org, &idp).await?;
    let urls = urls(&state, &org, &idp);
    let xml = service_provider_metadata(&urls.entity_id, &urls.acs)
        .map_err(|e| Refusal::unavailable(e.reason(), e.to_string()).page())?;
    let mut response = xml.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/samlmetadata+xml"));
    Ok(response)
}

/// `POST {issuer}/sso/saml/{idp}/acs`: the IdP's response, posted by the
/// browser from the IdP's page (so without our cookies).
pub(in crate::token::service::login) async fn acs(
    State(state): State<TokenServiceState>,
    Path((organization_name, idp)): Path<(String, String)>,
    address: SourceAddress,
    body: Bytes,
) -> Result<Response, LoginError> {
    let state = &state;
    let org = organization(state, &organization_name).await?;
    let (entry, settings) = saml_provider(state, &org, &idp).await?;
    let stage = stage_name(&entry);
    match verify_posted(state, &org, &entry, &settings, &body).await {
        Ok(relay_state) => {
            let query =
                form_urlencoded::Serializer::new(String::new()).append_pair("state", &relay_state).finish();
            let resume = format!("{}/sso/saml/{idp}/resume?{query}", state.issuer(&org.name));
            Ok(see_other(&resume, &[]))
        }
        Err(refusal) => Err(refuse(state, &org, &idp, stage, &address, refusal).await),
    }
}

/// Verifies the posted response against the pending sign-in its RelayState
/// names, and keeps the identity on that sign-in. Returns the RelayState.
async fn verify_posted(
    state: &TokenServiceState,
    org: &OrganizationView,
    entry: &ProviderEntry,
    settings: &SamlSettings,
    body: &[u8],
) -> Result<String, Refusal> {
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let Some(saml_response) = form.get("SAMLResponse").filter(|r| !r.is_empty()) else {
        return Err(Refusal::untrusted("Malformed", "no SAMLResponse in the post"));
    };
    let relay_state = form.get("RelayState").map(String::as_str).unwrap_or_default();
    if relay_state.is_empty() {
        // IdP-initiated sign-in has no request of ours to answer.
        return Err(Refusal { reason: "Unsolicited", ..Refusal::expired("a response without RelayState") });
    }
    let store_error = |e: crate::store::StoreError| {
        Refusal::unavailable("StoreUnavailable", crate::error_chain::error_chain(&e))
    };
    let hash = token_hash(relay_state);
    let now = state.now();
    let pending = state
        .store()
        .find_sso_request(&org.namespace, &hash, now.as_millisecond())
        .await
        .map_err(store_error)?;
    let Some(pending) = pending.filter(|p| p.identity_provider == entry.name) else {
        return Err(Refusal::expired("unknown, used or expired RelayState"));
    };
    let Some(request_id) = pending.saml_request_id.as_deref() else {
        return Err(Refusal::expired("the pending sign-in sent no AuthnRequest"));
    };
    let clients = clients_for(state, org, entry)?;
    let urls = urls(state, org, &entry.name);
    let verified =
        clients.saml.verify(&upstream(settings, &urls), saml_response, request_id, now).await.map_err(
            |e| {
                let detail = crate::error_chain::error_chain(&e);
                if e.is_unavailable() {
                    Refusal::unavailable(e.reason(), detail)
                } else {
                    Refusal::untrusted(e.reason(), detail)
                }
            },
        )?;
    let identity = serde_json::to_string(&verified.identity)
        .map_err(|e| Refusal::unavailable("ServerError", e.to_string()))?;
    let seen = SeenAssertion {
        identity_provider: &entry.name,
        assertion_id: &verified.assertion_id,
        expires_ms: verified.expires.as_millisecond(),
    };
    let accepted = state
        .store()
        .accept_saml_assertion(&org.namespace, &hash, &seen, &identity)
        .await
        .map_err(store_error)?;
    match accepted {
        SamlAcceptance::Accepted => {}
        SamlAcceptance::Replayed => {
            return Err(Refusal::untrusted(
                "AssertionReplayed",
                format!("assertion {} was presented before", verified.assertion_id),
            ));
        }
        SamlAcceptance::AlreadyAnswered => {
            return Err(Refusal::expired("the pending sign-in was answered already"));
        }
    }
    Ok(relay_state.to_owned())
}

/// `GET {issuer}/sso/saml/{idp}/resume?state=`: the browser that started
/// the sign-in comes back for the identity the ACS verified.
pub(in crate::token::service::login) async fn resume(
    State(state): State<TokenServiceState>,
    Path((organization_name, idp)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    source: Source,
    address: SourceAddress,
    headers: HeaderMap,
) -> Result<Response, LoginError> {
    let state = &state;
    let org = organization(state, &organization_name).await?;
    let (entry, _) = saml_provider(state, &org, &idp).await?;
    let stage = stage_name(&entry);
    let token = query.get("state").map(String::as_str).unwrap_or_default();
    let Pending { request, pre_login_id } = match take_pending(state, &org, &idp, token, &headers).await {
        Ok(pending) => pending,
        Err(refusal) => return Err(refuse(state, &org, &idp, stage, &address, refusal).await),
    };
    let identity: Option<UpstreamIdentity> =
        request.verified_identity.as_deref().and_then(|json| serde_json::from_str(json).ok());
    let Some(identity) = identity else {
        let refusal = Refusal::expired("the identity provider has not answered this sign-in");
        return Err(refuse(state, &org, &idp, stage, &address, refusal).await);
    };
    if request.invitation_hash.is_some() {
        return super::invitation::accept(state, &org, &entry, &request, &identity, source, address).await;
    }
    super::complete::sign_in(state, &org, &entry, request, &pre_login_id, identity, address).await
}
