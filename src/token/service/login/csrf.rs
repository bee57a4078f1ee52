//! Values the sign-in pages hand to the browser and check when they come
//! back, all MACed with the login key (HMAC-SHA-256):
//!
//! ```text
//!  pre-login cookie  random id, HttpOnly, SameSite=Lax, per browser
//!  CSRF token        HMAC("csrf", org, pre-login id)          hidden field of each form
//!  MFA ticket        user, auth_time, expiry + HMAC(…, pre-login id)
//!                    "the password was right": hidden field of the TOTP form
//!  logout token      HMAC("logout", org, session secret)      hidden field of the logout form
//!  account token     HMAC("account", org, session secret)     hidden field of the account page's forms
//!  admin token       HMAC("admin", org, session secret)       hidden field of the admin pages' forms
//! ```
//!
//! A forged form post has no pre-login cookie of the victim's browser to
//! match (OWASP "synchroniser token" bound to a cookie); a ticket stolen from
//! a page does not work in another browser.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

/// A new random id (256 bits, base64url): pre-login ids and session secrets.
pub(super) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The system RNG failing is not something to recover from.
    SystemRandom::new().fill(&mut bytes).expect("the system has randomness");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn mac(key: &hmac::Key, parts: &[&str]) -> String {
    let mut context = hmac::Context::with_key(key);
    for part in parts {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(context.sign())
}

fn mac_matches(key: &hmac::Key, parts: &[&str], presented: &str) -> bool {
    let Ok(tag) = URL_SAFE_NO_PAD.decode(presented) else { return false };
    let mut message = Vec::new();
    for part in parts {
        message.extend_from_slice(&(part.len() as u64).to_be_bytes());
        message.extend_from_slice(part.as_bytes());
    }
    hmac::verify(key, &message, &tag).is_ok()
}

pub(super) fn csrf_token(key: &hmac::Key, organization: &str, pre_login_id: &str) -> String {
    mac(key, &["csrf", organization, pre_login_id])
}

pub(super) fn csrf_matches(key: &hmac::Key, organization: &str, pre_login_id: &str, presented: &str) -> bool {
    mac_matches(key, &["csrf", organization, pre_login_id], presented)
}

pub(super) fn logout_token(key: &hmac::Key, organization: &str, session_secret: &str) -> String {
    mac(key, &["logout", organization, session_secret])
}

pub(super) fn logout_token_matches(
    key: &hmac::Key,
    organization: &str,
    session_secret: &str,
    presented: &str,
) -> bool {
    mac_matches(key, &["logout", organization, session_secret], presented)
}

/// The CSRF token of the account page's forms, bound to the session cookie.
pub(super) fn account_token(key: &hmac::Key, organization: &str, session_secret: &str) -> String {
    mac(key, &["account", organization, session_secret])
}

pub(super) fn account_token_matches(
    key: &hmac::Key,
    organization: &str,
    session_secret: &str,
    presented: &str,
) -> bool {
    mac_matches(key, &["account", organization, session_secret], presented)
}

/// The CSRF token of the admin pages' forms, bound to the session cookie.
pub(super) fn admin_token(key: &hmac::Key, organization: &str, session_secret: &str) -> String {
    mac(key, &["admin", organization, session_secret])
}

pub(super) fn admin_token_matches(
    key: &hmac::Key,
    organization: &str,
    session_secret: &str,
    presented: &str,
) -> bool {
    mac_matches(key, &["admin", organization, session_secret], presented)
}

/// "This browser passed the first factor for this user at `auth_time`":
/// the password, or an upstream identity provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct MfaTicket {
    pub user_id: String,
    pub auth_time: i64,
    pub expires: i64,
    /// The `amr` of the first factor (`pwd`, or `fed` and the provider's),
    /// which the second factor's `amr` extends.
    pub first_factor: Vec<String>,
}

