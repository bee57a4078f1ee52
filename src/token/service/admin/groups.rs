//! Groups and memberships over the admin API: read with `iam.view`; internal
//! groups created, renamed, deleted and their members changed with
//! `iam.manage`, audited in the transaction of each change.
//!
//! A group an identity provider pushes (`source: idp`, by SCIM or sign-in
//! claims) is read-only here: every write answers 409 naming the provider,
//! whose next push would undo it.

use aide::transform::TransformOperation;
use axum::Json;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::body::{JsonBody, Versioned, if_match, page_limit, present, query_pairs};
use super::openapi::{PageParameters, created, problems};
use super::users::if_match_header;
use super::{AdminCaller, AdminError, IamManage, organization_namespace};
use crate::audit::event::rfc3339_ms;
use crate::store::{AdminStore as _, Group, GroupSource, GroupStore as _, NewGroup};
use crate::token::service::check::IamView;
use crate::token::service::state::TokenServiceState;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 500;
const MAX_NAME: usize = 256;

#[derive(Deserialize, JsonSchema)]
pub struct GroupPath {
    id: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct MemberPath {
    id: String,
    user_id: String,
}

/// `GET {issuer}/api/v1/groups?limit=&cursor=`: groups by display name.
pub async fn list(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamView>,
    RawQuery(query): RawQuery,
) -> Result<Json<GroupList>, AdminError> {
    let (limit, offset) = parse_page(query.as_deref().unwrap_or_default())?;
    let namespace = organization_namespace(&state, &caller).await?;
    let mut groups = state.store().list_groups(&namespace, offset, limit + 1).await?;
    let more = groups.len() > limit as usize;
    groups.truncate(limit as usize);
    let mut items = Vec::with_capacity(groups.len());
    for group in &groups {
        items.push(group_view(&state, &namespace, group).await?);
    }
    let next_cursor = more.then(|| cursor(offset + u64::from(limit)));
    Ok(Json(GroupList { groups: items, next_cursor }))
}

pub fn list_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("List groups by display name").input::<Query<PageParameters>>().with(|op| problems(op, &[400]))
}

/// A page of groups.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupList {
    pub groups: Vec<GroupView>,
    /// Present when there is a next page: its `cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET {issuer}/api/v1/groups/{id}`.
pub async fn get(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamView>,
    Path(path): Path<GroupPath>,
) -> Result<Versioned<GroupView>, AdminError> {
    let namespace = organization_namespace(&state, &caller).await?;
    let group = load(&state, &namespace, &path.id).await?;
    Ok(Versioned::ok(group.version, group_view(&state, &namespace, &group).await?))
}

pub fn get_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("A group")
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct NewGroupBody {
    display_name: String,
    #[serde(default)]
    external_id: Option<String>,
}

/// `POST {issuer}/api/v1/groups`: an internal group. 201.
pub async fn create(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    body: JsonBody<NewGroupBody>,
) -> Result<Versioned<GroupView>, AdminError> {
    let body = body.read()?;
    let org = state.require_organization(&caller.authorized.organization).await?;
    let new = NewGroup {
        organization: org.namespace.clone(),
        display_name: display_name("displayName", &body.display_name)?,
        source: GroupSource::Internal,
        external_id: body.external_id.filter(|id| !id.trim().is_empty()),
    };
    let group = state.store().with_audit(caller.audit_context()).create_group(&new).await?;
    let location = format!("{}/api/v1/groups/{}", state.issuer(&org.name), group.id);
    Ok(Versioned::created(group.version, group_view(&state, &org.namespace, &group).await?, location))
}

pub fn create_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Create an internal group").with(created).with(|op| problems(op, &[409]))
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct GroupPatch {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
    external_id: Option<Option<String>>,
}

