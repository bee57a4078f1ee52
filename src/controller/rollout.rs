//! The rollout of an IdentityProvider as the operator reports it: whether
//! its upstream answers (OIDC discovery and key set; SAML metadata and the
//! expiry of its signing certificate), how sign-ins through it went in the
//! last 24 hours (counted by the token service in the store), and whether it
//! looks ready for the next stage. Informational: an unhealthy upstream does
//! not make the IdentityProvider not Ready, it says so beside it.
//!
//! ```text
//!  Disabled ──(upstream healthy)──► Testing ──(a test user signed in)──► Optional ──(sign-ins succeed,
//!                                                                                   break-glass users named)──► Enforced
//! ```

use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use super::conditions::{Desired, READY_TO_ADVANCE, UPSTREAM_HEALTHY};
use crate::api::{IdentityProvider, IdentityProviderType, RolloutStage, RolloutStatus};
use crate::federation::http::UpstreamHttp;
use crate::federation::saml::certificate_not_after;
use crate::store::SsoHealth;

/// An upstream is asked again this often (and on every change).
pub const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// A signing certificate expiring sooner than this makes the upstream unhealthy.
const CERTIFICATE_WARNING: jiff::SignedDuration = jiff::SignedDuration::from_hours(14 * 24);
/// `Optional` → `Enforced` wants at most this share of failed sign-ins.
const MAX_FAILURE_RATIO: f64 = 0.05;

/// What one look at the upstream found.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamCheck {
    pub healthy: bool,
    pub reason: &'static str,
    pub message: String,
    /// The earliest expiry among the SAML IdP's signing certificates.
    pub certificate_not_after: Option<Timestamp>,
}

impl UpstreamCheck {
    fn failed(reason: &'static str, message: String) -> Self {
        Self { healthy: false, reason, message, certificate_not_after: None }
    }

    pub fn condition(&self) -> Desired {
        Desired::new(UPSTREAM_HEALTHY, self.healthy, self.reason, self.message.clone())
    }
}

/// Asks the upstream of `idp`, trusting `ca_bundle` (PEM) besides the system's roots.
pub async fn check_upstream(
    idp: &IdentityProvider,
    ca_bundle: Option<&[u8]>,
    now: Timestamp,
) -> UpstreamCheck {
    let http = match UpstreamHttp::new(ca_bundle) {
        Ok(http) => http,
        Err(error) => {
            return UpstreamCheck::failed("CaBundleInvalid", crate::error_chain::error_chain(&error));
        }
    };
    match idp.spec.protocol {
        IdentityProviderType::Oidc => match &idp.spec.oidc {
            Some(oidc) => check_oidc(&http, &oidc.issuer).await,
            None => UpstreamCheck::failed("Misconfigured", "type OIDC without oidc settings".to_owned()),
        },
        IdentityProviderType::Saml => match &idp.spec.saml {
            Some(saml) => {
                let metadata = match (&saml.metadata, &saml.metadata_url) {
                    (Some(inline), _) => Ok(inline.clone()),
                    (None, Some(url)) => http
                        .get(url)
                        .await
                        .map(|body| String::from_utf8_lossy(&body).into_owned())
                        .map_err(|e| crate::error_chain::error_chain(&e)),
                    (None, None) => Err("neither metadata nor metadataUrl".to_owned()),
                };
                match metadata {
                    Ok(metadata) => check_saml_metadata(&metadata, &saml.entity_id, now),
                    Err(message) => UpstreamCheck::failed("MetadataUnavailable", message),
                }
            }
            None => UpstreamCheck::failed("Misconfigured", "type SAML without saml settings".to_owned()),
        },
    }
}

