//! Users over the admin API: list (keyset pages by userName) and get (with
//! the effective permissions per scope and the decision trail) with
//! `iam.view`; create, update, delete, deactivate and reactivate, reset
//! second factors and revoke sessions with `iam.manage`, each audited in the
//! transaction of the change, as the caller.
//!
//! A user an identity provider provisions (SCIM, or JIT at sign-in) keeps
//! its profile there: updating it here is refused (409 naming the provider),
//! as is deleting a SCIM user (the provider's next push would bring it back).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::{etag, if_match, json_body, present};
use super::{AdminCaller, AdminError, IamManage, organization_namespace};
use crate::audit::event::rfc3339_ms;
use crate::authz::{AccessIndex, Principal, Scope};
use crate::secret::SecretString;
use crate::store::{
    AdminStore as _, AssignmentRecord, DesiredStateStore as _, Email, NewUser, StoreError, User, UserSource,
    UserStore as _, UserUpdate,
};
use crate::token::password::{MAX_PASSWORD_BYTES, PasswordError};
use crate::token::service::check::IamView;
use crate::token::service::state::TokenServiceState;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 500;

/// `{id}` of a user route (`{org}` is the caller's, read by [`AdminCaller`]).
#[derive(Deserialize)]
pub struct UserPath {
    id: String,
}

/// `GET {issuer}/api/v1/users?limit=&cursor=`: users by userName.
pub async fn list(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamView>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AdminError> {
    let page = parse_page(query.as_deref().unwrap_or_default())?;
    let namespace = organization_namespace(&state, &caller).await?;
    let (limit, after, search) = (page.limit, page.after, page.search);
    let mut users =
        state.store().list_users_after(&namespace, after.as_deref(), search.as_deref(), limit + 1).await?;
    let more = users.len() > limit as usize;
    users.truncate(limit as usize);
    let mut body = json!({ "users": users.iter().map(user_json).collect::<Vec<_>>() });
    if more && let Some(last) = users.last() {
        body["nextCursor"] = json!(URL_SAFE_NO_PAD.encode(&last.user_name));
    }
    Ok(Json(body))
}

/// `GET {issuer}/api/v1/users/{id}`: the user, and `access`: what it may
/// do in each scope and why (assignment → role → group), as the access core
/// decides it for tokens and the check API.
pub async fn get(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamView>,
    Path(path): Path<UserPath>,
) -> Result<Response, AdminError> {
    let org = state.require_organization(&caller.authorized.organization).await?;
    let user = state.store().get_user(&org.namespace, &path.id).await?.ok_or_else(|| not_found(&path.id))?;
    let snapshot = state.access_index(&org).await?;
    let mut body = user_json(&user);
    body["access"] =
        access_json(&state, &org.namespace, &snapshot.index, &user, state.now().as_second()).await?;
    Ok(with_etag(StatusCode::OK, user.version, body))
}

/// The effective permissions of `user` in the organization and in every
/// workspace where one of its assignments applies, each with every
/// assignment in force that grants it (the access review's question, so the
/// same answer as `portcullis diff`).
async fn access_json(
    state: &TokenServiceState,
    namespace: &str,
    index: &AccessIndex,
    user: &User,
    now: i64,
) -> Result<Value, AdminError> {
    let principal = Principal::user(user.user_name.clone());
    let mut scopes = vec![Scope::Organization];
    scopes.extend(index.workspaces_of(&principal).into_iter().cloned());
    let mut assignment_names = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for scope in &scopes {
        let mut permissions = Vec::new();
        for held in index.held_permissions(&principal, scope, now) {
            let mut grants = Vec::new();
            for grant in index.grants_for(&principal, held.permission, scope, now) {
                let uid = grant.assignment();
                if !assignment_names.contains_key(uid) {
                    let name = state
                        .store()
                        .get_by_uid::<AssignmentRecord>(uid)
                        .await?
                        .map(|record| record.meta.name)
                        .unwrap_or_else(|| uid.to_owned());
                    assignment_names.insert(uid.to_owned(), name);
                }
                let path = index.role_path(grant.role(), held.permission);
                grants.push(json!({
                    "assignment": { "kind": "RoleAssignment", "namespace": namespace, "name": assignment_names[uid] },
                    "role": grant.role(),
                    "rolePath": path.as_ref().map(|p| p.roles.clone()),
                    "grant": path.map(|p| p.grant),
                    "group": grant.group(),
                    "scope": scope_json(grant.scope()),
                    "expiresAt": grant.expires_at().map(|s| rfc3339_ms(s.saturating_mul(1000))),
                }));
            }
            permissions.push(json!({
                "permission": held.permission,
                "until": held.until.map(|s| rfc3339_ms(s.saturating_mul(1000))),
                "grants": grants,
            }));
        }
        out.push(json!({ "scope": scope_json(scope), "permissions": permissions }));
    }
    Ok(json!({ "active": user.active, "scopes": out }))
}

fn scope_json(scope: &Scope) -> Value {
    match scope {
        Scope::Organization => json!({ "kind": "Organization" }),
        Scope::Workspace(name) => json!({ "kind": "Workspace", "workspace": name }),
    }
}

/// A user as `POST {issuer}/api/v1/users` takes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUserBody {
    user_name: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    family_name: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    emails: Vec<EmailBody>,
    #[serde(default = "active_by_default")]
    active: bool,
    /// An initial password; without one the user signs in through SSO or
    /// is given one later.
    #[serde(default)]
    password: Option<String>,
}

