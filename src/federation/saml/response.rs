//! Verifying the IdP's `<samlp:Response>` (saml-core §3.3.3, saml-profiles
//! §4.1.4.3) and reading the person it names.
//!
//! Signature wrapping (XSW) is met twice: samael (libxmlsec1) verifies every
//! signature and hands back a document holding only what the verified
//! references cover, so the assertion read is always a signed one; and the
//! raw document must hold exactly that one assertion, so a response that
//! carries a second (moved, duplicated, wrapped) one is refused outright.

use jiff::Timestamp;
use samael::crypto::{AllowedSignatureAlgorithm, CertificateDer, Crypto, CryptoProvider as _, ReduceMode};
use samael::schema::{Assertion, Response};

use super::metadata::{IdpMetadata, SigningCertificate};
use super::xml::{Shape, scan};
use super::{LEEWAY, SamlError, SamlUpstream, jiff_time};
use crate::federation::UpstreamIdentity;

const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const EMAIL_NAME_ID: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";

/// Asymmetric signatures with SHA-2 only (no SHA-1, no HMAC).
const ALLOWED_ALGORITHMS: [AllowedSignatureAlgorithm; 6] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

/// What one response is checked against.
pub(super) struct Checks<'a> {
    pub upstream: &'a SamlUpstream<'a>,
    /// The ID of the AuthnRequest this browser's pending sign-in sent.
    pub request_id: &'a str,
    pub now: Timestamp,
}

/// A verified sign-in.
#[derive(Debug)]
pub struct Verified {
    /// The assertion's ID, for the replay cache…
    pub assertion_id: String,
    /// …until it could no longer be presented anyway.
    pub expires: Timestamp,
    pub identity: UpstreamIdentity,
}

pub(super) fn verify(xml: &str, metadata: &IdpMetadata, checks: &Checks<'_>) -> Result<Verified, SamlError> {
    let raw = scan(xml)?;
    if !raw.is_response {
        return Err(SamlError::Malformed("the root is not a samlp:Response".into()));
    }
    if raw.assertions == 0 && raw.encrypted_assertions == 0 && raw.status.as_deref() != Some(STATUS_SUCCESS) {
        return Err(SamlError::Status(raw.status.unwrap_or_default()));
    }
    if raw.encrypted_assertions > 0 {
        return Err(SamlError::Encrypted);
    }
    if raw.signatures == 0 {
        return Err(SamlError::Unsigned);
    }
    let reduced = verified_part(xml, &metadata.certificates, checks.now)?;
    let signed = scan(&reduced)?;
    if signed.assertions != 1 {
        return Err(SamlError::AssertionCount(signed.assertions));
    }
    if raw.assertions != 1 {
        return Err(SamlError::Wrapping { raw: raw.assertions, signed: signed.assertions });
    }
    let assertion = signed_assertion(&reduced, &signed)?;
    check_response(&raw, checks)?;
    check_assertion(&assertion, metadata, checks)
}

/// The document reduced to what signatures by the metadata's certificates
/// cover. A certificate past its NotAfter is not used: a signature only it
/// verifies is refused as [`SamlError::CertificateExpired`].
fn verified_part(
    xml: &str,
    certificates: &[SigningCertificate],
    now: Timestamp,
) -> Result<String, SamlError> {
    let (valid, expired): (Vec<&SigningCertificate>, Vec<&SigningCertificate>) =
        certificates.iter().partition(|c| c.not_after > now);
    let reduce = |certificates: &[&SigningCertificate]| {
        if certificates.is_empty() {
            return None;
        }
        let ders: Vec<CertificateDer> =
            certificates.iter().map(|c| CertificateDer::from(c.der.clone())).collect();
        Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            xml,
            &ders,
            ReduceMode::ValidateAndMarkNoAncestors,
            Some(&ALLOWED_ALGORITHMS),
        )
        .ok()
    };
    if let Some(reduced) = reduce(&valid) {
        return Ok(reduced);
    }
    if reduce(&expired).is_some() {
        return Err(SamlError::CertificateExpired);
    }
    Err(SamlError::SignatureInvalid)
}

