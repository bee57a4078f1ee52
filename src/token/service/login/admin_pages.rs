//! Pages for administrators, served by the token service under
//! `{issuer}/admin/…`, behind the sign-in session cookie and a catalog
//! permission: [`AdminPage`] is the extractor every such page uses,
//! [`AdminPagePost`] its form posts (CSRF token bound to the session).
//!
//! ```text
//!  GET {issuer}/admin/…  no session ─► 303 {issuer}/authorize?client_id=portcullis:admin-pages
//!                                       &redirect_uri={issuer}/admin/signed-in&state={the page's path}
//!                        session, permission missing ─► 403 page naming it
//!                        session, permission held ─► the page
//!  sign-in pages (password, second factor, SSO) ─► session cookie ─► GET {issuer}/admin/signed-in?state=…
//!                                                                   ─► 303 back to the page
//! ```
//!
//! The built-in client `portcullis:admin-pages` is public, so its codes need
//! a PKCE verifier, which the pages never keep: the code the sign-in pages
//! hand back is never redeemed, only the session they set is used.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, RawPathParams, RawQuery, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;

use super::csrf;
use super::error::LoginError;
use super::flow::{current_session, see_other};
use super::issuer_path;
use super::pages::Page;
use crate::audit::{Actor, AuditContext, Source};
use crate::authz::{Decision, Principal, Scope};
use crate::store::{User, UserStore as _};
use crate::token::service::require_permission::Permission;
use crate::token::service::state::{ADMIN_PAGES_CLIENT, OrganizationView, TokenServiceState};

/// No catalog permission: [`AdminPage<SignedIn>`] admits every signed-in,
/// active user of the organization, for a page that decides itself what
/// each may do there (the approval page of an access request). Anywhere
/// else (`RequirePermission`) the empty name is a permission nobody holds.
pub(super) struct SignedIn;

impl Permission for SignedIn {
    const NAME: &'static str = "";
}

/// A signed-in administrator holding `P` in the organization, at one of its admin pages.
pub(super) struct AdminPage<P: Permission> {
    pub org: Arc<OrganizationView>,
    pub user: User,
    /// The session cookie: the pages' CSRF tokens are bound to it.
    session_secret: String,
    pub source: Source,
    permission: PhantomData<P>,
}

impl<P: Permission> AdminPage<P> {
    /// The hidden field every form of the page carries.
    pub fn csrf_field(&self, state: &TokenServiceState) -> (&'static str, String) {
        ("csrf", csrf::admin_token(&state.login().csrf_key, &self.org.name, &self.session_secret))
    }

    /// Who acts, for the audit trail.
    pub fn audit_context(&self) -> AuditContext {
        AuditContext::new(Actor::user(&self.user.id, &self.user.user_name, None), self.source.clone())
    }

    pub fn principal(&self) -> Principal {
        Principal::user(self.user.user_name.clone())
    }
}

/// The `{org}` path parameter's organization.
async fn path_organization(
    parts: &mut Parts,
    state: &TokenServiceState,
) -> Result<Arc<OrganizationView>, LoginError> {
    let params = RawPathParams::from_request_parts(parts, state).await.map_err(|_| {
        LoginError::from(crate::token::service::OAuthError::internal("an admin page without {org}"))
    })?;
    let name = params.iter().find(|(name, _)| *name == "org").map(|(_, value)| value.to_owned());
    match name {
        Some(name) => match state.organization(&name).await? {
            Some(org) => Ok(org),
            None => {
                Err(Page::notice(StatusCode::NOT_FOUND, "Not found", "There is no organization here.").into())
            }
        },
        None => Err(crate::token::service::OAuthError::internal("an admin page without {org}").into()),
    }
}

/// A 303 to the sign-in pages, coming back to `return_to` (a path of this
/// organization's admin pages).
fn sign_in_first(state: &TokenServiceState, org: &OrganizationView, return_to: &str) -> LoginError {
    // A challenge nobody holds the verifier of: the code that comes back is
    // useless, the session cookie set on the way is what counts.
    let challenge = super::csrf::random_token();
    let encode = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let location = format!(
        "{}/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid&state={}&\
         code_challenge={challenge}&code_challenge_method=S256",
        state.issuer(&org.name),
        encode(ADMIN_PAGES_CLIENT),
        encode(&state.admin_pages_redirect_uri(&org.name)),
        encode(return_to),
    );
    LoginError::ToClient { location }
}

/// Whether `path` is one of the organization's admin pages (the only place
/// `signed-in` sends a browser back to: no open redirect).
fn is_admin_page(state: &TokenServiceState, org: &OrganizationView, path: &str) -> bool {
    is_under(&format!("{}/admin/", issuer_path(state, &org.name)), path)
}

