//! Prometheus metrics of the SCIM service, served on its metrics port with
//! the request metrics of [`crate::http_metrics`]: requests per
//! organization, IdentityProvider and status class. Sync health in the
//! store says the same per IdentityProvider for the operator.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The service's counters and their registry.
pub struct ScimMetrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
}

impl Default for ScimMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("portcullis_scim");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "Authorized SCIM requests, by organization namespace, identity provider and status class",
            requests.clone(),
        );
        ScimMetrics { registry, requests }
    }
}

impl ScimMetrics {
    pub fn observe(&self, namespace: &str, identity_provider: &str, status: u16) {
        let class = format!("{}xx", status / 100);
        let labels = vec![
            ("namespace", namespace.to_owned()),
            ("identity_provider", identity_provider.to_owned()),
            ("status", class),
        ];
        self.requests.get_or_create(&labels).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