/// The one assertion of the verified document (a signed Response, or a
/// signed Assertion on its own).
fn signed_assertion(reduced: &str, shape: &Shape) -> Result<Assertion, SamlError> {
    let malformed = |e: &dyn std::fmt::Display| SamlError::Malformed(format!("the signed part: {e}"));
    if shape.is_response {
        let response: Response = reduced.parse().map_err(|e| malformed(&e))?;
        response.assertion.ok_or(SamlError::AssertionCount(0))
    } else {
        reduced.parse().map_err(|e| malformed(&e))
    }
}

/// saml-profiles §4.1.4.3: the response is for our ACS and answers this
/// browser's request (an unsolicited one is refused), and it succeeded.
fn check_response(raw: &Shape, checks: &Checks<'_>) -> Result<(), SamlError> {
    if raw.destination.as_deref() != Some(checks.upstream.acs_url) {
        return Err(SamlError::Destination { got: raw.destination.clone() });
    }
    if raw.in_response_to.as_deref() != Some(checks.request_id) {
        return Err(SamlError::InResponseTo { got: raw.in_response_to.clone() });
    }
    if raw.status.as_deref() != Some(STATUS_SUCCESS) {
        return Err(SamlError::Status(raw.status.clone().unwrap_or_default()));
    }
    Ok(())
}

/// saml-core §2.5 (conditions), saml-profiles §4.1.4.2 (bearer subject
/// confirmation), then the person.
fn check_assertion(
    assertion: &Assertion,
    metadata: &IdpMetadata,
    checks: &Checks<'_>,
) -> Result<Verified, SamlError> {
    let now = checks.now;
    if assertion.issuer.value.as_deref() != Some(metadata.entity_id.as_str()) {
        return Err(SamlError::Issuer {
            expected: metadata.entity_id.clone(),
            got: assertion.issuer.value.clone(),
        });
    }
    let conditions = assertion.conditions.as_ref().ok_or(SamlError::Audience { got: Vec::new() })?;
    if let Some(not_before) = conditions.not_before.as_ref().map(jiff_time)
        && now + LEEWAY < not_before
    {
        return Err(SamlError::NotYetValid(not_before));
    }
    let mut expires = now;
    if let Some(not_on_or_after) = conditions.not_on_or_after.as_ref().map(jiff_time) {
        if now - LEEWAY >= not_on_or_after {
            return Err(SamlError::Expired(not_on_or_after));
        }
        expires = expires.max(not_on_or_after);
    }
    // Every AudienceRestriction must name us (saml-core §2.5.1.4); at least one is required.
    let restrictions = conditions.audience_restrictions.as_deref().unwrap_or_default();
    let sp = checks.upstream.sp_entity_id;
    if restrictions.is_empty() || !restrictions.iter().all(|r| r.audience.iter().any(|a| a.as_str() == sp)) {
        let got = restrictions.iter().flat_map(|r| r.audience.iter().cloned()).collect();
        return Err(SamlError::Audience { got });
    }

    let subject = assertion.subject.as_ref().ok_or(SamlError::NoSubject)?;
    let confirmed =
        bearer_confirmation(subject.subject_confirmations.as_deref().unwrap_or_default(), checks)?;
    expires = expires.max(confirmed);
    let name_id =
        subject.name_id.as_ref().filter(|n| !n.value.trim().is_empty()).ok_or(SamlError::NoSubject)?;

    let mapping = checks.upstream.attributes;
    let values = |name: &str| -> Option<Vec<String>> {
        let mut found = None;
        for attribute in assertion.attribute_statements.iter().flatten().flat_map(|s| s.attributes.iter()) {
            if attribute.name.as_deref() == Some(name) || attribute.friendly_name.as_deref() == Some(name) {
                let list: &mut Vec<String> = found.get_or_insert_with(Vec::new);
                list.extend(attribute.values.iter().filter_map(|v| v.value.clone()));
            }
        }
        found
    };
    let first = |name: &str| values(name).and_then(|v| v.into_iter().find(|s| !s.trim().is_empty()));
    // An emailAddress NameID is the email when no attribute says it.
    let email = first(&mapping.email)
        .or_else(|| (name_id.format.as_deref() == Some(EMAIL_NAME_ID)).then(|| name_id.value.clone()));
    let upstream_amr = assertion
        .authn_statements
        .iter()
        .flatten()
        .filter_map(|s| s.authn_context.as_ref()?.value.as_ref()?.value.as_deref())
        .flat_map(|class| amr_of_class(class).iter().map(|amr| (*amr).to_owned()))
        .collect();
    Ok(Verified {
        assertion_id: assertion.id.clone(),
        expires: expires + LEEWAY,
        identity: UpstreamIdentity {
            subject: name_id.value.clone(),
            user_name: email.clone(),
            email,
            display_name: first(&mapping.name),
            groups: values(&mapping.groups),
            upstream_amr,
        },
    })
}

