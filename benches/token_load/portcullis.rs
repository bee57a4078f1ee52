//! Our token service for `token_load`, in process: the `examples/acme`
//! tenant in a SQLite file (WAL) in a temporary directory, or in a
//! PostgreSQL database served by several replicas (each its own state and
//! connection pool, as separate pods would have), an ES256 key in a keys
//! directory, a user, and one confidential client `bench` configured like
//! the oidc-provider peer's, served by `portcullis::token::service::router`
//! on 127.0.0.1:0 on the current runtime.
//!
//! Refresh tokens come the way a browser sign-in leaves them: an
//! authorization code issued through `grants::issue_authorization_code`
//! (what the login pages call), redeemed at the token endpoint with PKCE.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use portcullis::api::{OAuthClient, OAuthClientSpec, RoleAssignment, RoleAssignmentSpec};
use portcullis::manifests::{self, Resource};
use portcullis::resources::ToRecord as _;
use portcullis::secret::SecretString;
use portcullis::store::{DesiredStateStore as _, NewUser, ObjectMeta, Store, UserSource, UserStore as _};
use portcullis::token::keys::{Algorithm, KeyMeta, SigningKey};
use portcullis::token::service::grants::{self, CodeGrant};
use portcullis::token::service::keys::{KeyDirectory, write_key_dir};
use portcullis::token::service::login::LoginState;
use portcullis::token::service::{SystemClock, TokenServiceConfig, TokenServiceState, router};
use tokio::net::TcpStream;

use crate::generator::Target;

const ORGANIZATION: &str = "acme";
const NAMESPACE: &str = "acme";
const CLIENT_ID: &str = "bench";
const CLIENT_SECRET: &str = "bench-client-secret-0123456789abcdef";
const REDIRECT_URI: &str = "https://app.bench.example/callback";
const USER_NAME: &str = "alice.martin@acme.com";
/// What the refresh workers' sign-ins granted (an ID token comes with every refresh, as with the peer).
const REFRESH_SCOPE: &str = "openid offline_access";

/// Where the tenant lives.
pub enum Backing {
    /// A SQLite file in the temporary directory, one server.
    Sqlite,
    /// A PostgreSQL database (its URL), served by this many replicas.
    Postgres { url: String, replicas: usize },
}

pub struct Portcullis {
    pub addrs: Vec<SocketAddr>,
    pub authorization: String,
    pub client_credentials_form: Bytes,
    pub refresh_tokens: Vec<String>,
    pub refresh_extra_form: String,
    /// Holds the SQLite file (if any) and the keys directory.
    _dir: tempfile::TempDir,
}

impl Portcullis {
    pub fn target(&self) -> Target {
        Target {
            addrs: self.addrs.clone(),
            path: format!("/o/{ORGANIZATION}/token"),
            authorization: Some(self.authorization.clone()),
        }
    }

    /// Seeds the store and keys, serves the router, and signs `refresh_tokens` users in.
    pub async fn start(backing: Backing, refresh_tokens: usize) -> Result<Portcullis, String> {
        let dir =
            tempfile::Builder::new().prefix("token-load-").tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let (url, replicas) = match backing {
            Backing::Sqlite => (format!("sqlite://{}?mode=rwc", dir.path().join("store.db").display()), 1),
            Backing::Postgres { url, replicas } => (url, replicas),
        };
        let store = Store::connect(&url).await.map_err(|e| format!("store {url}: {e}"))?;
        seed(&store).await?;
        let user = store
            .create_user(&NewUser::new(NAMESPACE, USER_NAME, UserSource::Local))
            .await
            .map_err(|e| format!("create user: {e}"))?;

        let keys_dir = dir.path().join("keys");
        let now = jiff::Timestamp::now();
        let generated =
            SigningKey::generate(Algorithm::ES256, now, &mut rand::rng()).map_err(|e| format!("key: {e}"))?;
        let meta = KeyMeta { activated_at: Some(now), ..generated.meta().clone() };
        let key = SigningKey::from_pkcs8_der(meta, generated.pkcs8_der()).map_err(|e| format!("key: {e}"))?;
        write_key_dir(&keys_dir, ORGANIZATION, &[&key]).map_err(|e| format!("keys dir: {e}"))?;

        let mut states = Vec::with_capacity(replicas);
        let mut addrs = Vec::with_capacity(replicas);
        for replica in 0..replicas {
            let store = match replica {
                0 => store.clone(),
                _ => Store::connect(&url).await.map_err(|e| format!("store {url}: {e}"))?,
            };
            let state = TokenServiceState::new(TokenServiceConfig {
                store,
                public_base_url: "http://127.0.0.1".to_owned(),
                keys: KeyDirectory::new(&keys_dir).into(),
                login: LoginState::default(),
                clock: Arc::new(SystemClock),
            })
            .await
            .map_err(|e| format!("token service state: {e}"))?;
            let listener =
                tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("bind: {e}"))?;
            addrs.push(listener.local_addr().map_err(|e| format!("bound address: {e}"))?);
            let app = router(state.clone());
            tokio::spawn(async move { axum::serve(listener, app).await });
            states.push(state);
        }

        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
        );
        let mut ours = Portcullis {
            addrs,
            authorization,
            client_credentials_form: Bytes::from_static(b"grant_type=client_credentials"),
            refresh_tokens: Vec::with_capacity(refresh_tokens),
            refresh_extra_form: String::new(),
            _dir: dir,
        };
        for n in 0..refresh_tokens {
            let token = ours.sign_in(&states[0], &user.id, n).await?;
            ours.refresh_tokens.push(token);
        }
        Ok(ours)
    }

    /// A code for `user_id` as the login pages would issue it, redeemed with
    /// its PKCE verifier (RFC 7636 §4.5); returns the first refresh token.
    async fn sign_in(&self, state: &TokenServiceState, user_id: &str, n: usize) -> Result<String, String> {
        let verifier = format!("bench-verifier-{n:04}-0123456789abcdefghijklmnopqrstuvwxyz");
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
        let code = grants::issue_authorization_code(
            state,
            CodeGrant {
                organization: ORGANIZATION.to_owned(),
                client_id: CLIENT_ID.to_owned(),
                user_id: user_id.to_owned(),
                redirect_uri: REDIRECT_URI.to_owned(),
                scope: REFRESH_SCOPE.to_owned(),
                nonce: None,
                code_challenge: Some(challenge),
                auth_time_ms: state.now().as_millisecond(),
                // As a sign-in with a second factor records it: the example's
                // MFA policy asks one of this user's roles, and a password-only
                // sign-in's refresh tokens are refused.
                amr: ["pwd", "otp", "mfa"].map(str::to_owned).to_vec(),
                session_id: None,
            },
        )
        .await
        .map_err(|e| format!("issue an authorization code: {e}"))?;
        let form = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={verifier}",
            crate::form_encode(&code),
            crate::form_encode(REDIRECT_URI),
        );
        let (status, body) = self.post_form(form).await?;
        if status != StatusCode::OK {
            return Err(format!("code exchange: HTTP {status}: {}", String::from_utf8_lossy(&body)));
        }
        let answer: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("code exchange: {e}"))?;
        answer["refresh_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("code exchange gave no refresh token: {answer}"))
    }

    async fn post_form(&self, form: String) -> Result<(StatusCode, Bytes), String> {
        let stream = TcpStream::connect(self.addrs[0]).await.map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("/o/{ORGANIZATION}/token"))
            .header(HOST, self.addrs[0].to_string())
            .header(AUTHORIZATION, &self.authorization)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
        Ok((status, body))
    }
}

