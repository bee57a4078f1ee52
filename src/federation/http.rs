//! HTTP to upstream identity providers: one client (hyper, so that TLS is
//! this client's own and not every reqwest client's) with timeouts, no
//! redirects followed, a size cap on answers, TLS by rustls (ring) over the
//! system's roots plus an optional private CA bundle, and `http://` only to
//! loopback hosts (a developer's local IdP). Every URL an upstream hands us
//! (token endpoint, `jwks_uri`, metadata) goes through the same check.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Connecting to an upstream may take this long…
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// …and a whole exchange this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Discovery documents, key sets, metadata and token answers are small.
const MAX_BODY: usize = 1024 * 1024;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url:?} is not an upstream URL we call: {reason}")]
    UrlRefused { url: String, reason: &'static str },
    #[error("the CA bundle holds no certificate")]
    EmptyCaBundle,
    #[error("the CA bundle is not PEM")]
    BadCaBundle(#[source] rustls_pki_types::pem::Error),
    #[error("a CA bundle certificate is not usable")]
    BadCaCertificate(#[source] rustls::Error),
    #[error("calling {url}")]
    Call { url: String, source: hyper_util::client::legacy::Error },
    #[error("calling {url}: no answer within {REQUEST_TIMEOUT:?}")]
    Timeout { url: String },
    #[error("reading the answer of {url}")]
    Body { url: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("malformed request to an upstream")]
    Request(#[source] http::Error),
}

/// Whether `url` may be called: `https://`, or `http://` on a loopback host
/// (`127.0.0.0/8`, `[::1]`, `localhost`).
pub fn check_upstream_url(url: &str) -> Result<(), HttpError> {
    let refused = |reason| HttpError::UrlRefused { url: url.to_owned(), reason };
    let parsed = url::Url::parse(url).map_err(|_| refused("not a URL"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&parsed) => Ok(()),
        "http" => Err(refused("plain http is allowed to loopback addresses only")),
        _ => Err(refused("only https (or http on loopback) is allowed")),
    }
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// The client that talks to upstreams; cheap to clone.
#[derive(Clone)]
pub struct UpstreamHttp {
    client: Client<Connector, Full<Bytes>>,
    max_body: usize,
}

impl std::fmt::Debug for UpstreamHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamHttp").finish_non_exhaustive()
    }
}

impl UpstreamHttp {
    /// With the system's trust roots, plus the certificates of `ca_bundle`
    /// (PEM) when given.
    pub fn new(ca_bundle: Option<&[u8]>) -> Result<Self, HttpError> {
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable system certificates are skipped: a private CA may be all we need.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(pem) = ca_bundle {
            use rustls_pki_types::pem::PemObject as _;
            let mut added = 0;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
                roots.add(cert.map_err(HttpError::BadCaBundle)?).map_err(HttpError::BadCaCertificate)?;
                added += 1;
            }
            if added == 0 {
                return Err(HttpError::EmptyCaBundle);
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(HttpError::BadCaCertificate)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        // Redirects are never followed: this client does not know how.
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { client, max_body: MAX_BODY })
    }

    /// GETs `url` and returns its body when the answer is 200.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, HttpError> {
        let request = http::Request::get(url).body(Vec::new()).map_err(HttpError::Request)?;
        let response = self.execute(request).await?;
        if response.status() != http::StatusCode::OK {
            return Err(HttpError::Status { url: url.to_owned(), status: response.status().as_u16() });
        }
        Ok(response.into_body())
    }

    /// The same client, accepting answers of up to `bytes` (an audit export
    /// for `kubectl portcullis` is larger than anything an upstream sends).
    pub fn with_max_body(self, bytes: usize) -> Self {
        Self { max_body: bytes, ..self }
    }

    /// Sends `request` and returns the whole answer, whatever its status.
    pub async fn execute(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        let url = request.uri().to_string();
        check_upstream_url(&url)?;
        let (mut parts, body) = request.into_parts();
        parts.headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!("portcullis/", env!("CARGO_PKG_VERSION"))),
        );
        let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|source| HttpError::Call { url: url.clone(), source })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, self.max_body)
                .collect()
                .await
                .map_err(|source| HttpError::Body { url: url.clone(), source })?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body.to_vec()))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| HttpError::Timeout { url: url.clone() })?
    }
}

/// The `openidconnect` crate calls upstreams through this.
impl<'c> openidconnect::AsyncHttpClient<'c> for UpstreamHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "https://login.example.com",
            "http://127.0.0.1:9000/realms/acme",
            "http://127.8.9.1/x",
            "http://[::1]:8080",
            "http://localhost:3000",
        ] {
            assert!(check_upstream_url(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://login.example.com",
            "http://127.0.0.1.evil.example/",
            "http://localhost.evil.example/",
            "ftp://127.0.0.1/",
            "http://10.0.0.1/",
            "javascript:alert(1)",
            "not a url",
        ] {
            assert!(check_upstream_url(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_ca_bundle_without_certificates_is_refused() {
        assert!(matches!(UpstreamHttp::new(Some(b"nothing here")), Err(HttpError::EmptyCaBundle)));
    }
}
