//! `GET {issuer}/sso/oidc/{idp}/callback`: the upstream's authorization
//! response (RFC 6749 §4.1.2, RFC 9207 `iss`).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

use super::complete::{Pending, take_pending};
use super::start::callback_uri;
use super::{Refusal, clients_for, flow_values, organization, provider, refuse, stage_name};
use crate::audit::Source;
use crate::federation::oidc::OidcUpstream;
use crate::token::service::login::SourceAddress;
use crate::token::service::login::error::LoginError;
use crate::token::service::state::TokenServiceState;

const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

pub(in crate::token::service::login) async fn callback(
    State(state): State<TokenServiceState>,
    Path((organization_name, idp)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    source: Source,
    address: SourceAddress,
    headers: HeaderMap,
) -> Result<Response, LoginError> {
    let started = std::time::Instant::now();
    let state = &state;
    let org = organization(state, &organization_name).await?;
    let Some(entry) = provider(state, &org, &idp).await? else {
        return Err(Refusal::expired(format!("no IdentityProvider {idp:?}")).page());
    };
    let stage = stage_name(&entry);
    let token = query.get("state").map(String::as_str).unwrap_or_default();
    let pending = match take_pending(state, &org, &idp, token, &headers).await {
        Ok(pending) => pending,
        Err(refusal) => return Err(refuse(state, &org, &idp, stage, &address, refusal).await),
    };
    if let Some(error) = query.get("error") {
        let description = query.get("error_description").cloned().unwrap_or_default();
        let refusal = Refusal::new(
            StatusCode::BAD_GATEWAY,
            "Single sign-on failed",
            "Your identity provider did not sign you in. Please try again, or ask your administrator.",
            "UpstreamRefused",
            format!("{error}: {description}"),
        );
        return Err(refuse(state, &org, &idp, stage, &address, refusal).await);
    }
    let Some(code) = query.get("code") else {
        return Err(refuse(
            state,
            &org,
            &idp,
            stage,
            &address,
            Refusal::untrusted("Malformed", "no code in the callback"),
        )
        .await);
    };
    let Some(settings) = entry.spec.oidc.as_ref() else {
        let refusal = Refusal::unavailable("Misconfigured", "not an OIDC provider");
        return Err(refuse(state, &org, &idp, stage, &address, refusal).await);
    };
    let clients = match clients_for(state, &org, &entry) {
        Ok(clients) => clients,
        Err(refusal) => return Err(refuse(state, &org, &idp, stage, &address, refusal).await),
    };
    let secret = state.upstreams().secrets().secret(
        &org.namespace,
        &settings.client_secret_ref.name,
        &settings.client_secret_ref.key,
    );
    let redirect_uri = callback_uri(state, &org, &idp);
    let upstream = OidcUpstream {
        issuer: &settings.issuer,
        client_id: &settings.client_id,
        client_secret: secret.as_ref(),
        scopes: &settings.scopes,
        claims: &settings.claim_mapping,
        redirect_uri: &redirect_uri,
    };
    let flow = flow_values(state, &org, token);
    let finished =
        clients.oidc.finish(&upstream, code, query.get("iss").map(String::as_str), &flow, state.now()).await;
    match finished {
        Ok(finished) => {
            let Pending { request, pre_login_id } = pending;
            if request.invitation_hash.is_some() {
                let identity = &finished.identity;
                return super::invitation::accept(state, &org, &entry, &request, identity, source, address)
                    .await;
            }
            let upstream_ms = finished.upstream_time.as_secs_f64() * 1e3;
            let identity = finished.identity;
            let mut response =
                super::complete::sign_in(state, &org, &entry, request, &pre_login_id, identity, address)
                    .await?;
            // Server-Timing (W3C): the upstream's share of this answer and the
            // whole of it, so that a slow sign-in can be told apart from a
            // slow upstream.
            let total_ms = started.elapsed().as_secs_f64() * 1e3;
            let timing =
                format!("upstream;desc=\"code exchange\";dur={upstream_ms:.3}, total;dur={total_ms:.3}");
            if let Ok(value) = HeaderValue::from_str(&timing) {
                response.headers_mut().insert(SERVER_TIMING, value);
            }
            Ok(response)
        }
        Err(error) => {
            let refusal = Refusal::untrusted(error.reason(), crate::error_chain::error_chain(&error));
            Err(refuse(state, &org, &idp, stage, &address, refusal).await)
        }
    }
}