/// A bearer confirmation for our ACS, answering this browser's request, not
/// expired: when it ends.
fn bearer_confirmation(
    confirmations: &[samael::schema::SubjectConfirmation],
    checks: &Checks<'_>,
) -> Result<Timestamp, SamlError> {
    let mut first_error = None;
    for confirmation in confirmations.iter().filter(|c| c.method.as_deref() == Some(BEARER)) {
        let Some(data) = &confirmation.subject_confirmation_data else { continue };
        let error = if data.recipient.as_deref() != Some(checks.upstream.acs_url) {
            SamlError::Recipient { got: data.recipient.clone() }
        } else if data.in_response_to.as_deref() != Some(checks.request_id) {
            SamlError::InResponseTo { got: data.in_response_to.clone() }
        } else {
            match (data.not_before.as_ref().map(jiff_time), data.not_on_or_after.as_ref().map(jiff_time)) {
                (Some(not_before), _) if checks.now + LEEWAY < not_before => {
                    SamlError::NotYetValid(not_before)
                }
                (_, Some(until)) if checks.now - LEEWAY < until => return Ok(until),
                (_, Some(until)) => SamlError::Expired(until),
                (_, None) => SamlError::Malformed("a bearer confirmation without NotOnOrAfter".into()),
            }
        };
        first_error.get_or_insert(error);
    }
    Err(first_error.unwrap_or(SamlError::Recipient { got: None }))
}

/// RFC 8176 `amr` values for a SAML AuthnContextClassRef (saml-authn-context;
/// the multi-factor classes of Microsoft Entra ID and REFEDS). Classes not
/// listed say nothing we rely on.
pub fn amr_of_class(class: &str) -> &'static [&'static str] {
    const AC: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:";
    match class.strip_prefix(AC).unwrap_or(class) {
        "Password" | "PasswordProtectedTransport" | "SecureRemotePassword" => &["pwd"],
        "TimeSyncToken" => &["otp"],
        "X509" | "SoftwarePKI" | "XMLDSig" => &["swk"],
        "Smartcard" | "SmartcardPKI" => &["sc", "hwk"],
        "MobileTwoFactorContract"
        | "MobileTwoFactorUnregistered"
        | "MultiFactor"
        | "http://schemas.microsoft.com/claims/multipleauthn"
        | "https://refeds.org/profile/mfa" => &["mfa"],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_factor_classes_say_mfa_and_passwords_say_pwd() {
        assert_eq!(
            amr_of_class("urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"),
            ["pwd"]
        );
        assert_eq!(amr_of_class("http://schemas.microsoft.com/claims/multipleauthn"), ["mfa"]);
        assert_eq!(amr_of_class("https://refeds.org/profile/mfa"), ["mfa"]);
        assert_eq!(amr_of_class("urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"), [] as [&str; 0]);
    }
}