fn active_by_default() -> bool {
    true
}

#[derive(Deserialize)]
pub struct EmailBody {
    value: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    primary: bool,
}

/// Longest userName, display name or other text attribute accepted.
const MAX_TEXT: usize = 256;

fn emails(field: &str, emails: Vec<EmailBody>) -> Result<Vec<Email>, AdminError> {
    if emails.iter().filter(|e| e.primary).count() > 1 {
        return Err(AdminError::invalid_field(field, "at most one email may be primary"));
    }
    emails
        .into_iter()
        .enumerate()
        .map(|(n, e)| {
            let value = e.value.trim().to_owned();
            if value.len() > MAX_TEXT
                || !value.contains('@')
                || value.starts_with('@')
                || value.ends_with('@')
            {
                return Err(AdminError::invalid_field(
                    &format!("{field}[{n}].value"),
                    "not an email address",
                ));
            }
            Ok(Email { value, kind: e.kind, primary: e.primary })
        })
        .collect()
}

fn text(field: &str, value: Option<String>) -> Result<Option<String>, AdminError> {
    match value.map(|v| v.trim().to_owned()) {
        Some(v) if v.chars().count() > MAX_TEXT => {
            Err(AdminError::invalid_field(field, format!("at most {MAX_TEXT} characters")))
        }
        Some(v) if v.is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn user_name(field: &str, value: &str) -> Result<String, AdminError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(AdminError::invalid_field(field, format!("1 to {MAX_TEXT} printable characters")));
    }
    Ok(value.to_owned())
}

/// `POST {issuer}/api/v1/users`: a local user, with an initial password or
/// none. 201 with its `Location` and `ETag`.
pub async fn create(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    let body: NewUserBody = json_body(body)?;
    let org = state.require_organization(&caller.authorized.organization).await?;
    let mut new =
        NewUser::new(org.namespace.clone(), user_name("userName", &body.user_name)?, UserSource::Local);
    new.display_name = text("displayName", body.display_name)?;
    new.given_name = text("givenName", body.given_name)?;
    new.family_name = text("familyName", body.family_name)?;
    new.external_id = text("externalId", body.external_id)?;
    new.emails = emails("emails", body.emails)?;
    new.active = body.active;
    if let Some(password) = body.password.map(SecretString::new) {
        let policy = &org.spec.authentication.password;
        if !policy.enabled {
            return Err(AdminError::invalid_field("password", "this organization does not use passwords"));
        }
        let length = password.expose().chars().count();
        let min = usize::try_from(policy.min_length).unwrap_or(12);
        if length < min || password.expose().len() > MAX_PASSWORD_BYTES {
            return Err(AdminError::invalid_field(
                "password",
                format!("must be {min} characters to {MAX_PASSWORD_BYTES} bytes"),
            ));
        }
        let hash = state.login().hasher().hash(password.expose()).await.map_err(|e| match e {
            PasswordError::Busy => AdminError::Busy,
            other => AdminError::Password(other),
        })?;
        new.password_hash = Some(SecretString::new(hash));
    }
    let created = state.store().with_audit(caller.audit_context()).create_user(&new).await?;
    let mut response = with_etag(StatusCode::CREATED, created.version, user_json(&created));
    let location = format!("{}/api/v1/users/{}", state.issuer(&org.name), created.id);
    if let Ok(location) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// What `PATCH {issuer}/api/v1/users/{id}` may change (JSON merge patch,
/// RFC 7396: absent leaves a field, `null` clears it).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPatch {
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    given_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    family_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    external_id: Option<Option<String>>,
    #[serde(default)]
    emails: Option<Vec<EmailBody>>,
}

