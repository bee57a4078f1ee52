//! The sign-in and account pages: plain HTML forms; the WebAuthn pages add one
//! fixed script (allowed by its hash in the CSP, nothing else runs) that hands
//! the ceremony's options to `navigator.credentials` and posts the answer.
//! Every value that reaches a page goes through [`escape`]; pages are never
//! cached or framed.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// HTML-escapes text for element content and double-quoted attributes.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A page as a response, with the headers every sign-in page carries.
pub(super) fn respond(status: StatusCode, html: String, set_cookies: &[String]) -> Response {
    respond_with_csp(status, html, set_cookies, CSP_NO_SCRIPT)
}

/// A WebAuthn page: the ceremony script, and no other, may run.
pub(super) fn respond_with_ceremony(status: StatusCode, html: String, set_cookies: &[String]) -> Response {
    static CSP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        use base64::Engine as _;
        let digest = ring::digest::digest(&ring::digest::SHA256, CEREMONY_SCRIPT.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        format!("{CSP_NO_SCRIPT}; script-src 'sha256-{hash}'")
    });
    respond_with_csp(status, html, set_cookies, &CSP)
}

const CSP_NO_SCRIPT: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

fn respond_with_csp(status: StatusCode, html: String, set_cookies: &[String], csp: &str) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(value) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    for cookie in set_cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}}\
         label,input,button{{display:block;width:100%;box-sizing:border-box;margin:.25rem 0}}\
         input,button{{padding:.5rem}}.message{{color:#a00}}</style></head>\
         <body>{body}</body></html>\n",
        title = escape(title),
    )
}

fn hidden(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(name, value)| {
            format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(name), escape(value))
        })
        .collect()
}

fn message_html(message: Option<&str>) -> String {
    message.map(|m| format!("<p class=\"message\" role=\"alert\">{}</p>", escape(m))).unwrap_or_default()
}

/// What every sign-in form shows and carries.
pub(super) struct FormContext<'a> {
    pub organization_display_name: &'a str,
    pub client_display_name: &'a str,
    /// Where the form posts.
    pub action: &'a str,
    /// The authorization request and CSRF token (and ticket) as hidden fields.
    pub hidden: Vec<(&'static str, String)>,
    /// Why the form is shown again.
    pub message: Option<&'a str>,
}

/// The sign-in form; `passkey`: the form that starts a passkey sign-in, when the organization allows it.
pub(super) fn sign_in(context: &FormContext<'_>, user_name: &str, passkey: Option<&PlainForm<'_>>) -> String {
    let body = format!(
        "<h1>Sign in to {org}</h1><p>to continue to {client}</p>{message}\
         <form method=\"post\" action=\"{action}\">{hidden}\
         <label for=\"username\">User name or email</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required value=\"{user}\">\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>{passkey}",
        org = escape(context.organization_display_name),
        client = escape(context.client_display_name),
        message = message_html(context.message),
        action = escape(context.action),
        hidden = hidden(&context.hidden),
        user = escape(user_name),
        passkey = passkey
            .map(|form| format!("<p>or</p>{}", plain_form(form, "", "Sign in with a passkey")))
            .unwrap_or_default(),
    );
    layout(&format!("Sign in to {}", context.organization_display_name), &body)
}

pub(super) fn totp(context: &FormContext<'_>) -> String {
    let body = format!(
        "<h1>Two-step verification</h1><p>Enter the 6-digit code from your authenticator app \
         to sign in to {org}.</p>{message}\
         <form method=\"post\" action=\"{action}\">{hidden}\
         <label for=\"code\">Code</label>\
         <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" \
         pattern=\"[0-9]{{6}}\" maxlength=\"6\" required autofocus>\
         <button type=\"submit\">Verify</button></form>",
        org = escape(context.organization_display_name),
        message = message_html(context.message),
        action = escape(context.action),
        hidden = hidden(&context.hidden),
    );
    layout("Two-step verification", &body)
}

pub(super) fn logout_confirm(
    organization_display_name: &str,
    action: &str,
    hidden_fields: &[(&str, String)],
) -> String {
    let body = format!(
        "<h1>Sign out of {org}?</h1>\
         <form method=\"post\" action=\"{action}\">{hidden}\
         <button type=\"submit\">Sign out</button></form>",
        org = escape(organization_display_name),
        action = escape(action),
        hidden = hidden(hidden_fields),
    );
    layout("Sign out", &body)
}

/// A page with a heading and one paragraph: errors, "signed out", "enrolment required".
pub(super) fn notice(title: &str, text: &str) -> String {
    layout(title, &format!("<h1>{}</h1><p>{}</p>", escape(title), escape(text)))
}

