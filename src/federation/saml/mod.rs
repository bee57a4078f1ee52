//! The SAML 2.0 service provider for upstream IdPs, on `samael`: IdP
//! metadata (from `metadataUrl`, cached and refreshed, or inline), the
//! AuthnRequest of SP-initiated sign-in (HTTP-Redirect binding), and the
//! verification of the IdP's response (HTTP-POST binding).
//!
//! ```text
//!  authn_request_url(request ID, RelayState) ── metadata ─► {SingleSignOnService}?SAMLRequest&RelayState
//!  verify(SAMLResponse, request ID)
//!    ── base64, size cap, DOCTYPE/ENTITY refused (before any parser sees it)
//!    ── raw shape scanned (quick-xml): root, assertions, signatures
//!    ── signatures verified by libxmlsec1 against the metadata's unexpired certificates
//!       (allowed algorithms only), the document reduced to what they cover (samael)
//!       [a failure refetches metadataUrl once: a rolled-over certificate]
//!    ── exactly one assertion, and it is the signed one (XSW)
//!    ── Destination, InResponseTo, Status; Issuer, Audience, bearer Recipient/InResponseTo,
//!       NotBefore/NotOnOrAfter ± LEEWAY
//!    ── NameID + attributeMapping ─► UpstreamIdentity, AuthnContextClassRef ─► amr
//! ```
//!
//! The replay cache of assertion IDs is the store's (shared by replicas);
//! the caller remembers each accepted ID until [`Verified::expires`].

mod metadata;
mod response;
mod xml;

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use samael::traits::ToXml as _;

pub use metadata::{IdpMetadata, SigningCertificate, certificate_not_after, service_provider_metadata};
pub use response::{Verified, amr_of_class};

use super::http::{HttpError, UpstreamHttp, check_upstream_url};
use crate::api::SamlAttributeMapping;

/// Clock difference tolerated on NotBefore and NotOnOrAfter.
pub const LEEWAY: SignedDuration = SignedDuration::from_secs(60);
/// Metadata from a URL is fetched again after this long…
const METADATA_REFRESH: SignedDuration = SignedDuration::from_hours(1);
/// …or when a signature does not verify with it, at most this often.
const METADATA_REFETCH_MIN: SignedDuration = SignedDuration::from_secs(1);
/// A SAMLResponse (base64) larger than this is refused unread.
const MAX_RESPONSE_BASE64: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    #[error("metadata {url} could not be fetched")]
    MetadataUnavailable { url: String, source: HttpError },
    #[error("the IdP metadata is not usable: {0}")]
    Metadata(String),
    #[error("the IdP metadata describes {got:?}, not {expected:?}")]
    MetadataMismatch { expected: String, got: Option<String> },
    #[error("neither metadata nor metadataUrl is given")]
    NoMetadata,
    #[error("the XML holds a DOCTYPE or ENTITY declaration")]
    Declaration,
    #[error("the response is malformed: {0}")]
    Malformed(String),
    #[error("the response is not signed")]
    Unsigned,
    #[error("no signature verifies with the IdP's certificates")]
    SignatureInvalid,
    #[error("the response is signed with a certificate of the metadata that has expired")]
    CertificateExpired,
    #[error("the response holds {raw} assertions; its signatures cover {signed} (signature wrapping)")]
    Wrapping { raw: usize, signed: usize },
    #[error("the response holds {0} assertions, not exactly one")]
    AssertionCount(usize),
    #[error("the response holds an encrypted assertion, which we do not take")]
    Encrypted,
    #[error("the response is for {got:?}, not our ACS")]
    Destination { got: Option<String> },
    #[error("the response answers request {got:?}, not this browser's pending one")]
    InResponseTo { got: Option<String> },
    #[error("the IdP did not sign the user in: {0}")]
    Status(String),
    #[error("the assertion's issuer is {got:?}, not {expected:?}")]
    Issuer { expected: String, got: Option<String> },
    #[error("the assertion is not for our entity ID (audiences {got:?})")]
    Audience { got: Vec<String> },
    #[error("the assertion is for recipient {got:?}, not our ACS")]
    Recipient { got: Option<String> },
    #[error("the assertion is not valid before {0}")]
    NotYetValid(Timestamp),
    #[error("the assertion expired at {0}")]
    Expired(Timestamp),
    #[error("the assertion names no one (no NameID)")]
    NoSubject,
    #[error("{0}")]
    Internal(String),
}