/// The `examples/acme` tenant, plus the client `bench` (all three grants,
/// client_secret_basic) holding the `integrations` role like the CI client.
async fn seed(store: &Store) -> Result<(), String> {
    // This package is `benches/`; the examples are the repository's.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme");
    let set = manifests::read_dir(&examples).map_err(|e| format!("read {}: {e}", examples.display()))?;
    if let Some(problem) = set.problems.first() {
        return Err(format!("examples/acme: {problem}"));
    }
    let client_spec: OAuthClientSpec = serde_json::from_value(serde_json::json!({
        "displayName": "Load generator",
        "type": "Confidential",
        "grantTypes": ["client_credentials", "authorization_code", "refresh_token"],
        "redirectUris": [REDIRECT_URI],
        "requirePkce": true,
        "audiences": ["https://api.bench.example"],
        "tokenClaims": ["roles"],
    }))
    .map_err(|e| format!("bench client spec: {e}"))?;
    let assignment_spec: RoleAssignmentSpec = serde_json::from_value(serde_json::json!({
        "principal": { "kind": "Client", "name": CLIENT_ID },
        "role": "integrations",
        "scope": "Organization",
    }))
    .map_err(|e| format!("bench assignment spec: {e}"))?;
    let mut resources: Vec<Resource> = set.manifests.into_iter().map(|m| m.resource).collect();
    let mut client = OAuthClient::new(CLIENT_ID, client_spec);
    client.metadata.namespace = Some(NAMESPACE.to_owned());
    resources.push(Resource::OAuthClient(client));
    let mut assignment = RoleAssignment::new("bench-integrations", assignment_spec);
    assignment.metadata.namespace = Some(NAMESPACE.to_owned());
    resources.push(Resource::RoleAssignment(assignment));

    for (n, resource) in resources.iter().enumerate() {
        let meta = |metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            ObjectMeta::new(
                format!("bench-uid-{n}"),
                metadata.namespace.clone().unwrap_or_else(|| NAMESPACE.to_owned()),
                metadata.name.clone().unwrap_or_default(),
                1,
            )
        };
        let applied = match resource {
            Resource::Organization(o) => store.apply(&o.to_record(meta(&o.metadata))).await,
            Resource::Role(o) => store.apply(&o.to_record(meta(&o.metadata))).await,
            Resource::RoleAssignment(o) => store.apply(&o.to_record(meta(&o.metadata))).await,
            Resource::IdentityProvider(o) => store.apply(&o.to_record(meta(&o.metadata))).await,
            Resource::OAuthClient(o) => store.apply(&o.to_record(meta(&o.metadata))).await,
        };
        applied.map_err(|e| format!("seed the store: {e}"))?;
    }
    let hash = SecretString::new(portcullis::secret::SecretHash::of(CLIENT_SECRET).to_string());
    store
        .set_oauth_client_secret_hash(NAMESPACE, CLIENT_ID, Some(&hash))
        .await
        .map_err(|e| format!("client secret: {e}"))?;
    Ok(())
}
