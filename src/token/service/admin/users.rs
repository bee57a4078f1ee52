//! Users over the admin API: list (keyset pages by userName) and get (with
//! the effective permissions per scope and the decision trail) with
//! `iam.view`; create, update, delete, deactivate and reactivate, reset
//! second factors and revoke sessions with `iam.manage`, each audited in the
//! transaction of the change, as the caller.
//!
//! A user an identity provider provisions (SCIM, or JIT at sign-in) keeps
//! its profile there: updating it here is refused (409 naming the provider),
//! as is deleting a SCIM user (the provider's next push would bring it back).

use aide::transform::TransformOperation;
use axum::Json;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::body::{JsonBody, Versioned, if_match, page_limit, present, query_pairs};
use super::openapi::{created, problems};
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
#[derive(Deserialize, JsonSchema)]
pub struct UserPath {
    id: String,
}

/// `GET {issuer}/api/v1/users?limit=&cursor=`: users by userName.
pub async fn list(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamView>,
    RawQuery(query): RawQuery,
) -> Result<Json<UserList>, AdminError> {
    let page = parse_page(query.as_deref().unwrap_or_default())?;
    let namespace = organization_namespace(&state, &caller).await?;
    let (limit, after, search) = (page.limit, page.after, page.search);
    let mut users =
        state.store().list_users_after(&namespace, after.as_deref(), search.as_deref(), limit + 1).await?;
    let more = users.len() > limit as usize;
    users.truncate(limit as usize);
    let next_cursor =
        if more { users.last().map(|last| URL_SAFE_NO_PAD.encode(&last.user_name)) } else { None };
    Ok(Json(UserList { users: users.iter().map(UserView::of).collect(), next_cursor }))
}

pub fn list_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("List users by userName, or search them")
        .input::<Query<UserPageParameters>>()
        .with(|op| problems(op, &[400]))
}

/// The query of a list of users: a page, and what the userNames contain.
#[derive(Deserialize, JsonSchema)]
pub struct UserPageParameters {
    /// How many at most (default 100).
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page (pass `search` again with it).
    pub cursor: Option<String>,
    /// Only users whose userName contains this text, in any case (1 to 256 characters).
    #[schemars(length(min = 1, max = 256))]
    pub search: Option<String>,
}

/// A page of users.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserList {
    pub users: Vec<UserView>,
    /// Present when there is a next page: its `cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET {issuer}/api/v1/users/{id}`: the user, and `access`: what it may
/// do in each scope and why (assignment → role → group), as the access core
/// decides it for tokens and the check API.
pub async fn get(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamView>,
    Path(path): Path<UserPath>,
) -> Result<Versioned<UserDetail>, AdminError> {
    let org = state.require_organization(&caller.authorized.organization).await?;
    let user = state.store().get_user(&org.namespace, &path.id).await?.ok_or_else(|| not_found(&path.id))?;
    let snapshot = state.access_index(&org).await?;
    let access = access_of(&state, &org.namespace, &snapshot.index, &user, state.now().as_second()).await?;
    Ok(Versioned::ok(user.version, UserDetail { user: UserView::of(&user), access }))
}

pub fn get_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("A user, with its effective permissions and their trail")
}

/// A user and what it may do.
#[derive(Serialize, JsonSchema)]
pub struct UserDetail {
    #[serde(flatten)]
    pub user: UserView,
    pub access: Access,
}

/// What a user may do in each scope where it holds anything, and why.
#[derive(Serialize, JsonSchema)]
pub struct Access {
    /// An inactive user holds nothing.
    pub active: bool,
    pub scopes: Vec<ScopeAccess>,
}

#[derive(Serialize, JsonSchema)]
pub struct ScopeAccess {
    pub scope: ScopeView,
    pub permissions: Vec<HeldPermission>,
}

#[derive(Serialize, JsonSchema)]
pub struct HeldPermission {
    pub permission: String,
    /// When the last grant of it expires (RFC 3339), if every one does.
    pub until: Option<String>,
    pub grants: Vec<GrantView>,
}

