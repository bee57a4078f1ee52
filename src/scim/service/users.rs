//! `/Users` (RFC 7644 §3.2–§3.6): list and search, create, read, replace,
//! patch, delete. Writes need [`ScimWriter`] (provisioning mode `scim`).
//!
//! A pushed `password` (POST, PUT or PATCH; RFC 7643 §4.1.1, writeOnly) is
//! hashed with the sign-in's argon2id and stored, in the same write, when the
//! Organization's password sign-in is enabled (`spec.authentication.password`,
//! its `minLength` enforced); when it is disabled the password is accepted and
//! dropped, as Entra ID expects of a writeOnly attribute. Never returned,
//! logged or echoed in an error. A PUT without one keeps the password.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use portcullis_scim::ScimType;
use portcullis_scim::patch::{self, PatchRequest};
use portcullis_scim::schema::USER;
use serde::Deserialize;
use serde_json::Value;

use super::auth::{ScimCaller, ScimWriter};
use super::error::ScimError;
use super::listing::{ListRequest, PlannedList, list_response};
use super::projection::Projection;
use super::representation::{ACTIVE_UNASSIGNED, UserFields, user_fields, user_json};
use super::{ScimState, check_if_match, json_body, scim_response};
use crate::secret::SecretString;
use crate::store::scim::ScimUser;
use crate::store::scim_query::Resource;
use crate::store::{NewUser, ScimStore, StoreError, UserSource, UserStore, UserUpdate};
use crate::token::password::{MAX_PASSWORD_BYTES, PasswordError};

const RESOURCE: &str = "User";
/// Times a PATCH without If-Match is re-applied when the user changed meanwhile.
const PATCH_ATTEMPTS: usize = 3;

#[derive(Debug, Deserialize)]
pub(super) struct UserPath {
    #[allow(dead_code)]
    organization: String,
    id: String,
}

pub(super) type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

pub(super) fn query_pairs(query: QueryPairs) -> Result<Vec<(String, String)>, ScimError> {
    query.map(|Query(pairs)| pairs).map_err(|e| {
        ScimError::invalid(ScimType::InvalidValue, format!("invalid query string: {}", e.body_text()))
    })
}

pub(super) async fn list(
    caller: ScimCaller,
    State(state): State<ScimState>,
    query: QueryPairs,
) -> Result<Response, ScimError> {
    let request = ListRequest::from_query(&query_pairs(query)?)?;
    list_users(&state, &caller, &request).await
}

pub(super) async fn search(
    caller: ScimCaller,
    State(state): State<ScimState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let request = ListRequest::from_search_body(&json_body(body)?)?;
    list_users(&state, &caller, &request).await
}

async fn list_users(
    state: &ScimState,
    caller: &ScimCaller,
    request: &ListRequest,
) -> Result<Response, ScimError> {
    let plan = request.plan(Resource::Users, &USER, state.store.backend())?;
    let (total, resources) = user_page(state, caller, &plan).await?;
    Ok(scim_response(StatusCode::OK, &list_response(total, plan.start_index, resources), None, None))
}

/// The users of one planned page, as projected JSON, and how many match in all.
pub(super) async fn user_page(
    state: &ScimState,
    caller: &ScimCaller,
    plan: &PlannedList,
) -> Result<(u64, Vec<Value>), ScimError> {
    let page = state.store.search_scim_users(&caller.namespace, plan.page()).await?;
    let base = state.base_url(&caller.organization);
    let mut groups: HashMap<String, Vec<(String, String)>> = HashMap::new();
    if plan.projection.shows("groups") && !page.items.is_empty() {
        let ids: Vec<String> = page.items.iter().map(|u| u.user.id.clone()).collect();
        for (user, group, name) in state.store.groups_of_users(&caller.namespace, &ids).await? {
            groups.entry(user).or_default().push((group, name));
        }
    }
    let resources = page
        .items
        .iter()
        .map(|user| {
            let groups = plan
                .projection
                .shows("groups")
                .then(|| groups.get(&user.user.id).map_or(&[][..], Vec::as_slice));
            plan.projection.apply(user_json(user, groups, &base))
        })
        .collect();
    Ok((page.total, resources))
}