/// OpenID Connect Discovery: the document names the same issuer (§4.3) and
/// a key set that holds at least one key.
async fn check_oidc(http: &UpstreamHttp, issuer: &str) -> UpstreamCheck {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let document: Value = match http.get(&url).await.map(|body| serde_json::from_slice(&body)) {
        Ok(Ok(document)) => document,
        Ok(Err(error)) => {
            return UpstreamCheck::failed("DiscoveryFailed", format!("{url}: not JSON: {error}"));
        }
        Err(error) => {
            return UpstreamCheck::failed("DiscoveryFailed", crate::error_chain::error_chain(&error));
        }
    };
    if document["issuer"].as_str() != Some(issuer) {
        return UpstreamCheck::failed(
            "IssuerMismatch",
            format!("{url} names issuer {} instead of {issuer}", document["issuer"]),
        );
    }
    let Some(jwks_uri) = document["jwks_uri"].as_str() else {
        return UpstreamCheck::failed("DiscoveryFailed", format!("{url} names no jwks_uri"));
    };
    let keys = match http.get(jwks_uri).await.map(|body| serde_json::from_slice::<Value>(&body)) {
        Ok(Ok(set)) => set["keys"].as_array().map_or(0, Vec::len),
        Ok(Err(error)) => {
            return UpstreamCheck::failed("KeySetFailed", format!("{jwks_uri}: not JSON: {error}"));
        }
        Err(error) => return UpstreamCheck::failed("KeySetFailed", crate::error_chain::error_chain(&error)),
    };
    if keys == 0 {
        return UpstreamCheck::failed("KeySetFailed", format!("{jwks_uri} holds no key"));
    }
    UpstreamCheck {
        healthy: true,
        reason: "DiscoveryAnswered",
        message: format!("discovery and key set answer ({keys} keys)"),
        certificate_not_after: None,
    }
}

/// SAML metadata: it describes `entity_id`, and its signing certificates
/// are valid for a while yet. (Only the certificates are read here; the
/// service provider parses and verifies metadata itself.)
fn check_saml_metadata(metadata: &str, entity_id: &str, now: Timestamp) -> UpstreamCheck {
    if !metadata.contains(&format!("entityID=\"{entity_id}\"")) {
        return UpstreamCheck::failed(
            "MetadataMismatch",
            format!("the metadata does not describe {entity_id}"),
        );
    }
    let not_after = certificates_in(metadata).filter_map(|der| certificate_not_after(&der)).min();
    let Some(not_after) = not_after else {
        return UpstreamCheck::failed(
            "NoSigningCertificate",
            "the metadata holds no usable certificate".to_owned(),
        );
    };
    let check = |healthy, reason, message| UpstreamCheck {
        healthy,
        reason,
        message,
        certificate_not_after: Some(not_after),
    };
    if not_after <= now {
        check(false, "CertificateExpired", format!("the IdP's signing certificate expired at {not_after}"))
    } else if not_after.duration_since(now) < CERTIFICATE_WARNING {
        check(
            false,
            "CertificateExpiring",
            format!("the IdP's signing certificate expires at {not_after}: roll it over"),
        )
    } else {
        check(
            true,
            "MetadataAnswered",
            format!("metadata answers; signing certificate valid until {not_after}"),
        )
    }
}

/// The DER of each `<X509Certificate>` (any namespace prefix) in `xml`.
fn certificates_in(xml: &str) -> impl Iterator<Item = Vec<u8>> + '_ {
    use base64::Engine as _;
    static CERTIFICATE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"<(?:[A-Za-z0-9_]+:)?X509Certificate>([A-Za-z0-9+/=\s]+)</(?:[A-Za-z0-9_]+:)?X509Certificate>",
        )
        .expect("a valid pattern")
    });
    CERTIFICATE.captures_iter(xml).filter_map(|found| {
        let text: String = found[1].chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD.decode(text).ok()
    })
}