/// `PATCH {issuer}/api/v1/users/{id}`: changes the profile of a local user.
/// With `If-Match`, only if the user is still at that version (412 if not);
/// without, the patch applies to the version it was merged onto, so two
/// concurrent patches never lose one another silently either.
pub async fn update(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    Path(path): Path<UserPath>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    let expected = if_match(&headers)?;
    let patch: UserPatch = json_body(body)?;
    let namespace = organization_namespace(&state, &caller).await?;
    let user = state.store().get_user(&namespace, &path.id).await?.ok_or_else(|| not_found(&path.id))?;
    refuse_provisioned(&state, &namespace, &user).await?;
    if let Some(expected) = expected
        && expected != user.version
    {
        return Err(AdminError::PreconditionFailed {
            kind: "user",
            id: user.id,
            expected: expected.to_string(),
        });
    }
    let mut update = UserUpdate::from(&user);
    if let Some(name) = patch.user_name {
        update.user_name = user_name("userName", &name)?;
    }
    if let Some(value) = patch.display_name {
        update.display_name = text("displayName", value)?;
    }
    if let Some(value) = patch.given_name {
        update.given_name = text("givenName", value)?;
    }
    if let Some(value) = patch.family_name {
        update.family_name = text("familyName", value)?;
    }
    if let Some(value) = patch.external_id {
        update.external_id = text("externalId", value)?;
    }
    if let Some(value) = patch.emails {
        update.emails = emails("emails", value)?;
    }
    let store = state.store().with_audit(caller.audit_context());
    let updated =
        store.update_user(&namespace, &user.id, &update, Some(expected.unwrap_or(user.version))).await?;
    Ok(with_etag(StatusCode::OK, updated.version, user_json(&updated)))
}

/// `DELETE {issuer}/api/v1/users/{id}`: the user, its emails, second
/// factors, sessions and memberships. 204.
pub async fn delete(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    Path(path): Path<UserPath>,
) -> Result<StatusCode, AdminError> {
    let namespace = organization_namespace(&state, &caller).await?;
    let user = state.store().get_user(&namespace, &path.id).await?.ok_or_else(|| not_found(&path.id))?;
    if user.source == UserSource::Scim {
        refuse_provisioned(&state, &namespace, &user).await?;
    }
    let store = state.store().with_audit(caller.audit_context());
    if store.delete_user(&namespace, &path.id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&path.id))
    }
}

/// `DELETE {issuer}/api/v1/users/{id}/second-factors`: removes every TOTP
/// enrolment and WebAuthn credential; the user enrols again at its next
/// sign-in where the organization requires a second factor.
pub async fn reset_second_factors(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    Path(path): Path<UserPath>,
) -> Result<Json<Value>, AdminError> {
    let namespace = organization_namespace(&state, &caller).await?;
    let store = state.store().with_audit(caller.audit_context());
    let removed = store.reset_second_factors(&namespace, &path.id).await?;
    Ok(Json(json!({
        "removed": { "enrolments": removed.enrolments, "webauthnCredentials": removed.webauthn_credentials }
    })))
}

/// `DELETE {issuer}/api/v1/users/{id}/sessions`: ends its browser sessions
/// and revokes its refresh-token families. Access tokens already issued
/// stay valid until they expire (minutes), as RFC 9068 tokens do.
pub async fn revoke_sessions(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    Path(path): Path<UserPath>,
) -> Result<Json<Value>, AdminError> {
    let namespace = organization_namespace(&state, &caller).await?;
    let store = state.store().with_audit(caller.audit_context());
    let revoked = store.revoke_user_access(&namespace, &path.id).await?;
    Ok(Json(
        json!({ "revoked": { "sessions": revoked.sessions, "refreshTokenFamilies": revoked.refresh_families } }),
    ))
}