/// `PATCH {issuer}/api/v1/groups/{id}`: renames it or changes its
/// externalId; `If-Match` as for users.
pub async fn update(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    Path(path): Path<GroupPath>,
    headers: HeaderMap,
    body: JsonBody<GroupPatch>,
) -> Result<Versioned<GroupView>, AdminError> {
    let expected = if_match(&headers)?;
    let patch = body.read()?;
    let namespace = organization_namespace(&state, &caller).await?;
    let group = writable(&state, &namespace, &path.id).await?;
    let name = match patch.display_name {
        Some(name) => display_name("displayName", &name)?,
        None => group.display_name.clone(),
    };
    let external_id = match patch.external_id {
        Some(value) => value.filter(|id| !id.trim().is_empty()),
        None => group.external_id.clone(),
    };
    let store = state.store().with_audit(caller.audit_context());
    let updated = store
        .update_group(
            &namespace,
            &group.id,
            &name,
            external_id.as_deref(),
            Some(expected.unwrap_or(group.version)),
        )
        .await?;
    Ok(Versioned::ok(updated.version, group_view(&state, &namespace, &updated).await?))
}

pub fn update_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Rename a group or change its externalId")
        .with(if_match_header)
        .with(|op| problems(op, &[409, 412]))
}

/// `DELETE {issuer}/api/v1/groups/{id}`: the group and its memberships. 204.
pub async fn delete(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    Path(path): Path<GroupPath>,
) -> Result<StatusCode, AdminError> {
    let namespace = organization_namespace(&state, &caller).await?;
    let group = writable(&state, &namespace, &path.id).await?;
    let store = state.store().with_audit(caller.audit_context());
    if store.delete_group(&namespace, &group.id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&path.id))
    }
}

pub fn delete_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Delete an internal group")
        .response_with::<204, (), _>(|r| r.description("Deleted."))
        .with(|op| problems(op, &[409]))
}

/// `GET {issuer}/api/v1/groups/{id}/members?limit=&cursor=`: by userName.
pub async fn members(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamView>,
    Path(path): Path<GroupPath>,
    RawQuery(query): RawQuery,
) -> Result<Json<MemberList>, AdminError> {
    let (limit, offset) = parse_page(query.as_deref().unwrap_or_default())?;
    let namespace = organization_namespace(&state, &caller).await?;
    let group = load(&state, &namespace, &path.id).await?;
    let mut members = state.store().list_members(&namespace, &group.id, offset, limit + 1).await?;
    let more = members.len() > limit as usize;
    members.truncate(limit as usize);
    let members = members
        .iter()
        .map(|m| Member { user_id: m.user_id.clone(), user_name: m.user_name.clone() })
        .collect();
    let next_cursor = more.then(|| cursor(offset + u64::from(limit)));
    Ok(Json(MemberList { members, next_cursor }))
}

pub fn members_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("List a group's members by userName")
        .input::<Query<PageParameters>>()
        .with(|op| problems(op, &[400]))
}

/// A page of a group's members.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberList {
    pub members: Vec<Member>,
    /// Present when there is a next page: its `cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub user_id: String,
    pub user_name: String,
}

/// `PUT {issuer}/api/v1/groups/{id}/members/{userId}`: 201 if added, 204 if
/// it already was a member.
pub async fn add_member(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    Path(path): Path<MemberPath>,
) -> Result<StatusCode, AdminError> {
    let namespace = organization_namespace(&state, &caller).await?;
    let group = writable(&state, &namespace, &path.id).await?;
    let store = state.store().with_audit(caller.audit_context());
    let added = store.add_member(&namespace, &group.id, &path.user_id).await?;
    Ok(if added { StatusCode::CREATED } else { StatusCode::NO_CONTENT })
}

pub fn add_member_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Add a user to an internal group")
        .response_with::<201, (), _>(|r| r.description("Added."))
        .response_with::<204, (), _>(|r| r.description("It already was a member."))
        .with(|op| problems(op, &[409]))
}

