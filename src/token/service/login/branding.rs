//! Each organization's look on its pages: `spec.branding`'s accent colour
//! and logo, put into every HTML page served under `/o/{org}/` (sign-in,
//! notices, invitations, admin pages) by one layer, so that no page has to
//! carry it.
//!
//! ```text
//!  page rendered from base.html ── <!--portcullis:brand-style-->  ─► :root{--accent:#rrggbb;--on-accent:#fff|#000}
//!                                  <!--portcullis:brand-logo-->   ─► <img class="logo" src=… alt="{displayName}">
//!                                  Content-Security-Policy        ─► + img-src {the logo's origin}
//! ```
//!
//! The values were checked by the CRD's schema; they are checked again
//! here (a colour is exactly `#rrggbb`, a logo an `https://` URL without
//! quotes or angle brackets), and one that fails is left out, never escaped
//! into the page.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::api::Branding;
use crate::token::service::state::TokenServiceState;

const STYLE_MARKER: &str = "<!--portcullis:brand-style-->";
const LOGO_MARKER: &str = "<!--portcullis:brand-logo-->";
/// Pages are small; anything larger is passed through untouched.
const MAX_PAGE: usize = 256 * 1024;

/// The layer: brands the HTML answers of `/o/{org}/…` routes.
pub async fn brand(State(state): State<TokenServiceState>, request: Request, next: Next) -> Response {
    let organization =
        request.uri().path().strip_prefix("/o/").and_then(|rest| rest.split('/').next()).map(str::to_owned);
    let response = next.run(request).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let Some(organization) = organization.filter(|_| is_html) else { return response };
    let branding = match state.organization(&organization).await {
        Ok(Some(org)) => org.spec.branding.clone().map(|b| (b, org.display_name.clone())),
        _ => None,
    };
    let Some((branding, display_name)) = branding else { return response };
    let look = Look::of(&branding, &display_name);
    if look.is_empty() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_PAGE).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(html) = String::from_utf8(bytes.to_vec()) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let html = html.replacen(STYLE_MARKER, &look.style, 1).replacen(LOGO_MARKER, &look.logo, 1);
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(origin) = &look.logo_origin
        && let Some(csp) = parts.headers.get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok())
        && let Ok(value) = HeaderValue::from_str(&format!("{csp}; img-src {origin}"))
    {
        parts.headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    Response::from_parts(parts, Body::from(html))
}

/// What a page gets of the branding: its style rule, its logo element and
/// the logo's origin for the CSP. Empty strings for what is not set (or
/// not valid).
#[derive(Debug, Default, PartialEq, Eq)]
struct Look {
    style: String,
    logo: String,
    logo_origin: Option<String>,
}

impl Look {
    fn of(branding: &Branding, display_name: &str) -> Self {
        let mut look = Look::default();
        if let Some((red, green, blue)) = branding.accent_color.as_deref().and_then(rgb) {
            let on_accent = if luminance(red, green, blue) > 0.45 { "#000" } else { "#fff" };
            let accent = format!("#{red:02x}{green:02x}{blue:02x}");
            look.style = format!("<style>:root{{--accent:{accent};--on-accent:{on_accent}}}</style>");
        }
        if let Some(url) = branding.logo_url.as_deref().and_then(safe_logo_url) {
            look.logo = format!(r#"<img class="logo" src="{url}" alt="{}">"#, escape(display_name));
            look.logo_origin = url::Url::parse(&url).ok().map(|u| u.origin().ascii_serialization());
        }
        look
    }

    fn is_empty(&self) -> bool {
        self.style.is_empty() && self.logo.is_empty()
    }
}

/// `#rrggbb` as its three channels.
fn rgb(colour: &str) -> Option<(u8, u8, u8)> {
    let hex =
        colour.strip_prefix('#').filter(|h| h.len() == 6 && h.bytes().all(|b| b.is_ascii_hexdigit()))?;
    let channel = |at: usize| u8::from_str_radix(&hex[at..at + 2], 16).ok();
    Some((channel(0)?, channel(2)?, channel(4)?))
}

/// Relative luminance (WCAG 2.x) of an sRGB colour, 0 (black) to 1 (white).
fn luminance(red: u8, green: u8, blue: u8) -> f64 {
    let linear = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.039_28 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
    };
    0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)
}

/// The URL as the page may carry it: `https://`, parsed, and with nothing
/// that could end the attribute it goes in.
fn safe_logo_url(text: &str) -> Option<String> {
    let url = url::Url::parse(text).ok().filter(|u| u.scheme() == "https" && u.host().is_some())?;
    let text = url.as_str();
    (!text.chars().any(|c| matches!(c, '"' | '\'' | '<' | '>' | '\\') || c.is_whitespace()))
        .then(|| text.to_owned())
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(accent: Option<&str>, logo: Option<&str>) -> Look {
        let branding =
            Branding { accent_color: accent.map(str::to_owned), logo_url: logo.map(str::to_owned) };
        Look::of(&branding, "Acme <Test>")
    }

    #[test]
    fn a_colour_is_exactly_six_hex_digits_and_picks_readable_text() {
        assert_eq!(
            look(Some("#0b5394"), None).style,
            "<style>:root{--accent:#0b5394;--on-accent:#fff}</style>"
        );
        assert_eq!(
            look(Some("#FFE599"), None).style,
            "<style>:root{--accent:#ffe599;--on-accent:#000}</style>"
        );
        for bad in ["red", "#fff", "#0b5394;}body{display:none", "#0b539g", "0b5394"] {
            assert!(look(Some(bad), None).is_empty(), "{bad}");
        }
    }

    #[test]
    fn a_logo_is_an_https_url_that_cannot_leave_its_attribute() {
        let good = look(None, Some("https://cdn.acme.example/logo.svg"));
        assert_eq!(
            good.logo,
            r#"<img class="logo" src="https://cdn.acme.example/logo.svg" alt="Acme &lt;Test&gt;">"#
        );
        assert_eq!(good.logo_origin.as_deref(), Some("https://cdn.acme.example"));
        for bad in [
            "http://cdn.acme.example/logo.svg",
            "javascript:alert(1)",
            "data:image/svg+xml,<svg/onload=alert(1)>",
            "https://x.example/a\"onerror=\"alert(1)",
        ] {
            let look = look(None, Some(bad));
            assert!(look.logo.is_empty() || !look.logo.contains("onerror=\""), "{bad}: {look:?}");
            assert!(
                !look.logo.contains("javascript")
                    && !look.logo.starts_with("<img class=\"logo\" src=\"http:"),
                "{bad}"
            );
        }
    }
}
