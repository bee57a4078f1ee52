//! Discovery (RFC 7644 §4): `/ServiceProviderConfig`, `/ResourceTypes`,
//! `/Schemas`. What they declare is what this service does: PATCH, filter
//! (up to [`MAX_RESULTS`] per page), sort, ETags and password changes yes
//! (`password` is writeOnly and returned never in `/Schemas`; stored hashed
//! where password sign-in is enabled, see `users.rs`); Bulk no. Read-only
//! (other methods are 405) and served without a token, since they say
//! nothing about any organization's data.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use portcullis_scim::schema::{
    ENTERPRISE_USER, GROUP_CORE, RESOURCE_TYPES, USER_CORE, resource_type_resource, schema_resource,
};
use serde::Deserialize;
use serde_json::json;

use super::error::ScimError;
use super::listing::{MAX_RESULTS, list_response};
use super::{ScimState, scim_response};

/// `schemas` URI of the ServiceProviderConfig resource (RFC 7643 §5).
pub const SERVICE_PROVIDER_CONFIG_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

#[derive(Debug, Deserialize)]
pub(super) struct OrganizationPath {
    organization: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct DefinitionPath {
    organization: String,
    id: String,
}

pub(super) async fn service_provider_config(
    State(state): State<ScimState>,
    Path(path): Path<OrganizationPath>,
) -> Response {
    let base = state.base_url(&path.organization);
    let body = json!({
        "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
        "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": true},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "The SCIM token of one IdentityProvider of this organization, from the Secret the operator generates",
            "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    });
    scim_response(StatusCode::OK, &body, None, None)
}

pub(super) async fn resource_types(
    State(state): State<ScimState>,
    Path(path): Path<OrganizationPath>,
) -> Response {
    let base = state.base_url(&path.organization);
    let all: Vec<_> = RESOURCE_TYPES.iter().map(|rt| resource_type_resource(rt, &base)).collect();
    let count = u64::try_from(all.len()).unwrap_or_default();
    scim_response(StatusCode::OK, &list_response(count, 1, all), None, None)
}

pub(super) async fn resource_type(
    State(state): State<ScimState>,
    Path(path): Path<DefinitionPath>,
) -> Result<Response, ScimError> {
    let base = state.base_url(&path.organization);
    let found = RESOURCE_TYPES
        .iter()
        .find(|rt| rt.id.eq_ignore_ascii_case(&path.id))
        .ok_or_else(|| ScimError::not_found("ResourceType", &path.id))?;
    Ok(scim_response(StatusCode::OK, &resource_type_resource(found, &base), None, None))
}

pub(super) async fn schemas(State(state): State<ScimState>, Path(path): Path<OrganizationPath>) -> Response {
    let base = state.base_url(&path.organization);
    let all: Vec<_> =
        [&USER_CORE, &ENTERPRISE_USER, &GROUP_CORE].iter().map(|s| schema_resource(s, &base)).collect();
    let count = u64::try_from(all.len()).unwrap_or_default();
    scim_response(StatusCode::OK, &list_response(count, 1, all), None, None)
}

pub(super) async fn schema(
    State(state): State<ScimState>,
    Path(path): Path<DefinitionPath>,
) -> Result<Response, ScimError> {
    let base = state.base_url(&path.organization);
    let found = [&USER_CORE, &ENTERPRISE_USER, &GROUP_CORE]
        .into_iter()
        .find(|s| s.id.eq_ignore_ascii_case(&path.id))
        .ok_or_else(|| ScimError::not_found("Schema", &path.id))?;
    Ok(scim_response(StatusCode::OK, &schema_resource(found, &base), None, None))
}
