//! `/Groups` (RFC 7644 §3.2–§3.6). Groups written here are `source=idp`;
//! groups managed inside Portcullis (`source=internal`) can be read but not
//! changed through SCIM. A PATCH that only adds or removes named members
//! reads just those members and writes one row each: a 50,000-member group
//! is never read or rewritten whole for it.
//!
//! What a PATCH answers (RFC 7644 §3.5.2 allows either): 200 with the group
//! as a GET would show it (honouring `attributes`/`excludedAttributes`),
//! unless the request names `members` in `excludedAttributes` or the group
//! has more than [`LARGE_GROUP_MEMBERS`] members; then 204 with the new ETag.
//!
//! A member whose User does not exist (yet) makes the whole POST, PUT or
//! PATCH a 400 `invalidValue` naming its id, and the group stays as it was:
//! a membership is never stored half-known, and the client retries once the
//! user is provisioned (RFC 7644 leaves this to the service).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use portcullis_scim::ScimType;
use portcullis_scim::filter::{CompValue, CompareOp, Filter};
use portcullis_scim::patch::{self, OpKind, PatchRequest};
use portcullis_scim::path::PatchPath;
use portcullis_scim::schema::GROUP;
use serde::Deserialize;
use serde_json::Value;

use super::auth::{ScimCaller, ScimWriter};
use super::error::ScimError;
use super::listing::{ListRequest, PlannedList, list_response};
use super::representation::{group_fields, group_json};
use super::users::{QueryPairs, query_pairs};
use super::{ScimState, check_if_match, json_body, no_content, scim_response};
use crate::store::scim::{GroupWrite, MemberChanges};
use crate::store::scim_query::Resource;
use crate::store::{Group, GroupSource, GroupStore, NewGroup, ScimStore, StoreError};

const RESOURCE: &str = "Group";
/// Above this many members a PATCH answers 204 rather than the whole group.
pub const LARGE_GROUP_MEMBERS: u32 = 1000;

#[derive(Debug, Deserialize)]
pub(super) struct GroupPath {
    #[allow(dead_code)]
    organization: String,
    id: String,
}

/// Store errors of a group write: an unknown member is the client's bad value.
fn write_error(error: StoreError, id: &str) -> ScimError {
    match error {
        StoreError::NotFound { what: "user", id: member, .. } => ScimError::invalid(
            ScimType::InvalidValue,
            format!("member {member:?} is not a User of this organization"),
        ),
        other => ScimError::from_store(other, RESOURCE, id),
    }
}

pub(super) async fn list(
    caller: ScimCaller,
    State(state): State<ScimState>,
    query: QueryPairs,
) -> Result<Response, ScimError> {
    let request = ListRequest::from_query(&query_pairs(query)?)?;
    list_groups(&state, &caller, &request).await
}

pub(super) async fn search(
    caller: ScimCaller,
    State(state): State<ScimState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let request = ListRequest::from_search_body(&json_body(body)?)?;
    list_groups(&state, &caller, &request).await
}

async fn list_groups(
    state: &ScimState,
    caller: &ScimCaller,
    request: &ListRequest,
) -> Result<Response, ScimError> {
    let plan = request.plan(Resource::Groups, &GROUP, state.store.backend())?;
    let (total, resources) = group_page(state, caller, &plan).await?;
    Ok(scim_response(StatusCode::OK, &list_response(total, plan.start_index, resources), None, None))
}

/// The groups of one planned page, as projected JSON, and how many match in all.
pub(super) async fn group_page(
    state: &ScimState,
    caller: &ScimCaller,
    plan: &PlannedList,
) -> Result<(u64, Vec<Value>), ScimError> {
    let page = state.store.search_scim_groups(&caller.namespace, plan.page()).await?;
    let base = state.base_url(&caller.organization);
    let mut resources = Vec::with_capacity(page.items.len());
    for group in &page.items {
        let members = if plan.projection.shows("members") {
            Some(state.store.scim_members(&caller.namespace, &group.id, None).await?)
        } else {
            None
        };
        resources.push(plan.projection.apply(group_json(group, members.as_deref(), &base)));
    }
    Ok((page.total, resources))
}

async fn load(state: &ScimState, caller: &ScimCaller, id: &str) -> Result<Group, ScimError> {
    state.store.get_group(&caller.namespace, id).await?.ok_or_else(|| ScimError::not_found(RESOURCE, id))
}