/// `path` is a plain path below `prefix`: no scheme, host, `..` or odd bytes.
fn is_under(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && path.len() > prefix.len()
        && !path.contains("//")
        && !path.contains('\\')
        && !path.contains("..")
        && path.bytes().all(|b| b.is_ascii_graphic())
}

impl<P: Permission> FromRequestParts<TokenServiceState> for AdminPage<P> {
    type Rejection = LoginError;

    async fn from_request_parts(parts: &mut Parts, state: &TokenServiceState) -> Result<Self, LoginError> {
        let org = path_organization(parts, state).await?;
        let here = parts.uri.path().to_owned();
        let session = current_session(state, &org, &parts.headers).await?;
        let Some((session, session_secret)) = session else { return Err(sign_in_first(state, &org, &here)) };
        // The session's user, still active; a deactivated one signs in again (and is refused there).
        let user = match state.store().get_user(&org.namespace, &session.user_id).await? {
            Some(user) if user.active => user,
            _ => return Err(sign_in_first(state, &org, &here)),
        };
        let snapshot = state.access_index(&org).await?;
        let principal = Principal::user(user.user_name.clone());
        let now = state.now().as_second();
        if P::NAME != SignedIn::NAME
            && !matches!(
                snapshot.index.check(&principal, P::NAME, &Scope::Organization, now),
                Decision::Allowed(_)
            )
        {
            let text = format!(
                "You are signed in as {}, who does not hold the permission {} that this page needs.",
                user.user_name,
                P::NAME
            );
            return Err(Page::notice(StatusCode::FORBIDDEN, "Not allowed", &text).into());
        }
        Ok(AdminPage {
            org,
            user,
            session_secret,
            source: Source::of_request(parts),
            permission: PhantomData,
        })
    }
}

/// A form post of an admin page: the page's extractor, and its CSRF token.
/// `fields` keeps repeated names (checkbox lists).
pub(super) struct AdminPagePost<P: Permission> {
    pub page: AdminPage<P>,
    pub fields: Vec<(String, String)>,
}

impl<P: Permission> AdminPagePost<P> {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.fields.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
    }
}

/// The most a form of the admin pages may send.
const MAX_FORM_BYTES: usize = 16 * 1024;

impl<P: Permission> FromRequest<TokenServiceState> for AdminPagePost<P> {
    type Rejection = LoginError;

    async fn from_request(request: Request, state: &TokenServiceState) -> Result<Self, LoginError> {
        let (mut parts, body) = request.into_parts();
        let page = AdminPage::<P>::from_request_parts(&mut parts, state).await?;
        let body = axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| {
            LoginError::from(Page::notice(StatusCode::PAYLOAD_TOO_LARGE, "Refused", "The form is too large."))
        })?;
        let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
        let presented = fields.iter().find(|(n, _)| n == "csrf").map(|(_, v)| v.as_str()).unwrap_or_default();
        if !csrf::admin_token_matches(
            &state.login().csrf_key,
            &page.org.name,
            &page.session_secret,
            presented,
        ) {
            let text = "This form expired or was not sent from this site. Open the page again and retry.";
            return Err(Page::notice(StatusCode::FORBIDDEN, "Refused", text).into());
        }
        Ok(AdminPagePost { page, fields })
    }
}

/// `GET {issuer}/admin/signed-in?code=…&state={page}`: the sign-in pages'
/// way back; the browser now has a session, so it goes on to the page.
pub(super) async fn signed_in(
    axum::extract::State(state): axum::extract::State<TokenServiceState>,
    super::extract::PathOrganization(org): super::extract::PathOrganization,
    RawQuery(query): RawQuery,
) -> Result<Response, LoginError> {
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    if let Some(error) = get("error") {
        let text =
            format!("Signing in did not finish ({error}): {}", get("error_description").unwrap_or_default());
        return Err(Page::notice(StatusCode::BAD_REQUEST, "Not signed in", &text).into());
    }
    let fallback = format!("{}/admin/invitations", issuer_path(&state, &org.name));
    let target = get("state").filter(|path| is_admin_page(&state, &org, path)).unwrap_or(fallback);
    Ok(see_other(&target, &[]))
}

#[cfg(test)]
mod tests {
    use super::is_under;

    #[test]
    fn only_admin_pages_of_the_organization_are_returned_to() {
        let prefix = "/o/acme/admin/";
        assert!(is_under(prefix, "/o/acme/admin/invitations"));
        assert!(!is_under(prefix, "/o/acme/admin/"));
        assert!(!is_under(prefix, "https://evil.example/o/acme/admin/x"));
        assert!(!is_under(prefix, "//evil.example/o/acme/admin/x"));
        assert!(!is_under(prefix, "/o/acme/admin//evil.example"));
        assert!(!is_under(prefix, "/o/acme/admin/../../evil"));
        assert!(!is_under(prefix, "/o/globex/admin/invitations"));
    }
}
