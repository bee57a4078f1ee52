//! Reading the `Cookie` header and writing `Set-Cookie` (RFC 6265 §4.1) for
//! the two cookies of the sign-in pages. Their values are base64url, so no
//! quoting is needed.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;

/// The pre-login cookie: binds CSRF tokens and MFA tickets to one browser.
pub(super) const PRE_LOGIN: &str = "portcullis_login";
/// The session cookie.
pub(super) const SESSION: &str = "portcullis_session";

/// The value of cookie `name`, if the request carries exactly one.
pub(super) fn read(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else { continue };
            if key == name {
                if found.is_some() {
                    // Two cookies of one name (e.g. one planted on a parent
                    // path): trust neither.
                    return None;
                }
                found = Some(value.trim_matches('"').to_owned());
            }
        }
    }
    found.filter(|value| !value.is_empty() && value.len() <= 256)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, scoped to `path`, Secure
/// unless `secure` is false (http on loopback).
pub(super) fn set(name: &str, value: &str, path: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}")
}

/// Tells the browser to drop the cookie.
pub(super) fn clear(name: &str, path: &str, secure: bool) -> String {
    set(name, "", path, 0, secure)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn reads_one_cookie_among_several_and_refuses_duplicates() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("a=1; portcullis_login=abc; b=2"));
        assert_eq!(read(&headers, PRE_LOGIN).as_deref(), Some("abc"));
        assert_eq!(read(&headers, SESSION), None);
        headers.append(COOKIE, HeaderValue::from_static("portcullis_login=planted"));
        assert_eq!(read(&headers, PRE_LOGIN), None);
    }

    #[test]
    fn set_cookie_carries_the_protections() {
        assert_eq!(
            set(SESSION, "v", "/o/acme", 60, true),
            "portcullis_session=v; Path=/o/acme; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(!clear(SESSION, "/o/acme", false).contains("Secure"));
    }
}