/// Loads a group to change: refuses one managed inside Portcullis or
/// provisioned by another IdentityProvider.
async fn load_writable(state: &ScimState, caller: &ScimCaller, id: &str) -> Result<Group, ScimError> {
    let found = state
        .store
        .get_scim_group(&caller.namespace, id)
        .await?
        .ok_or_else(|| ScimError::not_found(RESOURCE, id))?;
    let group = found.group;
    if group.source == GroupSource::Internal {
        return Err(ScimError::Forbidden(format!(
            "group {:?} is managed in Portcullis (source=internal), not by an identity provider",
            group.display_name
        )));
    }
    match found.provisioned_by {
        Some(owner) if owner != caller.identity_provider => Err(ScimError::Forbidden(format!(
            "group {:?} was provisioned by IdentityProvider {owner}: only its SCIM client may change it",
            group.display_name
        ))),
        _ => Ok(group),
    }
}

async fn render(
    state: &ScimState,
    caller: &ScimCaller,
    group: &Group,
    status: StatusCode,
    request: Option<&ListRequest>,
) -> Result<Response, ScimError> {
    let projection = match request {
        Some(request) => request.projection(&GROUP)?,
        None => Default::default(),
    };
    let members = if projection.shows("members") {
        Some(state.store.scim_members(&caller.namespace, &group.id, None).await?)
    } else {
        None
    };
    let base = state.base_url(&caller.organization);
    let body = projection.apply(group_json(group, members.as_deref(), &base));
    let location = format!("{base}/Groups/{}", group.id);
    Ok(scim_response(status, &body, Some(group.version), Some(&location)))
}

pub(super) async fn read(
    caller: ScimCaller,
    State(state): State<ScimState>,
    Path(path): Path<GroupPath>,
    query: QueryPairs,
) -> Result<Response, ScimError> {
    let request = ListRequest::from_query(&query_pairs(query)?)?;
    let group = load(&state, &caller, &path.id).await?;
    render(&state, &caller, &group, StatusCode::OK, Some(&request)).await
}

pub(super) async fn create(
    ScimWriter(caller): ScimWriter,
    State(state): State<ScimState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let fields = group_fields(&json_body(body)?)?;
    let new = NewGroup {
        organization: caller.namespace.clone(),
        display_name: fields.display_name.clone(),
        source: GroupSource::Idp,
        external_id: fields.external_id.clone(),
    };
    let members = fields.members.unwrap_or_default();
    let created = caller
        .store
        .create_scim_group(&new, &members, &fields.member_displays, &caller.identity_provider)
        .await
        .map_err(|e| write_error(e, &fields.display_name))?;
    render(&state, &caller, &created, StatusCode::CREATED, None).await
}

pub(super) async fn replace(
    ScimWriter(caller): ScimWriter,
    State(state): State<ScimState>,
    Path(path): Path<GroupPath>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let body = json_body(body)?;
    let current = load_writable(&state, &caller, &path.id).await?;
    check_if_match(&headers, current.version)?;
    let fields = group_fields(&body)?;
    let write = GroupWrite {
        display_name: &fields.display_name,
        external_id: fields.external_id.as_deref(),
        // PUT replaces: no `members` means none (RFC 7644 §3.5.1).
        members: MemberChanges::Replace(fields.members.clone().unwrap_or_default()),
        member_displays: &fields.member_displays,
    };
    let expected = headers.contains_key(header::IF_MATCH).then_some(current.version);
    let updated = caller
        .store
        .update_scim_group(&caller.namespace, &path.id, &write, expected)
        .await
        .map_err(|e| write_error(e, &path.id))?;
    render(&state, &caller, &updated, StatusCode::OK, None).await
}

/// The member ids a PATCH touches, when it only adds or removes named
/// members (and changes plain attributes); `None` when it needs the whole
/// member list (replace of `members`, remove of all, other value filters).
fn named_members(request: &PatchRequest) -> Option<Vec<String>> {
    let is_members = |name: &str| name.eq_ignore_ascii_case("members");
    let values = |value: Option<&Value>| -> Option<Vec<String>> {
        let items = match value? {
            Value::Array(items) => items.clone(),
            object @ Value::Object(_) => vec![object.clone()],
            _ => return None,
        };
        items
            .iter()
            .map(|item| {
                let object = item.as_object()?;
                let (_, id) = object.iter().find(|(k, _)| k.eq_ignore_ascii_case("value"))?;
                id.as_str().map(str::to_owned)
            })
            .collect()
    };
    let mut ids = Vec::new();
    for operation in &request.operations {
        match &operation.path {
            None => match &operation.value {
                Some(Value::Object(object)) if !object.keys().any(|k| is_members(k)) => {}
                _ => return None,
            },
            Some(PatchPath::Attribute(path)) if is_members(&path.name) && path.urn.is_none() => {
                if path.sub_attr.is_some() {
                    return None;
                }
                match operation.op {
                    OpKind::Add | OpKind::Remove => ids.extend(values(operation.value.as_ref())?),
                    OpKind::Replace => return None,
                }
            }
            Some(PatchPath::Attribute(_)) => {}
            Some(PatchPath::ValuePath { path, filter, sub_attr })
                if is_members(&path.name) && sub_attr.is_none() =>
            {
                match filter {
                    Filter::Compare { path: inner, op: CompareOp::Eq, value: CompValue::String(id) }
                        if inner.name.eq_ignore_ascii_case("value") && inner.sub_attr.is_none() =>
                    {
                        ids.push(id.clone());
                    }
                    _ => return None,
                }
            }
            Some(PatchPath::ValuePath { .. }) => return None,
        }
    }
    Some(ids)
}