/// Whether the stage may move on, and why (or why not).
pub fn readiness(
    stage: RolloutStage,
    break_glass_users: usize,
    upstream: &UpstreamCheck,
    health: &SsoHealth,
) -> Desired {
    let ready = |reason: &str, message: String| Desired::new(READY_TO_ADVANCE, true, reason, message);
    let not_ready = |reason: &str, message: String| Desired::new(READY_TO_ADVANCE, false, reason, message);
    if stage == RolloutStage::Enforced {
        return not_ready("FinalStage", "Enforced is the last stage".to_owned());
    }
    if !upstream.healthy {
        return not_ready(
            "UpstreamUnhealthy",
            format!("the upstream must answer first: {}", upstream.message),
        );
    }
    // Sign-ins counted since the token service saw this stage begin.
    let in_stage =
        if health.stage.as_deref() == Some(stage.as_str()) { health.successes_in_stage } else { 0 };
    match stage {
        RolloutStage::Disabled => {
            ready("UpstreamHealthy", "the upstream answers: it can go to Testing".to_owned())
        }
        RolloutStage::Testing if in_stage == 0 => not_ready(
            "AwaitingTestSignIns",
            "no test user has signed in through it in this stage yet".to_owned(),
        ),
        RolloutStage::Testing => ready(
            "TestUsersSignedIn",
            format!("{in_stage} sign-ins of test users succeeded: it can go to Optional"),
        ),
        RolloutStage::Optional if break_glass_users == 0 => not_ready(
            "NoBreakGlassUsers",
            "name breakGlassUsers before Enforced, so an upstream outage cannot lock everyone out".to_owned(),
        ),
        RolloutStage::Optional if health.sign_ins_24h == 0 => {
            not_ready("AwaitingSignIns", "nobody signed in through it in the last 24 hours".to_owned())
        }
        RolloutStage::Optional => {
            let ratio = health.failures_24h as f64 / health.sign_ins_24h as f64;
            let counts = format!(
                "{} of {} sign-ins failed in the last 24 hours",
                health.failures_24h, health.sign_ins_24h
            );
            if ratio > MAX_FAILURE_RATIO {
                not_ready("FailureRateHigh", counts)
            } else {
                ready("SignInsSucceeding", format!("{counts}: it can go to Enforced"))
            }
        }
        RolloutStage::Enforced => unreachable!("handled above"),
    }
}

