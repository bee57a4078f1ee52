//! SAML 2.0 metadata (saml-metadata-2.0-os): the IdP's, read for its entity
//! ID, its single sign-on endpoint and its signing certificates; and ours,
//! written for the IdP's administrators to register us with.

use base64::Engine as _;
use jiff::Timestamp;
use samael::metadata::{
    EntityDescriptor, HTTP_POST_BINDING, HTTP_REDIRECT_BINDING, IndexedEndpoint, NameIdFormat,
    SpSsoDescriptor,
};
use samael::traits::ToXml as _;

use super::SamlError;
use super::xml::refuse_declarations;

/// A signing certificate of the IdP and until when it is valid.
#[derive(Clone, Debug)]
pub struct SigningCertificate {
    pub der: Vec<u8>,
    pub not_after: Timestamp,
}

/// What the IdP's metadata tells a service provider.
#[derive(Clone, Debug)]
pub struct IdpMetadata {
    pub entity_id: String,
    /// The `SingleSignOnService` of the HTTP-Redirect binding.
    pub sso_redirect_url: String,
    pub certificates: Vec<SigningCertificate>,
}

impl IdpMetadata {
    /// Reads `xml` (no DOCTYPE or ENTITY declarations), which must describe `entity_id`.
    pub fn parse(xml: &[u8], entity_id: &str) -> Result<Self, SamlError> {
        refuse_declarations(xml)?;
        let text = std::str::from_utf8(xml).map_err(|_| SamlError::Metadata("not UTF-8".into()))?;
        let descriptor: EntityDescriptor =
            text.parse().map_err(|e| SamlError::Metadata(format!("not SAML metadata: {e}")))?;
        if descriptor.entity_id.as_deref() != Some(entity_id) {
            return Err(SamlError::MetadataMismatch {
                expected: entity_id.to_owned(),
                got: descriptor.entity_id.clone(),
            });
        }
        let idp = descriptor
            .idp_sso_descriptors
            .as_ref()
            .and_then(|all| all.first())
            .ok_or_else(|| SamlError::Metadata("no IDPSSODescriptor".into()))?;
        let sso_redirect_url = idp
            .single_sign_on_services
            .iter()
            .find(|service| service.binding == HTTP_REDIRECT_BINDING)
            .map(|service| service.location.clone())
            .ok_or_else(|| {
                SamlError::Metadata("no SingleSignOnService of the HTTP-Redirect binding".into())
            })?;
        // Keys for signing, or for any use (saml-metadata §2.4.1.1).
        let certificates: Vec<SigningCertificate> = idp
            .key_descriptors
            .iter()
            .filter(|key| matches!(key.key_use.as_deref(), None | Some("") | Some("signing")))
            .filter_map(|key| key.key_info.x509_data.as_ref())
            .flat_map(|data| data.certificates.iter())
            .filter_map(|text| {
                let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                let der = base64::engine::general_purpose::STANDARD.decode(compact).ok()?;
                let not_after = certificate_not_after(&der)?;
                Some(SigningCertificate { der, not_after })
            })
            .collect();
        if certificates.is_empty() {
            return Err(SamlError::Metadata("no usable signing certificate".into()));
        }
        Ok(Self { entity_id: entity_id.to_owned(), sso_redirect_url, certificates })
    }
}

/// When an X.509 certificate (DER) expires.
pub fn certificate_not_after(der: &[u8]) -> Option<Timestamp> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    Timestamp::from_second(certificate.validity().not_after.timestamp()).ok()
}

/// Our metadata as the service provider `entity_id` (which is also the URL
/// it is served at): the ACS of the HTTP-POST binding, signed assertions
/// wanted, unsigned requests, the NameID formats we take. No validity
/// period or cache duration, so that it is the same document every time.
pub fn service_provider_metadata(entity_id: &str, acs_url: &str) -> Result<String, SamlError> {
    let descriptor = EntityDescriptor {
        entity_id: Some(entity_id.to_owned()),
        sp_sso_descriptors: Some(vec![SpSsoDescriptor {
            protocol_support_enumeration: Some("urn:oasis:names:tc:SAML:2.0:protocol".to_owned()),
            authn_requests_signed: Some(false),
            want_assertions_signed: Some(true),
            name_id_formats: Some(vec![
                NameIdFormat::EmailAddressNameIDFormat.value().to_owned(),
                NameIdFormat::PersistentNameIDFormat.value().to_owned(),
                NameIdFormat::UnspecifiedNameIDFormat.value().to_owned(),
            ]),
            assertion_consumer_services: vec![IndexedEndpoint {
                binding: HTTP_POST_BINDING.to_owned(),
                location: acs_url.to_owned(),
                response_location: None,
                index: 0,
                is_default: Some(true),
            }],
            ..SpSsoDescriptor::default()
        }]),
        ..EntityDescriptor::default()
    };
    descriptor.to_string().map_err(|e| SamlError::Internal(format!("writing our metadata: {e}")))
}
