//! The sign-in and account pages: askama templates (`templates/`, found
//! through `askama.toml`), every value HTML-escaped by the engine
//! ([`crate::html`]), each page extending the one layout `base.html`. Plain HTML forms; the WebAuthn pages
//! add one fixed script (allowed by its hash in the CSP, nothing else runs)
//! that hands the ceremony's options to `navigator.credentials` and posts the
//! answer. Pages are never cached or framed.
//!
//! ```text
//!  base.html ◄─ extends ─ notice, sign_in, totp, ceremony (+ ceremony.js), account, totp_enrolment, logout_confirm,
//!                        invitation, admin_invitations, admin_posture
//!  forms.html: macros hidden(fields), message(text), form(form, button) { inputs }, password_again()
//!  a template struct ─► Page::new(status, &page) ─► Page (+ Set-Cookie, Retry-After) ─► response with the headers below
//! ```

use std::time::Duration;

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error_chain::ErrorChain;

/// A rendered page and what goes with it: the status, cookies to set, a
/// `Retry-After`. Answered with the headers every sign-in page carries.
#[derive(Debug)]
pub(super) struct Page {
    status: StatusCode,
    html: String,
    /// The WebAuthn ceremony script may run.
    runs_ceremony: bool,
    set_cookies: Vec<String>,
    retry_after: Option<Duration>,
}

impl Page {
    /// `template` rendered; a template that fails to render is our fault,
    /// logged, and answered with the generic error page.
    pub fn new(status: StatusCode, template: &impl Template) -> Self {
        Self::rendered(status, template, false)
    }

    /// A WebAuthn step: its script, and no other, may run.
    pub fn ceremony(status: StatusCode, page: &CeremonyPage<'_>) -> Self {
        Self::rendered(status, page, true)
    }

    fn rendered(status: StatusCode, template: &impl Template, runs_ceremony: bool) -> Self {
        match template.render() {
            Ok(html) => Self { status, html, runs_ceremony, set_cookies: Vec::new(), retry_after: None },
            Err(error) => {
                tracing::error!(error = %ErrorChain(&error), "a sign-in page did not render");
                Self::server_error()
            }
        }
    }

    /// A page with a heading and one paragraph: errors, "signed out", "enrolment required".
    pub fn notice(status: StatusCode, title: &str, text: &str) -> Self {
        Self::new(status, &Notice { title, text })
    }

    /// What the user sees when something failed on our side (logged where it happened).
    pub fn server_error() -> Self {
        let notice = Notice {
            title: "Something went wrong",
            text: "Signing in failed on our side. Please try again later.",
        };
        // The fallback of the fallback: a notice that does not render.
        let html = notice.render().unwrap_or_else(|_| "Something went wrong.".to_owned());
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            html,
            runs_ceremony: false,
            set_cookies: Vec::new(),
            retry_after: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Sets `cookie` (a `Set-Cookie` value) with the page, if there is one.
    pub fn with_cookie(mut self, cookie: Option<String>) -> Self {
        self.set_cookies.extend(cookie);
        self
    }

    pub fn with_cookies(mut self, cookies: Vec<String>) -> Self {
        self.set_cookies.extend(cookies);
        self
    }

    /// RFC 9110 §10.2.3: when to try again (at least a second).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
}

const CSP_NO_SCRIPT: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

/// The CSP of a WebAuthn page: the ceremony script is allowed by its hash.
fn csp_with_ceremony() -> &'static str {
    static CSP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        use base64::Engine as _;
        let digest = ring::digest::digest(&ring::digest::SHA256, CEREMONY_SCRIPT.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        format!("{CSP_NO_SCRIPT}; script-src 'sha256-{hash}'")
    });
    &CSP
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.html).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        let csp = if self.runs_ceremony { csp_with_ceremony() } else { CSP_NO_SCRIPT };
        if let Ok(value) = HeaderValue::from_str(csp) {
            headers.insert(header::CONTENT_SECURITY_POLICY, value);
        }
        for cookie in &self.set_cookies {
            if let Ok(value) = HeaderValue::from_str(cookie) {
                headers.append(header::SET_COOKIE, value);
            }
        }
        if let Some(wait) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
        }
        response
    }
}

/// A page with a heading and one paragraph.
#[derive(Template)]
#[template(path = "notice.html")]
struct Notice<'a> {
    title: &'a str,
    text: &'a str,
}

/// Hidden form fields: the authorization request, CSRF token, ticket, ceremony.
pub(super) type HiddenFields = Vec<(&'static str, String)>;

/// What every sign-in form shows and carries.
pub(super) struct FormContext<'a> {
    pub organization_display_name: &'a str,
    pub client_display_name: &'a str,
    /// Where the form posts.
    pub action: &'a str,
    /// The authorization request and CSRF token (and ticket) as hidden fields.
    pub hidden: HiddenFields,
    /// Why the form is shown again.
    pub message: Option<&'a str>,
}