/// A form of hidden fields and a button (plus `inputs`, already rendered).
pub(super) struct PlainForm<'a> {
    pub action: &'a str,
    pub hidden: Vec<(&'static str, String)>,
}

fn plain_form(form: &PlainForm<'_>, inputs: &str, button: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{action}\">{hidden}{inputs}<button type=\"submit\">{button}</button></form>",
        action = escape(form.action),
        hidden = hidden(&form.hidden),
        button = escape(button),
    )
}

/// Runs a WebAuthn ceremony: reads the options from the `webauthn-options`
/// data block, asks the authenticator (`create` or `get`), puts the answer,
/// base64url-encoded as webauthn-rs reads it, into the form and posts it.
/// Fixed text: its hash is the only script the CSP allows.
pub(super) const CEREMONY_SCRIPT: &str = r#"
(function () {
  function dec(s) {
    s = s.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) s += '=';
    return Uint8Array.from(atob(s), function (c) { return c.charCodeAt(0); });
  }
  function enc(b) {
    if (!b) return null;
    var s = '';
    new Uint8Array(b).forEach(function (x) { s += String.fromCharCode(x); });
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }
  var form = document.getElementById('webauthn-form');
  var problem = document.getElementById('webauthn-problem');
  document.getElementById('webauthn-start').addEventListener('click', async function () {
    var data = JSON.parse(document.getElementById('webauthn-options').textContent);
    var pk = data.options.publicKey;
    pk.challenge = dec(pk.challenge);
    try {
      var cred, out;
      if (data.mode === 'create') {
        pk.user.id = dec(pk.user.id);
        (pk.excludeCredentials || []).forEach(function (c) { c.id = dec(c.id); });
        cred = await navigator.credentials.create({ publicKey: pk });
        out = { response: {
          attestationObject: enc(cred.response.attestationObject),
          clientDataJSON: enc(cred.response.clientDataJSON),
          transports: cred.response.getTransports ? cred.response.getTransports() : null } };
      } else {
        (pk.allowCredentials || []).forEach(function (c) { c.id = dec(c.id); });
        cred = await navigator.credentials.get({ publicKey: pk });
        out = { response: {
          authenticatorData: enc(cred.response.authenticatorData),
          clientDataJSON: enc(cred.response.clientDataJSON),
          signature: enc(cred.response.signature),
          userHandle: enc(cred.response.userHandle) } };
      }
      out.id = cred.id;
      out.rawId = enc(cred.rawId);
      out.type = cred.type;
      out.extensions = cred.getClientExtensionResults();
      document.getElementById('credential').value = JSON.stringify(out);
      form.submit();
    } catch (e) {
      problem.textContent = 'Your security key or passkey did not answer (' + e.name + '). Try again.';
    }
  });
})();
"#;

/// Whether the ceremony asks for a new credential or an assertion.
#[derive(Clone, Copy, Debug)]
pub(super) enum CeremonyMode {
    Create,
    Get,
}

/// A WebAuthn step: a text, a button that runs the ceremony, and the form
/// (hidden fields + `credential`) it posts. `options` is webauthn-rs'
/// challenge as JSON; `alternative` is another way on (e.g. a TOTP form).
pub(super) struct CeremonyPage<'a> {
    pub title: &'a str,
    pub text: &'a str,
    pub button: &'a str,
    pub mode: CeremonyMode,
    pub options: &'a serde_json::Value,
    pub form: PlainForm<'a>,
    pub message: Option<&'a str>,
    pub alternative: Option<String>,
}

pub(super) fn ceremony(page: &CeremonyPage<'_>) -> String {
    let mode = match page.mode {
        CeremonyMode::Create => "create",
        CeremonyMode::Get => "get",
    };
    // A data block is never run; `<` is escaped so no `</script>` can end it early.
    let data =
        serde_json::json!({ "mode": mode, "options": page.options }).to_string().replace('<', "\\u003c");
    let body = format!(
        "<h1>{title}</h1><p>{text}</p>{message}<p class=\"message\" id=\"webauthn-problem\" role=\"alert\"></p>\
         <script type=\"application/json\" id=\"webauthn-options\">{data}</script>\
         <form method=\"post\" action=\"{action}\" id=\"webauthn-form\">{hidden}\
         <input type=\"hidden\" id=\"credential\" name=\"credential\">\
         <button type=\"button\" id=\"webauthn-start\">{button}</button></form>{alternative}\
         <script>{CEREMONY_SCRIPT}</script>",
        title = escape(page.title),
        text = escape(page.text),
        message = message_html(page.message),
        action = escape(page.form.action),
        hidden = hidden(&page.form.hidden),
        button = escape(page.button),
        alternative = page.alternative.as_deref().unwrap_or_default(),
    );
    layout(page.title, &body)
}

