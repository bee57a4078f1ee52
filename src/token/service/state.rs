//! `TokenServiceState`: what every handler shares, and the per-organization
//! lookups (organization, client, access index, signing keys), cached and
//! invalidated by the store's change feed rather than by a timer.
//!
//! ```text
//!  /o/{org}/… ──► organization(org) ──► OrganizationView (spec parsed once)
//!                 client(org, id)   ──► ClientView       (spec parsed once)
//!                 access_index(org) ──► IndexFollower::current()  (started lazily, kept)
//!                 key_set(org)      ──► SealedKeys (the store) or KeyDirectory (keys.json re-checked)
//!  store change feed ── Organization / OAuthClient change ──► views dropped
//!                    ── SigningKey change of a namespace  ──► its key set dropped
//! ```
//!
//! Organizations are addressed by name (the issuer path); their records live
//! under their namespace, which is the key of everything else in the store
//! (users, groups, the follower): [`OrganizationView::namespace`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use jiff::{SignedDuration, Timestamp};
use tokio::sync::OnceCell;

use super::error::OAuthError;
use super::keys::SigningKeySource;
use crate::api::{ClientType, GoDuration, GrantType, OAuthClientSpec, OrganizationSpec, TokenClaim};
use crate::secret::SecretHash;
use crate::store::{
    Change, ChangeEvent, ChangeFeed as _, DesiredStateStore as _, IndexFollower, IndexSnapshot,
    OAuthClientRecord, OrganizationRecord, ResourceKind, Store,
};
use crate::token::keys::{Algorithm, KeySet};

/// Where the service reads the time. Tests pass a [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told (tests of expiry, never sleeping).
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(at: Timestamp) -> Self {
        Self(Mutex::new(at))
    }

    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now = now.checked_add(by).unwrap_or(*now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An organization as the token service needs it.
#[derive(Debug)]
pub struct OrganizationView {
    /// The name in the issuer path.
    pub name: String,
    /// Its namespace: the store's key for its users, groups and index.
    pub namespace: String,
    pub display_name: String,
    pub spec: OrganizationSpec,
    pub access_token_lifetime: SignedDuration,
    pub refresh_token_lifetime: SignedDuration,
    pub signing_algorithm: Algorithm,
}

/// An OAuth client as the token service needs it. Its `client_id` is the
/// OAuthClient's name.
pub struct ClientView {
    pub client_id: String,
    pub display_name: Option<String>,
    pub confidential: bool,
    pub grant_types: Vec<GrantType>,
    /// Compared exactly (RFC 9700 §4.1.3).
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub require_pkce: bool,
    /// `aud` of its access tokens; the client itself when the spec names none.
    pub audiences: Vec<String>,
    pub token_claims: Vec<TokenClaim>,
    /// `None` for a public client, or a confidential one whose secret the
    /// operator has not generated yet (it cannot authenticate).
    pub secret_hash: Option<SecretHash>,
}

impl fmt::Debug for ClientView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientView")
            .field("client_id", &self.client_id)
            .field("confidential", &self.confidential)
            .field("grant_types", &self.grant_types)
            .finish_non_exhaustive()
    }
}

impl ClientView {
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// RFC 9700 §2.1.1: public clients always use PKCE.
    pub fn pkce_required(&self) -> bool {
        self.require_pkce || !self.confidential
    }

    pub fn wants_claim(&self, claim: TokenClaim) -> bool {
        self.token_claims.contains(&claim)
    }

    /// Exact string comparison, no normalisation (RFC 9700 §4.1.3).
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|registered| registered == uri)
    }
}

/// The client id of the token service's own pages (`{issuer}/admin/…`):
/// they send a browser without a session through the sign-in pages as this
/// client. No OAuthClient can take the name (`:` is not allowed in one).
pub const ADMIN_PAGES_CLIENT: &str = "portcullis:admin-pages";

impl TokenServiceState {
    /// Where the sign-in pages send a browser back to the admin pages.
    pub fn admin_pages_redirect_uri(&self, organization: &str) -> String {
        format!("{}/admin/signed-in", self.issuer(organization))
    }

    /// The built-in client of the admin pages: public (so PKCE is required,
    /// and its codes, whose verifier the pages never keep, cannot be
    /// redeemed), one redirect URI, no tokens of its own.
    fn admin_pages_client(&self, org: &OrganizationView) -> ClientView {
        ClientView {
            client_id: ADMIN_PAGES_CLIENT.to_owned(),
            display_name: Some("Administration".to_owned()),
            confidential: false,
            grant_types: vec![GrantType::AuthorizationCode],
            redirect_uris: vec![self.admin_pages_redirect_uri(&org.name)],
            post_logout_redirect_uris: Vec::new(),
            require_pkce: true,
            audiences: vec![self.issuer(&org.name)],
            token_claims: Vec::new(),
            secret_hash: None,
        }
    }
}