/// A form of hidden fields, the inputs its template adds, and a button.
pub(super) struct PlainForm<'a> {
    pub action: &'a str,
    pub hidden: HiddenFields,
}

/// The sign-in form; `passkey`: the form that starts a passkey sign-in, when the organization allows it.
#[derive(Template)]
#[template(path = "sign_in.html")]
pub(super) struct SignInPage<'a> {
    pub form: FormContext<'a>,
    pub user_name: &'a str,
    pub passkey: Option<PlainForm<'a>>,
    /// Some email domains are routed to an identity provider: the password
    /// may be left empty (home-realm discovery).
    pub single_sign_on: bool,
}

/// The TOTP step after the password.
#[derive(Template)]
#[template(path = "totp.html")]
pub(super) struct TotpPage<'a> {
    pub form: FormContext<'a>,
}

/// "Sign out of …?": RP-initiated logout without an ID token hint.
#[derive(Template)]
#[template(path = "logout_confirm.html")]
pub(super) struct LogoutConfirmPage<'a> {
    pub organization_display_name: &'a str,
    pub form: PlainForm<'a>,
}

/// Runs a WebAuthn ceremony: reads the options from the `webauthn-options`
/// data block, asks the authenticator (`create` or `get`), puts the answer,
/// base64url-encoded as webauthn-rs reads it, into the form and posts it.
/// Fixed text: its hash is the only script the CSP allows.
pub(super) const CEREMONY_SCRIPT: &str = include_str!("templates/ceremony.js");

/// Whether the ceremony asks for a new credential or an assertion.
#[derive(Clone, Copy, Debug, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum CeremonyMode {
    Create,
    Get,
}

/// A WebAuthn step: a text, a button that runs the ceremony, and the form
/// (hidden fields + `credential`) it posts. `options` is webauthn-rs'
/// challenge as JSON; `totp_alternative` is a TOTP form as another way on.
#[derive(Template)]
#[template(path = "ceremony.html")]
pub(super) struct CeremonyPage<'a> {
    pub title: &'a str,
    pub text: &'a str,
    pub button: &'a str,
    pub mode: CeremonyMode,
    pub options: &'a serde_json::Value,
    pub form: PlainForm<'a>,
    pub message: Option<&'a str>,
    pub totp_alternative: Option<PlainForm<'a>>,
}

impl CeremonyPage<'_> {
    /// What the script reads from the data block (JSON, escaped for it by askama's `json` filter).
    fn data(&self) -> serde_json::Value {
        serde_json::json!({ "mode": self.mode, "options": self.options })
    }

    fn script(&self) -> &'static str {
        CEREMONY_SCRIPT
    }
}

/// One enrolled factor, as the account page lists it.
pub(super) struct FactorRow {
    pub kind: &'static str,
    pub name: String,
    pub created: String,
    pub last_used: Option<String>,
}

/// The WebAuthn credentials a user may enrol.
#[derive(Clone, Copy, Debug)]
pub(super) struct WebAuthnKinds {
    pub passkey: bool,
    pub security_key: bool,
}

/// The account page: the user's second factors, and forms to add one.
#[derive(Template)]
#[template(path = "account.html")]
pub(super) struct AccountPage<'a> {
    pub organization_display_name: &'a str,
    pub user_name: &'a str,
    pub factors: Vec<FactorRow>,
    pub message: Option<&'a str>,
    /// Adding a WebAuthn credential: the form, and the kinds that may be chosen.
    pub add_webauthn: Option<(PlainForm<'a>, WebAuthnKinds)>,
    pub add_totp: Option<PlainForm<'a>>,
}

/// TOTP enrolment, second step: the secret to scan or type, and the first code.
#[derive(Template)]
#[template(path = "totp_enrolment.html")]
pub(super) struct TotpEnrolmentPage<'a> {
    pub provisioning_uri: &'a str,
    pub secret_text: &'a str,
    pub form: PlainForm<'a>,
    pub message: Option<&'a str>,
}

/// Accepting an invitation: who invited whom to what, and the new password.
#[derive(Template)]
#[template(path = "invitation.html")]
pub(super) struct InvitationPage<'a> {
    pub organization_display_name: &'a str,
    pub email: &'a str,
    pub invited_by: &'a str,
    pub workspace: Option<&'a str>,
    pub roles: &'a [String],
    /// The password form, when passwords may be used: its minimum length.
    pub min_length: Option<usize>,
    pub form: PlainForm<'a>,
    /// "Accept with …": an identity provider is routed for the address.
    pub single_sign_on: Option<SsoChoice<'a>>,
    pub message: Option<&'a str>,
}