async fn render(
    state: &ScimState,
    caller: &ScimCaller,
    user: &ScimUser,
    status: StatusCode,
    request: Option<&ListRequest>,
) -> Result<Response, ScimError> {
    let projection = match request {
        Some(request) => request.projection(&USER)?,
        None => Default::default(),
    };
    let groups: Vec<(String, String)> = if projection.shows("groups") {
        let found =
            state.store.groups_of_users(&caller.namespace, std::slice::from_ref(&user.user.id)).await?;
        found.into_iter().map(|(_, id, name)| (id, name)).collect()
    } else {
        Vec::new()
    };
    Ok(respond(state, caller, user, status, &projection, &groups))
}

/// The user as JSON, in `groups` (when the projection shows them).
fn respond(
    state: &ScimState,
    caller: &ScimCaller,
    user: &ScimUser,
    status: StatusCode,
    projection: &Projection,
    groups: &[(String, String)],
) -> Response {
    let base = state.base_url(&caller.organization);
    let body = projection.apply(user_json(user, projection.shows("groups").then_some(groups), &base));
    let location = format!("{base}/Users/{}", user.user.id);
    scim_response(status, &body, Some(user.user.version), Some(&location))
}

async fn load(state: &ScimState, caller: &ScimCaller, id: &str) -> Result<ScimUser, ScimError> {
    state.store.get_scim_user(&caller.namespace, id).await?.ok_or_else(|| ScimError::not_found(RESOURCE, id))
}

/// A user this caller may change: not a local account of Portcullis, and
/// not provisioned by another IdentityProvider (reads see every user of the
/// organization; writes only the caller's own, and users no provider claims).
fn writable(user: &ScimUser, caller: &ScimCaller) -> Result<(), ScimError> {
    if user.user.source == UserSource::Local {
        return Err(ScimError::Forbidden(format!(
            "user {:?} is a local account of Portcullis (source=local): SCIM may read it but not change it",
            user.user.user_name
        )));
    }
    match &user.provisioned_by {
        Some(owner) if *owner != caller.identity_provider => Err(ScimError::Forbidden(format!(
            "user {:?} was provisioned by IdentityProvider {owner}: only its SCIM client may change it",
            user.user.user_name
        ))),
        _ => Ok(()),
    }
}

pub(super) async fn read(
    caller: ScimCaller,
    State(state): State<ScimState>,
    Path(path): Path<UserPath>,
    query: QueryPairs,
) -> Result<Response, ScimError> {
    let request = ListRequest::from_query(&query_pairs(query)?)?;
    let user = load(&state, &caller, &path.id).await?;
    render(&state, &caller, &user, StatusCode::OK, Some(&request)).await
}

/// What a pushed password becomes: its argon2id hash to store, or nothing
/// (none sent, or password sign-in disabled: dropped).
async fn password_hash(
    state: &ScimState,
    caller: &ScimCaller,
    password: Option<&SecretString>,
) -> Result<Option<SecretString>, ScimError> {
    let Some(password) = password else { return Ok(None) };
    let policy = &caller.password_policy;
    if !policy.enabled {
        tracing::debug!(organization = %caller.organization, "password sign-in is disabled: pushed password dropped");
        return Ok(None);
    }
    let characters = password.expose().chars().count();
    let shortest = usize::try_from(policy.min_length).unwrap_or_default();
    if characters < shortest {
        return Err(ScimError::invalid(
            ScimType::InvalidValue,
            format!(
                "the password has {characters} characters; organization {} asks for at least {shortest} \
                 (spec.authentication.password.minLength)",
                caller.organization
            ),
        ));
    }
    match state.password_hasher.hash(password.expose()).await {
        Ok(hash) => Ok(Some(SecretString::new(hash))),
        Err(PasswordError::TooLong) => Err(ScimError::invalid(
            ScimType::InvalidValue,
            format!("the password is longer than {MAX_PASSWORD_BYTES} bytes"),
        )),
        Err(error) => Err(ScimError::PasswordHashing(error)),
    }
}

fn update_of(fields: &UserFields) -> UserUpdate {
    UserUpdate {
        user_name: fields.user_name.clone(),
        display_name: fields.display_name.clone(),
        given_name: fields.given_name.clone(),
        family_name: fields.family_name.clone(),
        external_id: fields.external_id.clone(),
        emails: fields.emails.clone(),
        active: fields.active,
    }
}

