//! The sign-in pages: plain HTML forms, no script. Every value that reaches a
//! page goes through [`escape`]; pages are never cached or framed.

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
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
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

pub(super) fn sign_in(context: &FormContext<'_>, user_name: &str) -> String {
    let body = format!(
        "<h1>Sign in to {org}</h1><p>to continue to {client}</p>{message}\
         <form method=\"post\" action=\"{action}\">{hidden}\
         <label for=\"username\">User name or email</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required value=\"{user}\">\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>",
        org = escape(context.organization_display_name),
        client = escape(context.client_display_name),
        message = message_html(context.message),
        action = escape(context.action),
        hidden = hidden(&context.hidden),
        user = escape(user_name),
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
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&quot;&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;"));
        assert!(!notice(evil, evil).contains("<script>"));
    }
}