/// The rollout part of the status: the stage, since when (kept from
/// `previous` while the stage is unchanged), and the sign-ins of the last 24
/// hours. Nothing in it changes unless something happened (no "checked at"
/// time), so that an unchanged status is not written again.
pub fn status(
    stage: RolloutStage,
    previous: Option<&RolloutStatus>,
    upstream: &UpstreamCheck,
    health: &SsoHealth,
    now: Timestamp,
) -> RolloutStatus {
    let since = previous.filter(|p| p.stage == stage).map_or_else(|| rfc3339(now), |p| p.since.clone());
    let time = |ms: Option<i64>| ms.and_then(|ms| Timestamp::from_millisecond(ms).ok()).map(rfc3339);
    RolloutStatus {
        stage,
        since,
        sign_ins_24h: health.sign_ins_24h,
        failures_24h: health.failures_24h,
        last_success_time: time(health.last_success_ms),
        last_error: health.last_error.clone(),
        last_error_time: time(health.last_error_ms),
        certificate_not_after: upstream.certificate_not_after.map(rfc3339),
    }
}

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> UpstreamCheck {
        UpstreamCheck {
            healthy: true,
            reason: "DiscoveryAnswered",
            message: String::new(),
            certificate_not_after: None,
        }
    }

    fn health(stage: &str, in_stage: u64, sign_ins: u64, failures: u64) -> SsoHealth {
        SsoHealth {
            stage: Some(stage.to_owned()),
            successes_in_stage: in_stage,
            sign_ins_24h: sign_ins,
            failures_24h: failures,
            ..SsoHealth::default()
        }
    }

    fn verdict(d: Desired) -> (bool, String) {
        (d.status, d.reason)
    }

    #[test]
    fn each_stage_says_what_it_waits_for() {
        let none = SsoHealth::default();
        assert_eq!(
            verdict(readiness(RolloutStage::Disabled, 0, &healthy(), &none)),
            (true, "UpstreamHealthy".into())
        );
        let down = UpstreamCheck::failed("DiscoveryFailed", "refused".into());
        assert_eq!(
            verdict(readiness(RolloutStage::Disabled, 0, &down, &none)),
            (false, "UpstreamUnhealthy".into())
        );
        assert_eq!(
            verdict(readiness(RolloutStage::Testing, 0, &healthy(), &health("Testing", 0, 0, 0))),
            (false, "AwaitingTestSignIns".into())
        );
        // Successes of another stage do not count for this one.
        assert_eq!(
            verdict(readiness(RolloutStage::Testing, 0, &healthy(), &health("Disabled", 3, 3, 0))),
            (false, "AwaitingTestSignIns".into())
        );
        assert_eq!(
            verdict(readiness(RolloutStage::Testing, 0, &healthy(), &health("Testing", 2, 2, 0))),
            (true, "TestUsersSignedIn".into())
        );
        assert_eq!(
            verdict(readiness(RolloutStage::Optional, 0, &healthy(), &health("Optional", 50, 50, 0))),
            (false, "NoBreakGlassUsers".into())
        );
        assert_eq!(
            verdict(readiness(RolloutStage::Optional, 1, &healthy(), &health("Optional", 0, 0, 0))),
            (false, "AwaitingSignIns".into())
        );
        assert_eq!(
            verdict(readiness(RolloutStage::Optional, 1, &healthy(), &health("Optional", 90, 100, 10))),
            (false, "FailureRateHigh".into())
        );
        assert_eq!(
            verdict(readiness(RolloutStage::Optional, 1, &healthy(), &health("Optional", 99, 100, 1))),
            (true, "SignInsSucceeding".into())
        );
        assert_eq!(
            verdict(readiness(RolloutStage::Enforced, 1, &healthy(), &health("Enforced", 99, 100, 0))),
            (false, "FinalStage".into())
        );
    }

    #[test]
    fn the_stage_keeps_its_since_until_it_changes() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let later = t0 + jiff::SignedDuration::from_hours(5);
        let first = status(RolloutStage::Testing, None, &healthy(), &SsoHealth::default(), t0);
        let same = status(RolloutStage::Testing, Some(&first), &healthy(), &SsoHealth::default(), later);
        assert_eq!(same.since, first.since);
        let next = status(RolloutStage::Optional, Some(&same), &healthy(), &SsoHealth::default(), later);
        assert_eq!(next.since, rfc3339(later));
    }

    /// A self-signed certificate valid for `days` from now, made by the
    /// openssl command line (the test command's prerequisite), as base64 DER.
    fn certificate(days: u32) -> String {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        let made = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
            .args(["-subj", "/CN=idp.example", "-days", &days.to_string()])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        let pem = std::fs::read_to_string(cert).unwrap();
        pem.lines().filter(|line| !line.starts_with("-----")).collect::<Vec<_>>().join("\n")
    }

    fn metadata(certificate: &str) -> String {
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example/saml">
  <md:IDPSSODescriptor><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data>
    <ds:X509Certificate>
{certificate}
    </ds:X509Certificate>
  </ds:X509Data></ds:KeyInfo></md:KeyDescriptor></md:IDPSSODescriptor>
</md:EntityDescriptor>"#
        )
    }

    #[test]
    fn saml_metadata_is_checked_for_its_entity_and_certificate_expiry() {
        let now = Timestamp::now();
        let year = metadata(&certificate(365));
        let check = check_saml_metadata(&year, "https://idp.example/saml", now);
        assert_eq!((check.healthy, check.reason), (true, "MetadataAnswered"), "{}", check.message);
        let days_left = check.certificate_not_after.unwrap().duration_since(now).as_hours() / 24;
        assert!((364..=365).contains(&days_left), "{days_left}");
        assert_eq!(check_saml_metadata(&year, "https://other.example", now).reason, "MetadataMismatch");
        let week = metadata(&certificate(7));
        assert_eq!(check_saml_metadata(&week, "https://idp.example/saml", now).reason, "CertificateExpiring");
        let next_year = now + jiff::SignedDuration::from_hours(400 * 24);
        assert_eq!(
            check_saml_metadata(&year, "https://idp.example/saml", next_year).reason,
            "CertificateExpired"
        );
        let garbage = metadata("bm90IGEgY2VydA==");
        assert_eq!(
            check_saml_metadata(&garbage, "https://idp.example/saml", now).reason,
            "NoSigningCertificate"
        );
    }
}