pub(super) async fn create(
    ScimWriter(caller): ScimWriter,
    State(state): State<ScimState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let fields = user_fields(&json_body(body)?)?;
    let password_hash = password_hash(&state, &caller, fields.password.as_ref()).await?;
    let new = NewUser {
        display_name: fields.display_name.clone(),
        given_name: fields.given_name.clone(),
        family_name: fields.family_name.clone(),
        external_id: fields.external_id.clone(),
        emails: fields.emails.clone(),
        active: fields.active,
        password_hash,
        ..NewUser::new(caller.namespace.clone(), fields.user_name.clone(), UserSource::Scim)
    };
    let created = caller
        .store
        .create_scim_user(&new, &fields.extra, &caller.identity_provider)
        .await
        .map_err(|e| ScimError::from_store(e, RESOURCE, &fields.user_name))?;
    // A user created just now is in no group: nothing to look up.
    Ok(respond(&state, &caller, &created, StatusCode::CREATED, &Projection::default(), &[]))
}

pub(super) async fn replace(
    ScimWriter(caller): ScimWriter,
    State(state): State<ScimState>,
    Path(path): Path<UserPath>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let body = json_body(body)?;
    let current = load(&state, &caller, &path.id).await?;
    check_if_match(&headers, current.user.version)?;
    writable(&current, &caller)?;
    let fields = user_fields(&body)?;
    let password_hash = password_hash(&state, &caller, fields.password.as_ref()).await?;
    let expected = headers.contains_key(header::IF_MATCH).then_some(current.user.version);
    let updated = caller
        .store
        .update_scim_user(
            &caller.namespace,
            &path.id,
            &update_of(&fields),
            &fields.extra,
            password_hash.as_ref(),
            expected,
        )
        .await
        .map_err(|e| ScimError::from_store(e, RESOURCE, &path.id))?;
    render(&state, &caller, &updated, StatusCode::OK, None).await
}

pub(super) async fn patch(
    ScimWriter(caller): ScimWriter,
    State(state): State<ScimState>,
    Path(path): Path<UserPath>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let request = PatchRequest::from_json(&json_body(body)?)?;
    let base = state.base_url(&caller.organization);
    // Hashed once, on the first attempt that carries it.
    let mut hashed: Option<Option<SecretString>> = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = load(&state, &caller, &path.id).await?;
        check_if_match(&headers, current.user.version)?;
        writable(&current, &caller)?;
        let resource = user_json(&current, None, &base);
        let Some(resource) = resource.as_object() else {
            return Err(ScimError::invalid(ScimType::InvalidValue, "the stored user is not an object"));
        };
        let outcome = patch::apply(resource, &USER, &request)?;
        let password_hash = match &hashed {
            Some(hash) => hash.clone(),
            None => {
                let password = outcome.password.as_ref().map(|p| SecretString::new(p.expose()));
                let hash = password_hash(&state, &caller, password.as_ref()).await?;
                hashed = Some(hash.clone());
                hash
            }
        };
        if !outcome.changed && password_hash.is_none() {
            return render(&state, &caller, &current, StatusCode::OK, None).await;
        }
        let mut fields = user_fields(&outcome.resource)?;
        if fields.active_absent {
            // Removing `active` is no way to reactivate a user: the status stays.
            fields.active = current.user.active;
            let (key, mark) = ACTIVE_UNASSIGNED;
            fields.extra.insert(key.to_owned(), mark);
        }
        // Read-modify-write: the write names the version the patch applied to.
        match caller
            .store
            .update_scim_user(
                &caller.namespace,
                &path.id,
                &update_of(&fields),
                &fields.extra,
                password_hash.as_ref(),
                Some(current.user.version),
            )
            .await
        {
            Ok(updated) => return render(&state, &caller, &updated, StatusCode::OK, None).await,
            Err(StoreError::VersionMismatch { .. })
                if !headers.contains_key(header::IF_MATCH) && attempt < PATCH_ATTEMPTS => {}
            Err(error) => return Err(ScimError::from_store(error, RESOURCE, &path.id)),
        }
    }
}

pub(super) async fn delete(
    ScimWriter(caller): ScimWriter,
    State(state): State<ScimState>,
    Path(path): Path<UserPath>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let current = load(&state, &caller, &path.id).await?;
    check_if_match(&headers, current.user.version)?;
    writable(&current, &caller)?;
    if caller.store.delete_user(&caller.namespace, &path.id).await? {
        Ok(super::no_content(None))
    } else {
        Err(ScimError::not_found(RESOURCE, &path.id))
    }
}