/// One assignment in force that grants the permission.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantView {
    pub assignment: AssignmentReference,
    pub role: String,
    /// The role that holds the grant, through included roles.
    pub role_path: Option<Vec<String>>,
    /// The grant that matched (a wildcard such as `journeys.*`, or the permission).
    pub grant: Option<String>,
    /// The group through which the user holds the assignment.
    pub group: Option<String>,
    pub scope: ScopeView,
    pub expires_at: Option<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct AssignmentReference {
    /// Always `RoleAssignment`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

/// The organization, or one of its workspaces.
#[derive(Serialize, JsonSchema)]
#[serde(tag = "kind")]
pub enum ScopeView {
    Organization,
    Workspace { workspace: String },
}

impl ScopeView {
    fn of(scope: &Scope) -> Self {
        match scope {
            Scope::Organization => Self::Organization,
            Scope::Workspace(name) => Self::Workspace { workspace: name.clone() },
        }
    }
}

/// The effective permissions of `user` in the organization and in every
/// workspace where one of its assignments applies, each with every
/// assignment in force that grants it (the access review's question, so the
/// same answer as `portcullis diff`).
async fn access_of(
    state: &TokenServiceState,
    namespace: &str,
    index: &AccessIndex,
    user: &User,
    now: i64,
) -> Result<Access, AdminError> {
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
                grants.push(GrantView {
                    assignment: AssignmentReference {
                        kind: "RoleAssignment",
                        namespace: namespace.to_owned(),
                        name: assignment_names[uid].clone(),
                    },
                    role: grant.role().to_owned(),
                    role_path: path.as_ref().map(|p| p.roles.clone()),
                    grant: path.map(|p| p.grant.to_owned()),
                    group: grant.group().map(str::to_owned),
                    scope: ScopeView::of(grant.scope()),
                    expires_at: grant.expires_at().map(|s| rfc3339_ms(s.saturating_mul(1000))),
                });
            }
            permissions.push(HeldPermission {
                permission: held.permission.to_owned(),
                until: held.until.map(|s| rfc3339_ms(s.saturating_mul(1000))),
                grants,
            });
        }
        out.push(ScopeAccess { scope: ScopeView::of(scope), permissions });
    }
    Ok(Access { active: user.active, scopes: out })
}

/// A user as `POST {issuer}/api/v1/users` takes it.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
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

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
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
    body: JsonBody<NewUserBody>,
) -> Result<Versioned<UserView>, AdminError> {
    let body = body.read()?;
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
    let location = format!("{}/api/v1/users/{}", state.issuer(&org.name), created.id);
    Ok(Versioned::created(created.version, UserView::of(&created), location))
}

pub fn create_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Create a local user").with(created).with(|op| problems(op, &[409, 503]))
}

/// What `PATCH {issuer}/api/v1/users/{id}` may change (JSON merge patch,
/// RFC 7396: absent leaves a field, `null` clears it).
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
    display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
    given_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
    family_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
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
    body: JsonBody<UserPatch>,
) -> Result<Versioned<UserView>, AdminError> {
    let expected = if_match(&headers)?;
    let patch = body.read()?;
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
    Ok(Versioned::ok(updated.version, UserView::of(&updated)))
}

pub fn update_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Change a local user's profile (JSON merge patch)")
        .with(if_match_header)
        .with(|op| problems(op, &[409, 412]))
}

/// The optional `If-Match` of a write.
pub(super) fn if_match_header(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.input::<super::body::IfMatch>()
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

pub fn delete_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Delete a user")
        .response_with::<204, (), _>(|r| r.description("Deleted."))
        .with(|op| problems(op, &[409]))
}

/// `DELETE {issuer}/api/v1/users/{id}/second-factors`: removes every TOTP
/// enrolment and WebAuthn credential; the user enrols again at its next
/// sign-in where the organization requires a second factor.
pub async fn reset_second_factors(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    Path(path): Path<UserPath>,
) -> Result<Json<SecondFactorsRemoved>, AdminError> {
    let namespace = organization_namespace(&state, &caller).await?;
    let store = state.store().with_audit(caller.audit_context());
    let removed = store.reset_second_factors(&namespace, &path.id).await?;
    Ok(Json(SecondFactorsRemoved {
        removed: RemovedFactors {
            enrolments: removed.enrolments,
            webauthn_credentials: removed.webauthn_credentials,
        },
    }))
}