impl MfaTicket {
    pub fn seal(&self, key: &hmac::Key, organization: &str, pre_login_id: &str) -> String {
        let payload = URL_SAFE_NO_PAD.encode(format!(
            "{}\n{}\n{}\n{}",
            self.user_id,
            self.auth_time,
            self.expires,
            self.first_factor.join(" ")
        ));
        let tag = mac(key, &["mfa-ticket", organization, pre_login_id, &payload]);
        format!("{payload}.{tag}")
    }

    /// The ticket, if its MAC holds for this organization and browser and it has not expired.
    pub fn open(
        key: &hmac::Key,
        organization: &str,
        pre_login_id: &str,
        presented: &str,
        now: Timestamp,
    ) -> Option<Self> {
        let (payload, tag) = presented.split_once('.')?;
        if !mac_matches(key, &["mfa-ticket", organization, pre_login_id, payload], tag) {
            return None;
        }
        let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let mut fields = decoded.split('\n');
        let ticket = MfaTicket {
            user_id: fields.next()?.to_owned(),
            auth_time: fields.next()?.parse().ok()?,
            expires: fields.next()?.parse().ok()?,
            // A ticket sealed before the first factor was recorded came
            // from a password (the only first factor then asking a second).
            first_factor: match fields.next() {
                Some(amr) => amr.split(' ').filter(|m| !m.is_empty()).map(str::to_owned).collect(),
                None => vec!["pwd".to_owned()],
            },
        };
        (now.as_second() < ticket.expires).then_some(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, b"test key")
    }

    #[test]
    fn a_csrf_token_holds_only_for_its_browser_and_organization() {
        let token = csrf_token(&key(), "acme", "browser-1");
        assert!(csrf_matches(&key(), "acme", "browser-1", &token));
        assert!(!csrf_matches(&key(), "acme", "browser-2", &token));
        assert!(!csrf_matches(&key(), "globex", "browser-1", &token));
        assert!(!csrf_matches(&key(), "acme", "browser-1", ""));
        assert!(!csrf_matches(&key(), "acme", "browser-1", "not base64!"));
    }

    #[test]
    fn a_ticket_opens_in_its_browser_until_it_expires() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let ticket = MfaTicket {
            user_id: "u-1".into(),
            auth_time: now.as_second(),
            expires: now.as_second() + 300,
            first_factor: vec!["fed".into(), "idp:okta".into()],
        };
        let sealed = ticket.seal(&key(), "acme", "browser-1");
        assert_eq!(MfaTicket::open(&key(), "acme", "browser-1", &sealed, now), Some(ticket.clone()));
        assert_eq!(MfaTicket::open(&key(), "acme", "browser-2", &sealed, now), None);
        let later = Timestamp::from_second(1_700_000_300).unwrap();
        assert_eq!(MfaTicket::open(&key(), "acme", "browser-1", &sealed, later), None);
        let (_, tag) = sealed.split_once('.').unwrap();
        let forged_payload =
            URL_SAFE_NO_PAD.encode(format!("admin\n{}\n{}\nfed", now.as_second(), ticket.expires));
        let forged = format!("{forged_payload}.{tag}");
        assert_eq!(
            MfaTicket::open(&key(), "acme", "browser-1", &forged, now),
            None,
            "another user, same MAC"
        );
    }

    #[test]
    fn a_ticket_keeps_its_first_factor_and_an_older_one_is_a_password() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let federated = MfaTicket {
            user_id: "u-1".into(),
            auth_time: now.as_second(),
            expires: now.as_second() + 300,
            first_factor: vec!["fed".into(), "idp:okta".into()],
        };
        let opened = MfaTicket::open(&key(), "acme", "b", &federated.seal(&key(), "acme", "b"), now).unwrap();
        assert_eq!(opened.first_factor, ["fed", "idp:okta"]);
        let older_payload =
            URL_SAFE_NO_PAD.encode(format!("u-1\n{}\n{}", now.as_second(), now.as_second() + 300));
        let older = format!("{older_payload}.{}", mac(&key(), &["mfa-ticket", "acme", "b", &older_payload]));
        assert_eq!(MfaTicket::open(&key(), "acme", "b", &older, now).unwrap().first_factor, ["pwd"]);
    }
}
