//! The SCIM 2.0 service (RFC 7644) over HTTP: routes under
//! `/o/{organization}/scim/v2`, on top of the pure protocol core (the
//! `portcullis_scim` crate, `crates/portcullis-scim/`) and the store.
//!
//! ```text
//!  request ─► record_sync_health (after the answer: metrics; counts and last error
//!     │                           batched by sync_health.rs into the store)
//!     └─► route ─► ScimCaller / ScimWriter (auth.rs: bearer token, provisioning mode)
//!                    └─► body (bounded) ─► users.rs / groups.rs / search.rs / discovery.rs
//!                                            │ filter ─► store::scim_query (SQL)
//!                                            │ PATCH  ─► portcullis_scim::patch::apply (all or nothing)
//!                                            ▼
//!                               representation.rs (JSON, meta, ETag) ─► projection.rs
//!  every error ─► error.rs ScimError ─► SCIM Error schema, status, scimType
//! ```

mod auth;
mod discovery;
mod error;
mod groups;
mod listing;
mod metrics;
mod projection;
mod representation;
mod search;
pub mod sync_health;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use portcullis_scim::ScimType;
use serde_json::Value;

pub use auth::{ScimCaller, ScimWriter};
pub use error::{ERROR_SCHEMA, ScimError};
pub use metrics::ScimMetrics;

use crate::store::Store;
use crate::token::password::PasswordHasher;

/// Media type of every SCIM response (RFC 7644 §8.1).
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";
/// Largest request body read, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct ScimState {
    pub store: Store,
    /// Where clients reach this service (`https://scim.example.com`); resource
    /// locations are `{public_base_url}/o/{organization}/scim/v2/…`.
    public_base_url: Arc<str>,
    pub metrics: Arc<ScimMetrics>,
    sync_health: Arc<sync_health::SyncHealthTally>,
    /// Hashes pushed passwords the way sign-in verifies them (argon2id).
    password_hasher: PasswordHasher,
}

impl ScimState {
    pub fn new(store: Store, public_base_url: &str) -> Self {
        ScimState {
            store,
            public_base_url: public_base_url.trim_end_matches('/').into(),
            metrics: Arc::new(ScimMetrics::default()),
            sync_health: Arc::default(),
            password_hasher: PasswordHasher::new(
                std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            ),
        }
    }

    /// Writes the sync health counted so far to the store now, rather than
    /// within [`sync_health::FLUSH_DELAY`]; for a graceful shutdown.
    pub async fn flush_sync_health(&self) {
        self.sync_health.flush(&self.store).await;
    }

    /// The SCIM base URL of one organization.
    pub fn base_url(&self, organization: &str) -> String {
        format!("{}/o/{organization}/scim/v2", self.public_base_url)
    }
}

/// The whole service: every SCIM route of every organization. Its metrics
/// are served on a port of their own ([`crate::http_metrics`]), not here.
pub fn router(state: ScimState) -> Router {
    let at = |path: &str| format!("/o/{{organization}}/scim/v2{path}");
    let only = |route: MethodRouter<ScimState>| route.fallback(method_not_allowed);
    Router::new()
        .route(&at("/Users"), only(get(users::list).post(users::create)))
        .route(&at("/Users/.search"), only(axum::routing::post(users::search)))
        .route(
            &at("/Users/{id}"),
            only(get(users::read).put(users::replace).patch(users::patch).delete(users::delete)),
        )
        .route(&at("/Groups"), only(get(groups::list).post(groups::create)))
        .route(&at("/Groups/.search"), only(axum::routing::post(groups::search)))
        .route(
            &at("/Groups/{id}"),
            only(get(groups::read).put(groups::replace).patch(groups::patch).delete(groups::delete)),
        )
        .route(&at("/ServiceProviderConfig"), only(get(discovery::service_provider_config)))
        .route(&at("/ResourceTypes"), only(get(discovery::resource_types)))
        .route(&at("/ResourceTypes/{id}"), only(get(discovery::resource_type)))
        .route(&at("/Schemas"), only(get(discovery::schemas)))
        .route(&at("/Schemas/{id}"), only(get(discovery::schema)))
        .route(&at("/.search"), only(axum::routing::post(search::search_all)))
        .fallback(no_endpoint)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::record_sync_health))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn method_not_allowed(method: Method, uri: Uri) -> ScimError {
    ScimError::MethodNotAllowed { method: method.to_string(), path: uri.path().to_owned() }
}

async fn no_endpoint(uri: Uri) -> ScimError {
    ScimError::NoEndpoint(uri.path().to_owned())
}

/// A SCIM JSON response, with the resource's ETag and location when given.
pub(crate) fn scim_response(
    status: StatusCode,
    body: &Value,
    version: Option<i64>,
    location: Option<&str>,
) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_CONTENT_TYPE));
    if let Some(etag) = version.and_then(|v| HeaderValue::from_str(&etag(v)).ok()) {
        headers.insert(header::ETAG, etag);
    }
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    response
}

/// 204 with the new ETag.
pub(crate) fn no_content(version: Option<i64>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(etag) = version.and_then(|v| HeaderValue::from_str(&etag(v)).ok()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// A version as a weak entity tag (RFC 7644 §3.14, RFC 9110 §8.8.3).
pub(crate) fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// `If-Match` (RFC 7644 §3.14): absent, `*`, or a list naming the current
/// version (weak or strong form); otherwise 412.
pub(crate) fn check_if_match(headers: &HeaderMap, version: i64) -> Result<(), ScimError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(()) };
    let text = value
        .to_str()
        .map_err(|_| ScimError::PreconditionFailed("If-Match is not a list of entity tags".into()))?;
    let current = version.to_string();
    let matches = text
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == current);
    if matches {
        Ok(())
    } else {
        Err(ScimError::PreconditionFailed(format!(
            "If-Match {text} does not name the current version {}",
            etag(version)
        )))
    }
}

/// A JSON request body, bounded by [`MAX_BODY_BYTES`].
pub(crate) fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ScimError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ScimError::PayloadTooLarge { limit: MAX_BODY_BYTES }
        } else {
            ScimError::invalid(ScimType::InvalidSyntax, format!("could not read the body: {rejection}"))
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ScimError::invalid(ScimType::InvalidSyntax, format!("the body is not valid JSON: {e}")))
}