pub fn reset_second_factors_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Remove every TOTP and WebAuthn factor of a user")
}

#[derive(Serialize, JsonSchema)]
pub struct SecondFactorsRemoved {
    pub removed: RemovedFactors,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemovedFactors {
    pub enrolments: u64,
    pub webauthn_credentials: u64,
}

/// `DELETE {issuer}/api/v1/users/{id}/sessions`: ends its browser sessions
/// and revokes its refresh-token families. Access tokens already issued
/// stay valid until they expire (minutes), as RFC 9068 tokens do.
pub async fn revoke_sessions(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    Path(path): Path<UserPath>,
) -> Result<Json<SessionsRevoked>, AdminError> {
    let namespace = organization_namespace(&state, &caller).await?;
    let store = state.store().with_audit(caller.audit_context());
    let revoked = store.revoke_user_access(&namespace, &path.id).await?;
    Ok(Json(SessionsRevoked {
        revoked: RevokedAccess {
            sessions: revoked.sessions,
            refresh_token_families: revoked.refresh_families,
        },
    }))
}

pub fn revoke_sessions_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("End a user's sessions and revoke its refresh tokens")
}

#[derive(Serialize, JsonSchema)]
pub struct SessionsRevoked {
    pub revoked: RevokedAccess,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevokedAccess {
    pub sessions: u64,
    pub refresh_token_families: u64,
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

/// `POST {issuer}/api/v1/users/{id}/deactivate`: the user can no longer sign
/// in or refresh tokens.
pub async fn deactivate(
    state: State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    path: Path<UserPath>,
) -> Result<Json<UserView>, AdminError> {
    set_active(state, caller, path, false).await
}

pub fn deactivate_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Deactivate a user: no more sign-in or refresh")
}

/// `POST {issuer}/api/v1/users/{id}/reactivate`.
pub async fn reactivate(
    state: State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    path: Path<UserPath>,
) -> Result<Json<UserView>, AdminError> {
    set_active(state, caller, path, true).await
}

pub fn reactivate_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Reactivate a user")
}

async fn set_active(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManage>,
    Path(path): Path<UserPath>,
    active: bool,
) -> Result<Json<UserView>, AdminError> {
    let namespace = organization_namespace(&state, &caller).await?;
    let store = state.store().with_audit(caller.audit_context());
    match store.set_user_active(&namespace, &path.id, active).await {
        Ok(()) => {}
        Err(StoreError::NotFound { .. }) => return Err(not_found(&path.id)),
        Err(error) => return Err(error.into()),
    }
    let user = store.get_user(&namespace, &path.id).await?.ok_or_else(|| not_found(&path.id))?;
    Ok(Json(UserView::of(&user)))
}

fn not_found(id: &str) -> AdminError {
    AdminError::NotFound { kind: "user", id: id.to_owned() }
}

/// What the admin API shows of a user (never the password hash).
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub user_name: String,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub external_id: Option<String>,
    pub emails: Vec<EmailView>,
    pub active: bool,
    /// `local`, `scim` or `jit`: who provisions it.
    #[schemars(extend("enum" = ["local", "scim", "jit"]))]
    pub source: &'static str,
    pub last_login_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The version (also the `ETag`).
    pub version: i64,
}

#[derive(Serialize, JsonSchema)]
pub struct EmailView {
    pub value: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub primary: bool,
}

impl UserView {
    fn of(user: &User) -> Self {
        Self {
            id: user.id.clone(),
            user_name: user.user_name.clone(),
            display_name: user.display_name.clone(),
            given_name: user.given_name.clone(),
            family_name: user.family_name.clone(),
            external_id: user.external_id.clone(),
            emails: user
                .emails
                .iter()
                .map(|e| EmailView { value: e.value.clone(), kind: e.kind.clone(), primary: e.primary })
                .collect(),
            active: user.active,
            source: user.source.as_str(),
            last_login_at: user.last_login_ms.map(rfc3339_ms),
            created_at: rfc3339_ms(user.created_ms),
            updated_at: rfc3339_ms(user.updated_ms),
            version: user.version,
        }
    }
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
    for (name, value) in query_pairs(query)? {
        match name.as_ref() {
            "limit" => {
                limit = page_limit(&value, MAX_PAGE)?;
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