/// The answer to a PATCH that applied (see the module docs).
async fn patched(
    state: &ScimState,
    caller: &ScimCaller,
    group: &Group,
    request: &ListRequest,
) -> Result<Response, ScimError> {
    let projection = request.projection(&GROUP)?;
    if projection.excludes("members")
        || state.store.group_has_more_members_than(&caller.namespace, &group.id, LARGE_GROUP_MEMBERS).await?
    {
        return Ok(no_content(Some(group.version)));
    }
    render(state, caller, group, StatusCode::OK, Some(request)).await
}

pub(super) async fn patch(
    ScimWriter(caller): ScimWriter,
    State(state): State<ScimState>,
    Path(path): Path<GroupPath>,
    query: QueryPairs,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let answer = ListRequest::from_query(&query_pairs(query)?)?;
    let request = PatchRequest::from_json(&json_body(body)?)?;
    let current = load_writable(&state, &caller, &path.id).await?;
    check_if_match(&headers, current.version)?;
    let named = named_members(&request);
    let members = state.store.scim_members(&caller.namespace, &path.id, named.as_deref()).await?;
    let base = state.base_url(&caller.organization);
    let resource = group_json(&current, Some(&members), &base);
    let Some(resource) = resource.as_object() else {
        return Err(ScimError::invalid(ScimType::InvalidValue, "the stored group is not an object"));
    };
    let outcome = patch::apply(resource, &GROUP, &request)?;
    let fields = group_fields(&outcome.resource)?;
    // Only what is stored counts: a member's `display` the same as before changes nothing.
    let member_displays: Vec<(String, String)> = fields
        .member_displays
        .iter()
        .filter(|(id, display)| {
            // As rendered: the stored display, else the userName.
            !members
                .iter()
                .any(|m| m.user_id == *id && m.display.as_deref().unwrap_or(&m.user_name) == display)
        })
        .cloned()
        .collect();
    let unchanged = outcome.membership.is_empty()
        && member_displays.is_empty()
        && fields.display_name == current.display_name
        && fields.external_id == current.external_id;
    if !outcome.changed || unchanged {
        return patched(&state, &caller, &current, &answer).await;
    }
    let write = GroupWrite {
        display_name: &fields.display_name,
        external_id: fields.external_id.as_deref(),
        members: MemberChanges::Delta {
            added: outcome.membership.added,
            removed: outcome.membership.removed,
        },
        member_displays: &member_displays,
    };
    // The write names the version the patch applied to: all of it or none.
    let updated = caller
        .store
        .update_scim_group(&caller.namespace, &path.id, &write, Some(current.version))
        .await
        .map_err(|e| write_error(e, &path.id))?;
    patched(&state, &caller, &updated, &answer).await
}

pub(super) async fn delete(
    ScimWriter(caller): ScimWriter,
    State(state): State<ScimState>,
    Path(path): Path<GroupPath>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let current = load_writable(&state, &caller, &path.id).await?;
    check_if_match(&headers, current.version)?;
    if caller.store.delete_group(&caller.namespace, &path.id).await? {
        Ok(no_content(None))
    } else {
        Err(ScimError::not_found(RESOURCE, &path.id))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(body: Value) -> PatchRequest {
        PatchRequest::from_json(&body).expect("valid PatchOp")
    }

    const SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

    #[test]
    fn member_adds_and_removals_by_id_read_only_those_members() {
        let okta = request(json!({"schemas": [SCHEMA], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]},
            {"op": "remove", "path": "members[value eq \"u3\"]"},
            {"op": "replace", "value": {"displayName": "renamed"}},
        ]}));
        assert_eq!(named_members(&okta), Some(vec!["u1".into(), "u2".into(), "u3".into()]));
    }

    #[test]
    fn replacing_or_clearing_members_needs_the_whole_list() {
        let replace = request(json!({"schemas": [SCHEMA], "Operations": [
            {"op": "replace", "path": "members", "value": [{"value": "u1"}]},
        ]}));
        assert_eq!(named_members(&replace), None);
        let clear =
            request(json!({"schemas": [SCHEMA], "Operations": [{"op": "remove", "path": "members"}]}));
        assert_eq!(named_members(&clear), None);
        let no_path = request(json!({"schemas": [SCHEMA], "Operations": [
            {"op": "replace", "value": {"members": []}},
        ]}));
        assert_eq!(named_members(&no_path), None);
    }
}
