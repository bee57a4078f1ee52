//! Users over the admin API: list (keyset pages by userName) and get with
//! `iam.view`; deactivate and reactivate with `iam.manage`, audited in the
//! transaction of the change, as the caller.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminCaller, AdminError, IamManage, organization_namespace};
use crate::audit::event::rfc3339_ms;
use crate::store::{StoreError, User, UserStore as _};
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
    let (limit, after) = parse_page(query.as_deref().unwrap_or_default())?;
    let namespace = organization_namespace(&state, &caller).await?;
    let mut users = state.store().list_users_after(&namespace, after.as_deref(), limit + 1).await?;
    let more = users.len() > limit as usize;
    users.truncate(limit as usize);
    let mut body = json!({ "users": users.iter().map(user_json).collect::<Vec<_>>() });
    if more && let Some(last) = users.last() {
        body["nextCursor"] = json!(URL_SAFE_NO_PAD.encode(&last.user_name));
    }
    Ok(Json(body))
}

/// `GET {issuer}/api/v1/users/{id}`.
pub async fn get(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamView>,
    Path(path): Path<UserPath>,
) -> Result<Json<Value>, AdminError> {
    let namespace = organization_namespace(&state, &caller).await?;
    let user = state.store().get_user(&namespace, &path.id).await?.ok_or_else(|| not_found(&path.id))?;
    Ok(Json(user_json(&user)))
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
    })
}

/// `limit` and `cursor` (the base64url userName the last page ended at).
fn parse_page(query: &str) -> Result<(u32, Option<String>), AdminError> {
    let (mut limit, mut after) = (DEFAULT_PAGE, None);
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
            other => return Err(AdminError::invalid_parameter(other, "unknown parameter")),
        }
    }
    Ok((limit, after))
}