/// 409 naming the identity provider if one provisions `user`.
async fn refuse_provisioned(
    state: &TokenServiceState,
    namespace: &str,
    user: &User,
) -> Result<(), AdminError> {
    if user.source == UserSource::Local {
        return Ok(());
    }
    let identity_provider = state
        .store()
        .user_provisioner(namespace, &user.id)
        .await?
        .unwrap_or_else(|| format!("that provisioned it ({})", user.source.as_str()));
    Err(AdminError::ManagedByIdentityProvider { kind: "user", id: user.id.clone(), identity_provider })
}

/// A JSON answer with the row's version as its `ETag`.
pub(super) fn with_etag(status: StatusCode, version: i64, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::ETAG, etag(version));
    response
}

/// `POST {issuer}/api/v1/users/{id}/deactivate`: the user can no longer sign
/// in or refresh tokens.
pub async fn deactivate(
    state: State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    path: Path<UserPath>,
) -> Result<Json<Value>, AdminError> {
    set_active(state, caller, path, false).await
}

/// `POST {issuer}/api/v1/users/{id}/reactivate`.
pub async fn reactivate(
    state: State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    path: Path<UserPath>,
) -> Result<Json<Value>, AdminError> {
    set_active(state, caller, path, true).await
}

async fn set_active(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    Path(path): Path<UserPath>,
    active: bool,
) -> Result<Json<Value>, AdminError> {
    let namespace = organization_namespace(&state, &caller).await?;
    let store = state.store().with_audit(caller.audit_context());
    match store.set_user_active(&namespace, &path.id, active).await {
        Ok(()) => {}
        Err(StoreError::NotFound { .. }) => return Err(not_found(&path.id)),
        Err(error) => return Err(error.into()),
    }
    let user = store.get_user(&namespace, &path.id).await?.ok_or_else(|| not_found(&path.id))?;
    Ok(Json(user_json(&user)))
}

fn not_found(id: &str) -> AdminError {
    AdminError::NotFound { kind: "user", id: id.to_owned() }
}

/// What the admin API shows of a user (never the password hash).
fn user_json(user: &User) -> Value {
    json!({
        "id": user.id,
        "userName": user.user_name,
        "displayName": user.display_name,
        "givenName": user.given_name,
        "familyName": user.family_name,
        "externalId": user.external_id,
        "emails": user.emails.iter().map(|e| json!({ "value": e.value, "type": e.kind, "primary": e.primary })).collect::<Vec<_>>(),
        "active": user.active,
        "source": user.source.as_str(),
        "lastLoginAt": user.last_login_ms.map(rfc3339_ms),
        "createdAt": rfc3339_ms(user.created_ms),
        "updatedAt": rfc3339_ms(user.updated_ms),
        "version": user.version,
    })
}

/// What a list of users asks for.
struct PageQuery {
    limit: u32,
    /// The userName the last page ended at.
    after: Option<String>,
    /// Only userNames containing this (case-insensitive).
    search: Option<String>,
}

/// `limit`, `cursor` (the base64url userName the last page ended at) and
/// `search` (text the userName contains).
fn parse_page(query: &str) -> Result<PageQuery, AdminError> {
    let (mut limit, mut after, mut search) = (DEFAULT_PAGE, None, None);
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if seen.iter().any(|s| *s == name) {
            return Err(AdminError::invalid_parameter(&name, "given more than once"));
        }
        seen.push(name.to_string());
        match name.as_ref() {
            "limit" => {
                limit = value.parse::<u32>().ok().filter(|limit| (1..=MAX_PAGE).contains(limit)).ok_or_else(
                    || AdminError::invalid_parameter("limit", format!("must be 1 to {MAX_PAGE}")),
                )?;
            }
            "cursor" => {
                let decoded = URL_SAFE_NO_PAD
                    .decode(value.as_bytes())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .filter(|name| !name.is_empty())
                    .ok_or_else(|| {
                        AdminError::invalid_parameter("cursor", "not a cursor this API returned")
                    })?;
                after = Some(decoded);
            }
            "search" => {
                if value.is_empty() || value.chars().count() > MAX_SEARCH_CHARS {
                    return Err(AdminError::invalid_parameter(
                        "search",
                        format!("must be 1 to {MAX_SEARCH_CHARS} characters"),
                    ));
                }
                search = Some(value.into_owned());
            }
            other => return Err(AdminError::invalid_parameter(other, "unknown parameter")),
        }
    }
    Ok(PageQuery { limit, after, search })
}

/// A userName is at most 256 characters; so is what one may contain.
const MAX_SEARCH_CHARS: usize = 256;