/// What the service is started with.
pub struct TokenServiceConfig {
    pub store: Store,
    /// Scheme, host and optional path prefix, without a trailing slash.
    pub public_base_url: String,
    pub keys: SigningKeySource,
    pub login: crate::token::service::login::LoginState,
    pub clock: Arc<dyn Clock>,
}

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct TokenServiceState(Arc<Inner>);

struct Inner {
    store: Store,
    public_base_url: String,
    keys: SigningKeySource,
    login: crate::token::service::login::LoginState,
    clock: Arc<dyn Clock>,
    organizations: RwLock<HashMap<String, Arc<OrganizationView>>>,
    clients: RwLock<HashMap<(String, String), Arc<ClientView>>>,
    /// Bumped whenever cached views are dropped: a lookup that started before
    /// a drop does not put its (maybe stale) result in the cache.
    views_generation: AtomicU64,
    followers: Mutex<HashMap<String, Arc<OnceCell<Arc<IndexFollower>>>>>,
    /// Upstream identity providers: clients, caches, where secrets come from.
    upstreams: crate::federation::upstreams::Upstreams,
    /// Each organization's identity providers (by namespace).
    identity_providers: RwLock<HashMap<String, Arc<Vec<crate::federation::routing::ProviderEntry>>>>,
    /// Where invitation mail goes; none until [`TokenServiceState::set_mailer`].
    mailer: std::sync::OnceLock<Arc<crate::mail::Mailer>>,
    /// Each organization's compliance posture, recomputed when old.
    posture: super::posture::PostureCache,
}

impl TokenServiceState {
    /// Builds the state and starts following the store's change feed, which
    /// keeps the cached views current.
    pub async fn new(config: TokenServiceConfig) -> Result<Self, OAuthError> {
        let subscription = config.store.subscribe().await?;
        let upstreams = crate::federation::upstreams::Upstreams::new()
            .map_err(|e| OAuthError::server_because("the HTTP client for upstream identity providers", e))?;
        let state = Self(Arc::new(Inner {
            store: config.store,
            public_base_url: config.public_base_url.trim_end_matches('/').to_owned(),
            keys: config.keys,
            login: config.login,
            clock: config.clock,
            organizations: RwLock::new(HashMap::new()),
            clients: RwLock::new(HashMap::new()),
            views_generation: AtomicU64::new(0),
            followers: Mutex::new(HashMap::new()),
            upstreams,
            identity_providers: RwLock::new(HashMap::new()),
            mailer: std::sync::OnceLock::new(),
            posture: super::posture::PostureCache::default(),
        }));
        tokio::spawn(invalidate_on_change(Arc::downgrade(&state.0), subscription));
        tokio::spawn(refresh_postures(Arc::downgrade(&state.0)));
        Ok(state)
    }