impl SamlError {
    /// A short reason for counters, audit lines and status conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            SamlError::MetadataUnavailable { .. } => "MetadataUnavailable",
            SamlError::Metadata(_) | SamlError::NoMetadata => "MetadataInvalid",
            SamlError::MetadataMismatch { .. } => "MetadataMismatch",
            SamlError::Declaration => "XmlDeclarationRefused",
            SamlError::Malformed(_) => "Malformed",
            SamlError::Unsigned => "Unsigned",
            SamlError::SignatureInvalid => "SignatureInvalid",
            SamlError::CertificateExpired => "CertificateExpired",
            SamlError::Wrapping { .. } => "SignatureWrapping",
            SamlError::AssertionCount(_) => "AssertionCount",
            SamlError::Encrypted => "EncryptedAssertion",
            SamlError::Destination { .. } => "DestinationMismatch",
            SamlError::InResponseTo { .. } => "InResponseToMismatch",
            SamlError::Status(_) => "UpstreamRefused",
            SamlError::Issuer { .. } => "IssuerMismatch",
            SamlError::Audience { .. } => "AudienceMismatch",
            SamlError::Recipient { .. } => "RecipientMismatch",
            SamlError::NotYetValid(_) => "NotYetValid",
            SamlError::Expired(_) => "Expired",
            SamlError::NoSubject => "ClaimMissing",
            SamlError::Internal(_) => "ServerError",
        }
    }

    /// Whether the IdP cannot be used at all (not the answer's fault).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            SamlError::MetadataUnavailable { .. }
                | SamlError::Metadata(_)
                | SamlError::MetadataMismatch { .. }
                | SamlError::NoMetadata
                | SamlError::Internal(_)
        )
    }
}

/// One IdP as a sign-in needs it, and who we are to it.
#[derive(Clone, Copy, Debug)]
pub struct SamlUpstream<'a> {
    pub entity_id: &'a str,
    pub metadata_url: Option<&'a str>,
    pub metadata: Option<&'a str>,
    pub attributes: &'a SamlAttributeMapping,
    /// Our entity ID at this IdP (the URL of our metadata).
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
}

struct Fetched {
    metadata: Arc<IdpMetadata>,
    fetched_at: Timestamp,
}

/// Inline metadata documents parsed and kept (a few per IdP at most: one
/// per edit of its `metadata`); past this many the memory starts over.
const INLINE_KEPT: usize = 64;

/// The service provider for every SAML IdP of a process; metadata fetched
/// from a URL is cached per URL, inline metadata once parsed per text.
pub struct SamlServiceProvider {
    http: UpstreamHttp,
    cache: Mutex<HashMap<String, Arc<Fetched>>>,
    inline: Mutex<HashMap<String, Arc<IdpMetadata>>>,
}

impl std::fmt::Debug for SamlServiceProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamlServiceProvider").finish_non_exhaustive()
    }
}

impl SamlServiceProvider {
    pub fn new(http: UpstreamHttp) -> Self {
        Self { http, cache: Mutex::new(HashMap::new()), inline: Mutex::new(HashMap::new()) }
    }

    /// The IdP's metadata: inline, or from its URL (cached while fresh).
    async fn metadata(
        &self,
        upstream: &SamlUpstream<'_>,
        now: Timestamp,
    ) -> Result<Arc<IdpMetadata>, SamlError> {
        match (upstream.metadata, upstream.metadata_url) {
            (Some(inline), _) => self.inline_metadata(inline, upstream.entity_id),
            (None, Some(url)) => {
                let cached = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(url).cloned();
                if let Some(found) = cached.filter(|f| now.duration_since(f.fetched_at) < METADATA_REFRESH) {
                    return Ok(found.metadata.clone());
                }
                self.fetch(url, upstream.entity_id, now).await
            }
            (None, None) => Err(SamlError::NoMetadata),
        }
    }