/// A button that sends the browser to an identity provider.
pub(super) struct SsoChoice<'a> {
    /// Its display name.
    pub provider: String,
    pub form: PlainForm<'a>,
}

/// One invitation as the admin page lists it.
pub(super) struct InvitationRow {
    pub id: String,
    pub email: String,
    pub place: String,
    pub roles: String,
    pub state: &'static str,
    pub expires: String,
    pub mail: String,
}

/// `{issuer}/admin/invitations`: the invite form and the open invitations,
/// each with resend and revoke. Every form posts to `action` with the
/// admin CSRF token in `hidden`.
#[derive(Template)]
#[template(path = "admin_invitations.html")]
pub(super) struct AdminInvitationsPage<'a> {
    pub organization_display_name: &'a str,
    pub user_name: &'a str,
    pub action: &'a str,
    pub hidden: HiddenFields,
    pub workspaces: Vec<String>,
    pub roles: Vec<String>,
    pub invitations: Vec<InvitationRow>,
    pub message: Option<&'a str>,
    /// Whether `message` says what an action did (else why it was refused).
    pub succeeded: bool,
}

/// `{issuer}/admin/access-requests/{id}`: one access request, and the
/// approve / deny form for an approver who may decide it.
#[derive(Template)]
#[template(path = "admin_access_request.html")]
pub(super) struct AdminAccessRequestPage<'a> {
    pub organization_display_name: &'a str,
    pub user_name: &'a str,
    pub action: &'a str,
    pub hidden: HiddenFields,
    pub requester: &'a str,
    pub role: &'a str,
    pub place: String,
    pub duration: String,
    pub justification: &'a str,
    pub phase: &'static str,
    pub approvals: Vec<String>,
    pub approvals_needed: i64,
    pub expires: Option<String>,
    pub can_decide: bool,
    pub why_not: Option<&'static str>,
    pub message: Option<&'a str>,
    /// Whether `message` says what a decision did (else why it was refused).
    pub succeeded: bool,
}

/// A donut of the posture page: a share out of 100 (`filled` + `rest` = 100).
pub(super) struct Donut {
    pub id: &'static str,
    pub title: &'static str,
    pub filled: u32,
    pub rest: u32,
    /// In the middle (`66%`, or `–` of nobody).
    pub center: String,
    /// The same in words, for the page and screen readers.
    pub text: String,
}

/// A bar chart of the posture page, bars 5 units high, 2 apart.
pub(super) struct BarChart {
    pub id: &'static str,
    pub title: &'static str,
    pub height: u32,
    pub summary: String,
    pub bars: Vec<Bar>,
}

pub(super) struct Bar {
    pub id: &'static str,
    pub label: &'static str,
    pub value: u64,
    /// Out of 45 (the chart is 100 wide, labels take the first 45).
    pub width: u32,
    pub y: u32,
    pub colour: &'static str,
}

/// `{issuer}/admin/posture`: the compliance posture as charts (inline SVG)
/// with the figures beside them as text.
#[derive(Template)]
#[template(path = "admin_posture.html")]
pub(super) struct AdminPosturePage<'a> {
    pub organization_display_name: &'a str,
    pub user_name: &'a str,
    pub computed_at: &'a str,
    pub donuts: Vec<Donut>,
    pub charts: Vec<BarChart>,
    pub scim: &'a [crate::api::ScimSyncPosture],
    pub keys: &'a [crate::api::KeyRotationPosture],
    pub pending_access_requests: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_rendered_is_escaped() {
        let evil = "\"><script>alert('x')</script>&";
        let page = SignInPage {
            form: FormContext {
                organization_display_name: evil,
                client_display_name: evil,
                action: evil,
                hidden: vec![("state", evil.to_owned())],
                message: Some(evil),
            },
            user_name: evil,
            passkey: None,
            single_sign_on: true,
        }
        .render()
        .unwrap();
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&quot;&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;"), "{page}");
        let notice = Notice { title: evil, text: evil }.render().unwrap();
        assert!(!notice.contains("<script>"), "{notice}");
    }

    #[test]
    fn the_ceremony_data_block_cannot_end_its_script_element() {
        let options = serde_json::json!({ "rp": { "name": "</script><script>alert(1)</script>" } });
        let page = CeremonyPage {
            title: "t",
            text: "t",
            button: "b",
            mode: CeremonyMode::Get,
            options: &options,
            form: PlainForm { action: "/o/acme/login/webauthn", hidden: Vec::new() },
            message: None,
            totp_alternative: None,
        }
        .render()
        .unwrap();
        assert_eq!(page.matches("</script>").count(), 2, "the data block's and the script's own: {page}");
        assert!(page.contains(r#"{"mode":"get","options":{"rp":{"name":"\u003c/script"#), "{page}");
    }
}
