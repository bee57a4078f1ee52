//! A browser for the server-rendered pages, played by reqwest: a cookie jar,
//! redirects not followed (so each `Location` can be read), and reading a
//! page's forms the way a browser submits them (action, hidden fields, HTML
//! character references decoded). Shared by the sign-in tests; a real
//! browser (Chromium) lives in `chromium.rs`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{LOCATION, RETRY_AFTER, SET_COOKIE};

/// What the tests' browser says it is (the audit trail records it).
pub const BROWSER_USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) portcullis-tests";

/// A new browser: its own cookie jar, redirects left to the test.
pub fn browser() -> reqwest::Client {
    browser_builder().build().expect("an HTTP client")
}

/// The builder of [`browser`], for a test that adds to it (e.g. `resolve`).
pub fn browser_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(BROWSER_USER_AGENT)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
}

/// A response as a browser sees it.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Page {
    pub async fn read(response: reqwest::Response) -> Page {
        let status = response.status();
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let location = header(LOCATION);
        let retry_after = header(RETRY_AFTER);
        let set_cookies = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect();
        Page { status, location, set_cookies, retry_after, body: response.text().await.expect("a body") }
    }

    /// The action and hidden fields of the form posting to an action ending
    /// in `action_suffix` (`""`: the first form).
    pub fn form(&self, action_suffix: &str) -> (String, Vec<(String, String)>) {
        form_in(&self.body, action_suffix)
    }

    pub fn has_form(&self, action_suffix: &str) -> bool {
        self.body.contains(&format!("{action_suffix}\""))
    }

    /// The query of the redirect's `Location`.
    pub fn query(&self) -> BTreeMap<String, String> {
        let location = self.location.as_deref().expect("a redirect");
        let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
        form_urlencoded::parse(query.as_bytes()).into_owned().collect()
    }

    /// The options of the page's WebAuthn ceremony (its JSON data block).
    pub fn ceremony_options(&self) -> serde_json::Value {
        let block =
            regex::Regex::new(r#"(?s)<script type="application/json" id="webauthn-options">(.*?)</script>"#)
                .unwrap();
        let data =
            block.captures(&self.body).unwrap_or_else(|| panic!("a WebAuthn ceremony in {}", self.body));
        let data: serde_json::Value = serde_json::from_str(&data[1]).unwrap();
        data["options"].clone()
    }
}

/// The action and hidden fields of the form in `body` posting to an action
/// ending in `action_suffix` (`""`: the first form).
pub fn form_in(body: &str, action_suffix: &str) -> (String, Vec<(String, String)>) {
    let forms = regex::Regex::new(r#"(?s)<form method="post" action="([^"]*)"[^>]*>(.*?)</form>"#).unwrap();
    let hidden = regex::Regex::new(r#"<input type="hidden" name="([^"]*)" value="([^"]*)">"#).unwrap();
    let form = forms
        .captures_iter(body)
        .find(|c| unescape(&c[1]).ends_with(action_suffix))
        .unwrap_or_else(|| panic!("a form posting to …{action_suffix} in {body}"));
    let fields = hidden.captures_iter(&form[2]).map(|c| (unescape(&c[1]), unescape(&c[2]))).collect();
    (unescape(&form[1]), fields)
}

/// Decodes the character references a server writes (`&amp;`, `&lt;`,
/// `&gt;`, `&quot;`, `&#39;`, `&#x27;`…), as a browser does.
pub fn unescape(text: &str) -> String {
    let reference = regex::Regex::new(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|amp|lt|gt|quot|apos);").unwrap();
    reference
        .replace_all(text, |c: &regex::Captures| {
            let name = &c[1];
            let decoded = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => match name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok().and_then(char::from_u32),
                    None => name[1..].parse().ok().and_then(char::from_u32),
                },
            };
            decoded.map_or_else(|| c[0].to_owned(), String::from)
        })
        .into_owned()
}

/// Opens `url`.
pub async fn open(browser: &reqwest::Client, url: &str) -> Page {
    Page::read(browser.get(url).send().await.expect("GET")).await
}

/// Posts the form of `page` ending in `action_suffix` (`""`: the first) to
/// `base` + its action, with its hidden fields (minus `drop`) and `fields`.
pub async fn submit(
    browser: &reqwest::Client,
    base: &str,
    page: &Page,
    action_suffix: &str,
    fields: &[(&str, &str)],
    drop: &[&str],
) -> Page {
    let (action, hidden) = page.form(action_suffix);
    let mut body: Vec<(String, String)> =
        hidden.into_iter().filter(|(n, _)| !drop.contains(&n.as_str())).collect();
    body.extend(fields.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    Page::read(browser.post(format!("{base}{action}")).form(&body).send().await.expect("POST")).await
}

#[test]
fn references_decode_as_a_browser_decodes_them() {
    assert_eq!(unescape("st&#60;&#38;&#62; &lt;&amp;&gt; &#34;&quot;&#39;&#x27;"), "st<&> <&> \"\"''");
    assert_eq!(unescape("&amp;lt; &unknown; &#xZZ;"), "&lt; &unknown; &#xZZ;");
}