    /// Inline metadata, parsed once per text (and entity ID).
    fn inline_metadata(&self, inline: &str, entity_id: &str) -> Result<Arc<IdpMetadata>, SamlError> {
        let key = format!("{entity_id}\n{inline}");
        if let Some(parsed) = self.inline.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(parsed.clone());
        }
        let parsed = Arc::new(IdpMetadata::parse(inline.as_bytes(), entity_id)?);
        let mut kept = self.inline.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= INLINE_KEPT {
            kept.clear();
        }
        kept.insert(key, parsed.clone());
        Ok(parsed)
    }

    async fn fetch(&self, url: &str, entity_id: &str, now: Timestamp) -> Result<Arc<IdpMetadata>, SamlError> {
        let unavailable = |source| SamlError::MetadataUnavailable { url: url.to_owned(), source };
        check_upstream_url(url).map_err(unavailable)?;
        let body = self.http.get(url).await.map_err(unavailable)?;
        let metadata = Arc::new(IdpMetadata::parse(&body, entity_id)?);
        let fetched = Arc::new(Fetched { metadata: metadata.clone(), fetched_at: now });
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(url.to_owned(), fetched);
        Ok(metadata)
    }

    /// The metadata fetched again, unless it was fetched very recently (a
    /// signature that does not verify may mean the IdP rolled its key over).
    async fn refetch(&self, upstream: &SamlUpstream<'_>, now: Timestamp) -> Option<Arc<IdpMetadata>> {
        let url = upstream.metadata_url.filter(|_| upstream.metadata.is_none())?;
        let last = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(url).map(|f| f.fetched_at);
        if last.is_some_and(|at| now.duration_since(at) < METADATA_REFETCH_MIN) {
            return None;
        }
        self.fetch(url, upstream.entity_id, now).await.ok()
    }

    /// Where to send the browser: the IdP's single sign-on service with an
    /// AuthnRequest of ID `request_id` (HTTP-Redirect binding, saml-bindings
    /// §3.4: DEFLATE, base64, URL-encoded) and `relay_state`.
    pub async fn authn_request_url(
        &self,
        upstream: &SamlUpstream<'_>,
        request_id: &str,
        relay_state: &str,
        now: Timestamp,
    ) -> Result<String, SamlError> {
        let metadata = self.metadata(upstream, now).await?;
        let request = samael::schema::AuthnRequest {
            id: request_id.to_owned(),
            version: "2.0".to_owned(),
            issue_instant: chrono_time(now),
            destination: Some(metadata.sso_redirect_url.clone()),
            assertion_consumer_service_url: Some(upstream.acs_url.to_owned()),
            protocol_binding: Some(samael::metadata::HTTP_POST_BINDING.to_owned()),
            issuer: Some(samael::schema::Issuer {
                format: Some("urn:oasis:names:tc:SAML:2.0:nameid-format:entity".to_owned()),
                value: Some(upstream.sp_entity_id.to_owned()),
                ..samael::schema::Issuer::default()
            }),
            ..samael::schema::AuthnRequest::default()
        };
        let xml =
            request.to_string().map_err(|e| SamlError::Internal(format!("writing an AuthnRequest: {e}")))?;
        let mut deflated = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflated
            .write_all(xml.as_bytes())
            .and_then(|()| deflated.try_finish())
            .map_err(|e| SamlError::Internal(format!("deflating an AuthnRequest: {e}")))?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(deflated.get_ref());
        let mut url = url::Url::parse(&metadata.sso_redirect_url)
            .map_err(|_| SamlError::Metadata(format!("{:?} is not a URL", metadata.sso_redirect_url)))?;
        url.query_pairs_mut().append_pair("SAMLRequest", &encoded).append_pair("RelayState", relay_state);
        check_upstream_url(url.as_str())
            .map_err(|e| SamlError::Metadata(crate::error_chain::error_chain(&e)))?;
        Ok(url.to_string())
    }

    /// Verifies the IdP's `SAMLResponse` (base64, as posted) as the answer to
    /// the AuthnRequest `request_id`, at `now`.
    pub async fn verify(
        &self,
        upstream: &SamlUpstream<'_>,
        saml_response: &str,
        request_id: &str,
        now: Timestamp,
    ) -> Result<Verified, SamlError> {
        if saml_response.len() > MAX_RESPONSE_BASE64 {
            return Err(SamlError::Malformed("larger than we read".into()));
        }
        let compact: String = saml_response.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| SamlError::Malformed("SAMLResponse is not base64".into()))?;
        xml::refuse_declarations(&bytes)?;
        let text = String::from_utf8(bytes).map_err(|_| SamlError::Malformed("not UTF-8".into()))?;
        let metadata = self.metadata(upstream, now).await?;
        let checks = response::Checks { upstream, request_id, now };
        let first = response::verify(&text, &metadata, &checks);
        if matches!(first, Err(SamlError::SignatureInvalid | SamlError::CertificateExpired))
            && let Some(fresh) = self.refetch(upstream, now).await
        {
            return response::verify(&text, &fresh, &checks);
        }
        first
    }
}

pub(crate) fn chrono_time(at: Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(at.as_second(), at.subsec_nanosecond().max(0) as u32).unwrap_or_default()
}

pub(crate) fn jiff_time(at: &chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp::from_second(at.timestamp()).unwrap_or(Timestamp::MIN)
}
