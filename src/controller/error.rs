//! The operator's one error type. Each variant names the operation and the
//! object it failed on; [`Error::reason`] is the `reason` label of the
//! `portcullis_operator_reconcile_errors_total` metric.

use crate::store::StoreError;

/// What went wrong in a reconcile, in leader election or in the operator's setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} has no {field}")]
    MissingMetadata { kind: &'static str, field: &'static str },

    #[error("could not write {kind} {namespace}/{name} to the store")]
    StoreWrite {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<StoreError>,
    },

    #[error("could not read {what} of {namespace} from the store")]
    StoreRead {
        what: &'static str,
        namespace: String,
        #[source]
        source: Box<StoreError>,
    },

    #[error("could not remove {kind} {namespace}/{name} from the store")]
    StoreDelete {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<StoreError>,
    },

    /// The namespace's Organization has no store this operator may write to
    /// (its `DataResidency` condition says why).
    #[error("nothing of namespace {namespace} is stored: {reason}")]
    NoStoreForNamespace { namespace: String, reason: String },

    #[error("could not connect to the store")]
    StoreConnect {
        #[source]
        source: Box<StoreError>,
    },

    #[error("could not write the status of {kind} {namespace}/{name}")]
    PatchStatus {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("could not add the finalizer to {kind} {namespace}/{name}")]
    AddFinalizer {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("could not remove the finalizer from {kind} {namespace}/{name}")]
    RemoveFinalizer {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("could not apply {kind} {namespace}/{name}")]
    ApplyOwned {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("could not read {kind} {namespace}/{name}")]
    GetOwned {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("could not list the {kind}s owned by {owner} in {namespace}")]
    ListOwned {
        kind: &'static str,
        namespace: String,
        owner: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("could not delete {kind} {namespace}/{name}")]
    DeleteOwned {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("Secret {namespace}/{name} holds unreadable signing keys: {problem}")]
    CorruptKeys { namespace: String, name: String, problem: String },

    #[error("the signing keys of {namespace}/{name} in the store do not open: {problem}")]
    SealedKeys { namespace: String, name: String, problem: String },

    #[error("the services' key-encryption key is not available yet")]
    NoKeyEncryptionKey,

    #[error("could not generate a {what}")]
    Generate { what: &'static str },

    #[error("lease {namespace}/{name}: {operation} failed")]
    Lease {
        namespace: String,
        name: String,
        operation: &'static str,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("could not build a Kubernetes client")]
    KubeClient {
        #[source]
        source: Box<kube::Error>,
    },

    #[error("could not serve metrics and health probes on {address}")]
    Serve {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::MissingMetadata { .. } => "MissingMetadata",
            Error::NoStoreForNamespace { .. } => "DataResidency",
            Error::StoreWrite { .. }
            | Error::StoreRead { .. }
            | Error::StoreDelete { .. }
            | Error::StoreConnect { .. } => "StoreUnavailable",
            Error::PatchStatus { source, .. }
            | Error::AddFinalizer { source, .. }
            | Error::RemoveFinalizer { source, .. }
            | Error::ApplyOwned { source, .. }
            | Error::GetOwned { source, .. }
            | Error::ListOwned { source, .. }
            | Error::DeleteOwned { source, .. }
            | Error::Lease { source, .. }
            | Error::KubeClient { source } => kube_reason(source),
            Error::CorruptKeys { .. } => "CorruptKeys",
            Error::SealedKeys { .. } => "SealedKeysUnreadable",
            Error::NoKeyEncryptionKey => "ServiceKeysUnavailable",
            Error::Generate { .. } => "Generate",
            Error::Serve { .. } => "Serve",
        }
    }

    /// A 409 Conflict (or a failed JSON-patch test, 422): someone changed the
    /// object in between. Retried soon, without counting as a failure.
    pub fn is_conflict(&self) -> bool {
        self.kube_status().is_some_and(|code| code == 409)
            || matches!(self, Error::AddFinalizer { .. } | Error::RemoveFinalizer { .. })
                && self.kube_status() == Some(422)
    }

    fn kube_status(&self) -> Option<u16> {
        match self {
            Error::PatchStatus { source, .. }
            | Error::AddFinalizer { source, .. }
            | Error::RemoveFinalizer { source, .. }
            | Error::ApplyOwned { source, .. }
            | Error::GetOwned { source, .. }
            | Error::ListOwned { source, .. }
            | Error::DeleteOwned { source, .. }
            | Error::Lease { source, .. } => match source.as_ref() {
                kube::Error::Api(status) => Some(status.code),
                _ => None,
            },
            _ => None,
        }
    }
}

fn kube_reason(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(status) => match status.code {
            409 => "Conflict",
            410 => "Gone",
            404 => "NotFound",
            403 => "Forbidden",
            422 => "Invalid",
            429 => "TooManyRequests",
            500..=599 => "ApiServerError",
            _ => "ApiError",
        },
        _ => "ApiServerUnavailable",
    }
}