/// `DELETE {issuer}/api/v1/groups/{id}/members/{userId}`. 204; 404 if it was
/// not a member.
pub async fn remove_member(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    Path(path): Path<MemberPath>,
) -> Result<StatusCode, AdminError> {
    let namespace = organization_namespace(&state, &caller).await?;
    let group = writable(&state, &namespace, &path.id).await?;
    let store = state.store().with_audit(caller.audit_context());
    if store.remove_member(&namespace, &group.id, &path.user_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AdminError::NotFound { kind: "member", id: path.user_id })
    }
}

pub fn remove_member_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Remove a user from an internal group")
        .response_with::<204, (), _>(|r| r.description("Removed."))
        .with(|op| problems(op, &[409]))
}

async fn load(state: &TokenServiceState, namespace: &str, id: &str) -> Result<Group, AdminError> {
    state.store().get_group(namespace, id).await?.ok_or_else(|| not_found(id))
}

/// The group, if the admin API may change it: not one an identity provider pushes.
async fn writable(state: &TokenServiceState, namespace: &str, id: &str) -> Result<Group, AdminError> {
    let group = load(state, namespace, id).await?;
    if group.source == GroupSource::Idp {
        let identity_provider = state
            .store()
            .group_provisioner(namespace, id)
            .await?
            .unwrap_or_else(|| "that pushes it".to_owned());
        return Err(AdminError::ManagedByIdentityProvider { kind: "group", id: group.id, identity_provider });
    }
    Ok(group)
}

fn not_found(id: &str) -> AdminError {
    AdminError::NotFound { kind: "group", id: id.to_owned() }
}

fn display_name(field: &str, value: &str) -> Result<String, AdminError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_NAME || value.chars().any(char::is_control) {
        return Err(AdminError::invalid_field(field, format!("1 to {MAX_NAME} printable characters")));
    }
    Ok(value.to_owned())
}

/// What the admin API shows of a group.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    pub id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    /// `internal`, or `idp` for a group an identity provider pushes.
    #[schemars(extend("enum" = ["internal", "idp"]))]
    pub source: &'static str,
    /// How many members it has.
    pub members: u64,
    pub created_at: String,
    pub updated_at: String,
    /// The version (also the `ETag`).
    pub version: i64,
    /// For `source: idp`: the identity provider that pushes it (null if unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<Option<String>>,
}

async fn group_view(
    state: &TokenServiceState,
    namespace: &str,
    group: &Group,
) -> Result<GroupView, AdminError> {
    let identity_provider = match group.source {
        GroupSource::Idp => Some(state.store().group_provisioner(namespace, &group.id).await?),
        _ => None,
    };
    Ok(GroupView {
        id: group.id.clone(),
        display_name: group.display_name.clone(),
        external_id: group.external_id.clone(),
        source: group.source.as_str(),
        members: state.store().count_members(namespace, &group.id).await?,
        created_at: rfc3339_ms(group.created_ms),
        updated_at: rfc3339_ms(group.updated_ms),
        version: group.version,
        identity_provider,
    })
}

fn cursor(offset: u64) -> String {
    URL_SAFE_NO_PAD.encode(offset.to_string())
}

/// `limit` and `cursor` (an opaque position this API returned).
fn parse_page(query: &str) -> Result<(u32, u64), AdminError> {
    let (mut limit, mut offset) = (DEFAULT_PAGE, 0);
    for (name, value) in query_pairs(query)? {
        match name.as_ref() {
            "limit" => {
                limit = page_limit(&value, MAX_PAGE)?;
            }
            "cursor" => {
                offset = URL_SAFE_NO_PAD
                    .decode(value.as_bytes())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .and_then(|text| text.parse::<u64>().ok())
                    .ok_or_else(|| {
                        AdminError::invalid_parameter("cursor", "not a cursor this API returned")
                    })?;
            }
            other => return Err(AdminError::invalid_parameter(other, "unknown parameter")),
        }
    }
    Ok((limit, offset))
}