    /// The kept compliance postures and their gauges.
    pub fn posture_cache(&self) -> &super::posture::PostureCache {
        &self.0.posture
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// No trailing slash.
    pub fn public_base_url(&self) -> &str {
        &self.0.public_base_url
    }

    /// `{base}/o/{organization}`.
    pub fn issuer(&self, organization: &str) -> String {
        format!("{}/o/{organization}", self.0.public_base_url)
    }

    pub fn login(&self) -> &crate::token::service::login::LoginState {
        &self.0.login
    }

    pub fn now(&self) -> Timestamp {
        self.0.clock.now()
    }

    pub fn keys(&self) -> &SigningKeySource {
        &self.0.keys
    }

    /// Sends invitation mail through `mailer` from now on (set once, at start).
    pub fn set_mailer(&self, mailer: Arc<crate::mail::Mailer>) {
        if self.0.mailer.set(mailer).is_err() {
            tracing::warn!("a mailer was already set; the first one is kept");
        }
    }

    /// The mailer, if the service was given an SMTP server.
    pub fn mailer(&self) -> Option<&Arc<crate::mail::Mailer>> {
        self.0.mailer.get()
    }

    /// The organization named `name`, or `None` if there is none.
    pub async fn organization(&self, name: &str) -> Result<Option<Arc<OrganizationView>>, OAuthError> {
        if let Some(view) = read(&self.0.organizations).get(name) {
            return Ok(Some(view.clone()));
        }
        let generation = self.0.views_generation.load(Ordering::Acquire);
        let Some(record) = self.0.store.organization_by_name(name).await? else { return Ok(None) };
        let view = Arc::new(organization_view(record)?);
        let mut cache = write(&self.0.organizations);
        if self.0.views_generation.load(Ordering::Acquire) == generation {
            cache.insert(name.to_owned(), view.clone());
        }
        Ok(Some(view))
    }

    /// The organization, or [`OAuthError::UnknownOrganization`].
    pub async fn require_organization(&self, name: &str) -> Result<Arc<OrganizationView>, OAuthError> {
        self.organization(name).await?.ok_or(OAuthError::UnknownOrganization)
    }

    /// The client `client_id` of the organization named `organization`.
    pub async fn client(
        &self,
        organization: &str,
        client_id: &str,
    ) -> Result<Option<Arc<ClientView>>, OAuthError> {
        if client_id == ADMIN_PAGES_CLIENT {
            return Ok(self
                .organization(organization)
                .await?
                .map(|org| Arc::new(self.admin_pages_client(&org))));
        }
        let key = (organization.to_owned(), client_id.to_owned());
        if let Some(view) = read(&self.0.clients).get(&key) {
            return Ok(Some(view.clone()));
        }
        let generation = self.0.views_generation.load(Ordering::Acquire);
        let Some(org) = self.organization(organization).await? else { return Ok(None) };
        let Some(record) = self.0.store.get::<OAuthClientRecord>(&org.namespace, client_id).await? else {
            return Ok(None);
        };
        let view = Arc::new(client_view(record)?);
        let mut cache = write(&self.0.clients);
        if self.0.views_generation.load(Ordering::Acquire) == generation {
            cache.insert(key, view.clone());
        }
        Ok(Some(view))
    }

    /// The organization's access index, following the store: started on
    /// first use, then kept, so an assignment change reaches the next token.
    pub async fn access_index(&self, org: &OrganizationView) -> Result<Arc<IndexSnapshot>, OAuthError> {
        let cell = self
            .0
            .followers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(org.namespace.clone())
            .or_default()
            .clone();
        let follower = cell
            .get_or_try_init(|| async {
                IndexFollower::start(self.0.store.clone(), org.namespace.clone()).await.map(Arc::new)
            })
            .await?;
        Ok(follower.current())
    }

    /// The organization's signing keys.
    pub async fn key_set(&self, org: &OrganizationView) -> Result<Arc<KeySet>, OAuthError> {
        match &self.0.keys {
            SigningKeySource::Store(sealed) => sealed.key_set(&self.0.store, &org.namespace).await,
            SigningKeySource::Directory(directory) => directory.key_set(&org.name).await,
        }
        .map_err(OAuthError::server)
    }

    /// Clients and caches for upstream identity providers, and where their
    /// secrets are read (set it with [`Upstreams::set_secrets`](crate::federation::upstreams::Upstreams::set_secrets)).
    pub fn upstreams(&self) -> &crate::federation::upstreams::Upstreams {
        &self.0.upstreams
    }

    /// The organization's identity providers, with their specs parsed
    /// (one that does not parse is left out, and logged).
    pub async fn identity_providers(
        &self,
        org: &OrganizationView,
    ) -> Result<Arc<Vec<crate::federation::routing::ProviderEntry>>, OAuthError> {
        if let Some(found) = read(&self.0.identity_providers).get(&org.namespace) {
            return Ok(found.clone());
        }
        let generation = self.0.views_generation.load(Ordering::Acquire);
        let records = self.0.store.list::<crate::store::IdentityProviderRecord>(&org.namespace).await?;
        let mut entries = Vec::new();
        for record in records {
            match serde_json::from_str::<crate::api::IdentityProviderSpec>(&record.spec_json) {
                Ok(spec) => {
                    entries.push(crate::federation::routing::ProviderEntry { name: record.meta.name, spec })
                }
                Err(error) => tracing::error!(
                    namespace = %org.namespace, name = %record.meta.name, %error,
                    "an IdentityProvider's stored spec is unreadable; it is not offered"
                ),
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let entries = Arc::new(entries);
        let mut cache = write(&self.0.identity_providers);
        if self.0.views_generation.load(Ordering::Acquire) == generation {
            cache.insert(org.namespace.clone(), entries.clone());
        }
        Ok(entries)
    }

    /// Whether the organization routes some email domain to an identity
    /// provider, as last read by [`identity_providers`](Self::identity_providers)
    /// (false when it has not been read since the last change).
    pub fn offers_single_sign_on(&self, org: &OrganizationView) -> bool {
        read(&self.0.identity_providers).get(&org.namespace).is_some_and(|providers| {
            providers.iter().any(|p| {
                p.spec.rollout.stage != crate::api::RolloutStage::Disabled && !p.spec.email_domains.is_empty()
            })
        })
    }

    fn forget_views(&self) {
        self.0.views_generation.fetch_add(1, Ordering::AcqRel);
        write(&self.0.organizations).clear();
        write(&self.0.clients).clear();
        write(&self.0.identity_providers).clear();
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// Drops cached views when an Organization, OAuthClient or IdentityProvider
/// changes, and an organization's key set when its signing keys change (everything when
/// notices were missed). Ends when the state or the store is gone.
/// Recomputes every organization's posture every
/// [`REFRESH_EVERY`](super::posture::REFRESH_EVERY), so the gauges stay
/// current without anyone opening the page; ends with the state.
async fn refresh_postures(state: std::sync::Weak<Inner>) {
    let mut ticks = tokio::time::interval(super::posture::REFRESH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = state.upgrade() else { return };
        let service = TokenServiceState(inner);
        if let Err(error) = service.posture_cache().refresh_all(&service).await {
            tracing::warn!(error = %crate::error_chain::error_chain(&error), "posture refresh failed; trying again later");
        }
    }
}

async fn invalidate_on_change(
    state: std::sync::Weak<Inner>,
    mut subscription: crate::store::ChangeSubscription,
) {
    while let Some(event) = subscription.recv().await {
        let relevant = match &event {
            ChangeEvent::Missed => true,
            ChangeEvent::Committed(notice) => notice.changes.iter().any(|change| {
                matches!(
                    change,
                    Change::Resource {
                        kind: ResourceKind::Organization
                            | ResourceKind::OAuthClient
                            | ResourceKind::IdentityProvider,
                        ..
                    }
                )
            }),
        };
        let Some(inner) = state.upgrade() else { return };
        if let SigningKeySource::Store(sealed) = &inner.keys {
            match &event {
                ChangeEvent::Missed => sealed.forget(None),
                ChangeEvent::Committed(notice) => {
                    for change in &notice.changes {
                        if let Change::SigningKey { organization, .. } = change {
                            sealed.forget(Some(organization));
                        }
                    }
                }
            }
        }
        if relevant {
            TokenServiceState(inner).forget_views();
        }
    }
}

fn organization_view(record: OrganizationRecord) -> Result<OrganizationView, OAuthError> {
    let spec: OrganizationSpec = serde_json::from_str(&record.spec_json).map_err(|e| {
        OAuthError::server_because(format!("organization {} has an unreadable spec", record.meta.name), e)
    })?;
    let lifetime = |duration: &GoDuration, what: &str| {
        duration.positive().ok_or_else(|| {
            OAuthError::internal(format!(
                "organization {}: bad {what} {:?}",
                record.meta.name,
                duration.as_str()
            ))
        })
    };
    Ok(OrganizationView {
        access_token_lifetime: lifetime(&spec.tokens.access_token_lifetime, "accessTokenLifetime")?,
        refresh_token_lifetime: lifetime(&spec.tokens.refresh_token_lifetime, "refreshTokenLifetime")?,
        signing_algorithm: spec.tokens.signing_algorithm.into(),
        name: record.meta.name,
        namespace: record.meta.namespace,
        display_name: record.display_name,
        spec,
    })
}

fn client_view(record: OAuthClientRecord) -> Result<ClientView, OAuthError> {
    let spec: OAuthClientSpec = serde_json::from_str(&record.spec_json).map_err(|e| {
        OAuthError::server_because(format!("OAuth client {} has an unreadable spec", record.meta.name), e)
    })?;
    let client_id = record.meta.name;
    let audiences = if spec.audiences.is_empty() { vec![client_id.clone()] } else { spec.audiences };
    Ok(ClientView {
        confidential: spec.client_type == ClientType::Confidential,
        display_name: spec.display_name,
        grant_types: spec.grant_types,
        redirect_uris: spec.redirect_uris.into_iter().map(|uri| uri.0).collect(),
        post_logout_redirect_uris: spec.post_logout_redirect_uris.into_iter().map(|uri| uri.0).collect(),
        require_pkce: spec.require_pkce,
        audiences,
        token_claims: spec.token_claims,
        secret_hash: record.secret_hash.as_ref().and_then(|hash| SecretHash::parse(hash.expose())),
        client_id,
    })
}