/// The TOTP form as a second way on, below a WebAuthn step.
pub(super) fn totp_alternative(form: &PlainForm<'_>) -> String {
    let inputs = "<label for=\"code\">Or enter the 6-digit code from your authenticator app</label>\
         <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" \
         pattern=\"[0-9]{6}\" maxlength=\"6\" required>";
    plain_form(form, inputs, "Verify the code")
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
pub(super) struct AccountPage<'a> {
    pub organization_display_name: &'a str,
    pub user_name: &'a str,
    pub factors: Vec<FactorRow>,
    pub message: Option<&'a str>,
    /// Adding a WebAuthn credential: the form, and the kinds that may be chosen.
    pub add_webauthn: Option<(PlainForm<'a>, WebAuthnKinds)>,
    pub add_totp: Option<PlainForm<'a>>,
}

const PASSWORD_AGAIN: &str = "<label for=\"password\">Your password (to confirm it is you)</label>\
     <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>";

pub(super) fn account(page: &AccountPage<'_>) -> String {
    let rows: String = page
        .factors
        .iter()
        .map(|row| {
            format!(
                "<li>{kind}: <strong>{name}</strong>, added {created}, {used}</li>",
                kind = escape(row.kind),
                name = escape(&row.name),
                created = escape(&row.created),
                used = row
                    .last_used
                    .as_ref()
                    .map_or_else(|| "never used".to_owned(), |at| format!("last used {}", escape(at))),
            )
        })
        .collect();
    let list = if rows.is_empty() {
        "<p>No second factor is enrolled yet.</p>".to_owned()
    } else {
        format!("<ul>{rows}</ul>")
    };
    let webauthn = page
        .add_webauthn
        .as_ref()
        .map(|(form, offered)| {
            let kinds = match (offered.passkey, offered.security_key) {
                (true, true) => {
                    "<label for=\"kind\">Kind</label><select id=\"kind\" name=\"kind\">\
                     <option value=\"passkey\">Passkey (also signs in without a password)</option>\
                     <option value=\"security-key\">Security key (second factor only)</option></select>"
                }
                (true, false) => "<input type=\"hidden\" name=\"kind\" value=\"passkey\">",
                _ => "<input type=\"hidden\" name=\"kind\" value=\"security-key\">",
            };
            let inputs = format!(
                "<label for=\"webauthn-name\">Name</label>\
                 <input id=\"webauthn-name\" name=\"name\" maxlength=\"64\" required>{kinds}{PASSWORD_AGAIN}"
            );
            format!("<h2>Add a security key or passkey</h2>{}", plain_form(form, &inputs, "Add"))
        })
        .unwrap_or_default();
    let totp = page
        .add_totp
        .as_ref()
        .map(|form| {
            let inputs = format!(
                "<label for=\"totp-name\">Name</label>\
                 <input id=\"totp-name\" name=\"name\" maxlength=\"64\" required>{PASSWORD_AGAIN}"
            );
            format!("<h2>Add an authenticator app</h2>{}", plain_form(form, &inputs, "Continue"))
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>Your sign-in methods at {org}</h1><p>Signed in as {user}.</p>{message}\
         <h2>Second factors</h2>{list}{webauthn}{totp}",
        org = escape(page.organization_display_name),
        user = escape(page.user_name),
        message = message_html(page.message),
    );
    layout("Your sign-in methods", &body)
}

/// TOTP enrolment, second step: the secret to scan or type, and the first code.
pub(super) fn totp_enrolment(
    provisioning_uri: &str,
    secret_text: &str,
    form: &PlainForm<'_>,
    message: Option<&str>,
) -> String {
    let inputs = "<label for=\"code\">The 6-digit code your app shows now</label>\
         <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" \
         pattern=\"[0-9]{6}\" maxlength=\"6\" required autofocus>";
    let body = format!(
        "<h1>Add an authenticator app</h1>{message}\
         <p>Add this account to your authenticator app with the key below (or open the link on the \
         device that has the app), then enter the code it shows.</p>\
         <p>Key: <code id=\"totp-secret\">{secret}</code></p>\
         <p><a id=\"totp-uri\" href=\"{uri}\">Open in an authenticator app</a></p>{form}",
        message = message_html(message),
        secret = escape(secret_text),
        uri = escape(provisioning_uri),
        form = plain_form(form, inputs, "Add"),
    );
    layout("Add an authenticator app", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_rendered_is_escaped() {
        let evil = "\"><script>alert('x')</script>&";
        let page = sign_in(
            &FormContext {
                organization_display_name: evil,
                client_display_name: evil,
                action: evil,
                hidden: vec![("state", evil.to_owned())],
                message: Some(evil),
            },
            evil,
            None,
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&quot;&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;"));
        assert!(!notice(evil, evil).contains("<script>"));
    }
}
