//! Leader election with a `coordination.k8s.io/v1` Lease, written against
//! kube's `Api<Lease>`: every write is a replace guarded by the
//! `resourceVersion` read, so two candidates can never both win.
//!
//! ```text
//!  candidate ──get──► held by another, renewed within leaseDuration (as *we* observed it)? ── wait
//!      │                └─ free, expired, or ours ──replace(resourceVersion)──► leader (409: someone was faster)
//!  leader ──every leaseDuration/3──► renew ── failing for renewDeadline ──► step down
//!  SIGTERM ──► holderIdentity cleared at once: the other candidate takes over on its next try
//! ```
//!
//! Expiry is judged by when this candidate saw the lease record last change,
//! not by the holder's `renewTime`, so clock skew between hosts does not matter
//! (as client-go does it).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

use super::{Error, Result};

/// Where the lease is and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per operator process.
    pub identity: String,
    /// How long a holder that stopped renewing keeps the lease.
    pub duration: Duration,
}

impl LeaseConfig {
    /// How often the leader renews.
    pub fn renew_interval(&self) -> Duration {
        (self.duration / 3).max(Duration::from_millis(100))
    }

    /// How long the leader keeps going without a successful renewal before
    /// it steps down (before anyone else may take over).
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// How often a candidate tries.
    pub fn retry_interval(&self) -> Duration {
        (self.duration / 7).max(Duration::from_millis(100))
    }
}

/// What identifies one renewal of the lease: holder and renew time.
type LeaseRecord = (Option<String>, Option<MicroTime>);

/// One candidate's view of the lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The last lease record seen (holder, renewTime) and when we first saw it.
    observed: Option<(LeaseRecord, Instant)>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        LeaderElector { api: Api::namespaced(client, &config.namespace), config, observed: None }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    fn error(&self, operation: &'static str) -> impl FnOnce(kube::Error) -> Error + '_ {
        move |source| Error::Lease {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            operation,
            source: Box::new(source),
        }
    }

    /// Acquires the lease if it is free, expired or ours, renewing it in the
    /// last case. Returns whether we hold it afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let now = MicroTime(jiff::Timestamp::now());
        let duration_seconds = i32::try_from(self.config.duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await.map_err(self.error("get"))? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.config.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(duration_seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now.clone()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    self.observed = Some(((Some(self.config.identity.clone()), Some(now)), Instant::now()));
                    Ok(true)
                }
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(source) => Err(self.error("create")(source)),
            };
        };

        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = (holder.clone(), spec.renew_time.clone());
        let first_seen = match &self.observed {
            Some((seen, at)) if *seen == record => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((record, at));
                at
            }
        };
        let holder_duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.duration, Duration::from_secs);
        let ours = holder.as_deref() == Some(self.config.identity.as_str());
        let expired = first_seen.elapsed() > holder_duration;
        if holder.is_some() && !ours && !expired {
            return Ok(false);
        }

        let mut next = spec;
        if !ours {
            next.acquire_time = Some(now.clone());
            next.lease_transitions = Some(next.lease_transitions.unwrap_or_default() + 1);
        }
        next.holder_identity = Some(self.config.identity.clone());
        next.lease_duration_seconds = Some(duration_seconds);
        next.renew_time = Some(now.clone());
        lease.spec = Some(next);
        // metadata.resourceVersion is the one read: a concurrent write fails with 409.
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(_) => {
                self.observed = Some(((Some(self.config.identity.clone()), Some(now)), Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(self.error("update")(source)),
        }
    }

    /// Gives the lease up if we hold it, so another candidate takes over at once.
    pub async fn release(&mut self) -> Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await.map_err(self.error("get"))? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        lease.spec = Some(spec);
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(()),
            // Someone else wrote it meanwhile: it is not ours any more.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(source) => Err(self.error("release")(source)),
        }
    }
}
