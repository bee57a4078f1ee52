//! Prometheus metrics of the token and SCIM services, served on a port of
//! their own (`--metrics-listen`), never on the public listener: what they
//! say (organizations, routes, volumes) is for the cluster's monitoring, not
//! for whoever reaches the issuer.
//!
//! ```text
//!  request ──► HttpMetrics::layer (around every route of a service) ──► handler
//!                │ after the answer: route (the matched pattern), method, code,
//!                │ organization (from /o/{organization}/…), duration
//!                ├─► portcullis_http_requests_total, portcullis_http_request_duration_seconds
//!                ├─► /o/{org}/token answered with a TokenIssued extension ──► portcullis_tokens_issued_total
//!                ├─► /o/{org}/login… ──► portcullis_sign_ins_total (result from the answer, below)
//!                └─► /o/{org}/scim/v2/Users|Groups… ──► portcullis_scim_operations_total
//!  --metrics-listen ──► metrics_router: GET /metrics (these, plus the SCIM service's own counters)
//! ```
//!
//! | metric | labels |
//! |---|---|
//! | `portcullis_http_requests_total` | `service`, `route`, `method`, `organization`, `code` |
//! | `portcullis_http_request_duration_seconds` (histogram) | `service`, `route`, `method`, `organization` |
//! | `portcullis_tokens_issued_total` | `organization`, `grant_type` |
//! | `portcullis_sign_ins_total` | `organization`, `result` |
//! | `portcullis_scim_operations_total` | `organization`, `resource`, `operation`, `code` |
//!
//! A sign-in step's result is read from its answer, as the sign-in pages
//! give it: a redirect ends the sign-in (`success`), a page asks for the
//! next step (`next_step`), 401 is a wrong credential (`failure`), 429 or
//! 503 a throttled attempt (`throttled`), 403 an account or method refused
//! (`refused`), another 4xx a malformed form (`invalid`), 5xx `error`.
//!
//! Label values are bounded: routes are the service's own patterns; an
//! organization is labelled only on answers other than 404 (an unknown
//! organization is 404) and only for the first [`MAX_ORGANIZATIONS`] seen,
//! so requests for made-up names cannot grow the registry without end.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Organizations labelled by name; later ones are counted as [`OTHER`].
pub const MAX_ORGANIZATIONS: usize = 1000;
/// The organization label of requests not labelled by organization.
pub const OTHER: &str = "-";
/// Media type of the text exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 0.5 ms … 8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// Put on a token endpoint's successful answer: which grant issued tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenIssued {
    pub grant_type: &'static str,
}

/// The metrics of one service process (the token service, the SCIM
/// service, or both in standalone mode).
pub struct HttpMetrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    duration: HistogramFamily,
    tokens_issued: Family<Labels, Counter>,
    sign_ins: Family<Labels, Counter>,
    scim_operations: Family<Labels, Counter>,
    organizations: Mutex<HashSet<String>>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by service, route, method, organization and status code",
            requests.clone(),
        );
        let duration = HistogramFamily::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request to its answer, by service, route, method and organization",
            Unit::Seconds,
            duration.clone(),
        );
        let tokens_issued = Family::<Labels, Counter>::default();
        registry.register(
            "tokens_issued",
            "Token responses, by organization and grant type",
            tokens_issued.clone(),
        );
        let sign_ins = Family::<Labels, Counter>::default();
        registry.register("sign_ins", "Sign-in steps, by organization and result", sign_ins.clone());
        let scim_operations = Family::<Labels, Counter>::default();
        registry.register(
            "scim_operations",
            "SCIM operations, by organization, resource type, operation and status code",
            scim_operations.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            tokens_issued,
            sign_ins,
            scim_operations,
            organizations: Mutex::new(HashSet::new()),
        }
    }

    /// Wraps every route of `router` (call it last, after merging): counts
    /// and times each request as `service`.
    pub fn layer(self: &Arc<Self>, service: &'static str, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state((self.clone(), service), record))
    }

    /// The organization label of a request for `/o/{organization}/…`.
    fn organization_label(&self, path: &str, status: StatusCode) -> String {
        let Some(name) = path.strip_prefix("/o/").and_then(|rest| rest.split('/').next()) else {
            return OTHER.to_owned();
        };
        if status == StatusCode::NOT_FOUND || name.is_empty() {
            return OTHER.to_owned();
        }
        let mut seen = self.organizations.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(name) || (seen.len() < MAX_ORGANIZATIONS && seen.insert(name.to_owned())) {
            name.to_owned()
        } else {
            OTHER.to_owned()
        }
    }

    /// The text exposition of these metrics.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The answer to a sign-in step, as a `result` label (see the module docs).
pub fn sign_in_result(status: StatusCode) -> &'static str {
    match status.as_u16() {
        300..=399 => "success",
        200..=299 => "next_step",
        401 => "failure",
        429 | 503 => "throttled",
        403 => "refused",
        400..=499 => "invalid",
        _ => "error",
    }
}

/// The SCIM operation a request is, from its method and route pattern:
/// `(resource, operation)`, or `None` for discovery endpoints.
pub fn scim_operation(method: &str, route: &str) -> Option<(&'static str, &'static str)> {
    let rest = route.split_once("/scim/v2/")?.1;
    let (resource, tail) = match rest.split_once('/') {
        Some((resource, tail)) => (resource, Some(tail)),
        None => (rest, None),
    };
    let resource = match resource {
        "Users" => "User",
        "Groups" => "Group",
        _ => return None,
    };
    let operation = match (method, tail) {
        ("GET", None) => "list",
        ("POST", None) => "create",
        ("POST", Some(".search")) => "search",
        ("GET", Some(_)) => "read",
        ("PUT", Some(_)) => "replace",
        ("PATCH", Some(_)) => "patch",
        ("DELETE", Some(_)) => "delete",
        _ => return None,
    };
    Some((resource, operation))
}

async fn record(
    State((metrics, service)): State<(Arc<HttpMetrics>, &'static str)>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let organization = metrics.organization_label(&path, status);
    let code = status.as_u16().to_string();
    let labels = vec![
        ("service", service.to_owned()),
        ("route", route.clone()),
        ("method", method.clone()),
        ("organization", organization.clone()),
    ];
    metrics.duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    let mut labels = labels;
    labels.push(("code", code.clone()));
    metrics.requests.get_or_create(&labels).inc();

    if let Some(issued) = response.extensions().get::<TokenIssued>() {
        let labels =
            vec![("organization", organization.clone()), ("grant_type", issued.grant_type.to_owned())];
        metrics.tokens_issued.get_or_create(&labels).inc();
    }
    if method == "POST" && route.starts_with("/o/{org}/login") {
        let labels =
            vec![("organization", organization.clone()), ("result", sign_in_result(status).to_owned())];
        metrics.sign_ins.get_or_create(&labels).inc();
    }
    if let Some((resource, operation)) = scim_operation(&method, &route) {
        let labels = vec![
            ("organization", organization),
            ("resource", resource.to_owned()),
            ("operation", operation.to_owned()),
            ("code", code),
        ];
        metrics.scim_operations.get_or_create(&labels).inc();
    }
    response
}

/// The expositions of several registries as one, under one `# EOF`. A
/// family several of them have (the same service once per regional store)
/// appears once, with its metadata from the first and the samples of all:
/// OpenMetrics allows a family only once.
pub fn concatenate(parts: &[String]) -> String {
    // Family name → its metadata lines and its samples, in first-seen order.
    let mut families: Vec<(String, Vec<&str>, Vec<&str>)> = Vec::new();
    for part in parts {
        let mut current: Option<usize> = None;
        for line in part.lines().filter(|line| *line != "# EOF") {
            let metadata = line.strip_prefix("# ").and_then(|rest| rest.split_whitespace().nth(1));
            if let Some(name) = metadata {
                let index = match families.iter().position(|(family, _, _)| family == name) {
                    Some(index) => index,
                    None => {
                        families.push((name.to_owned(), Vec::new(), Vec::new()));
                        families.len() - 1
                    }
                };
                if current != Some(index) && !families[index].2.is_empty() {
                    // The family's metadata was already taken from an earlier part.
                    current = Some(index);
                    continue;
                }
                if !families[index].1.contains(&line) {
                    families[index].1.push(line);
                }
                current = Some(index);
            } else if let Some(index) = current {
                families[index].2.push(line);
            } else {
                families.push((String::new(), Vec::new(), vec![line]));
            }
        }
    }
    let mut out = String::new();
    for (_, metadata, samples) in &families {
        for line in metadata.iter().chain(samples) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Renders a process's metrics: called on each scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// `GET /metrics` and nothing else, for the metrics port.
pub fn metrics_router(render: Render) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move {
                ([(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))], render()).into_response()
            }
        }),
    )
}

/// Serves [`metrics_router`] on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, render: Render) -> std::io::Result<()> {
    axum::serve(listener, metrics_router(render)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scim_operations_are_named_from_the_method_and_the_route() {
        let at = |p: &str| format!("/o/{{organization}}/scim/v2{p}");
        assert_eq!(scim_operation("POST", &at("/Users")), Some(("User", "create")));
        assert_eq!(scim_operation("GET", &at("/Users")), Some(("User", "list")));
        assert_eq!(scim_operation("PATCH", &at("/Groups/{id}")), Some(("Group", "patch")));
        assert_eq!(scim_operation("POST", &at("/Groups/.search")), Some(("Group", "search")));
        assert_eq!(scim_operation("DELETE", &at("/Users/{id}")), Some(("User", "delete")));
        assert_eq!(scim_operation("GET", &at("/Schemas")), None);
        assert_eq!(scim_operation("POST", "/o/{org}/token"), None);
    }

    #[test]
    fn sign_in_results_follow_the_answer() {
        assert_eq!(sign_in_result(StatusCode::SEE_OTHER), "success");
        assert_eq!(sign_in_result(StatusCode::OK), "next_step");
        assert_eq!(sign_in_result(StatusCode::UNAUTHORIZED), "failure");
        assert_eq!(sign_in_result(StatusCode::TOO_MANY_REQUESTS), "throttled");
        assert_eq!(sign_in_result(StatusCode::FORBIDDEN), "refused");
        assert_eq!(sign_in_result(StatusCode::BAD_REQUEST), "invalid");
        assert_eq!(sign_in_result(StatusCode::INTERNAL_SERVER_ERROR), "error");
    }

    #[test]
    fn organizations_are_labelled_only_when_they_exist_and_up_to_a_bound() {
        let metrics = HttpMetrics::new();
        assert_eq!(metrics.organization_label("/o/acme/token", StatusCode::OK), "acme");
        assert_eq!(metrics.organization_label("/o/made-up/token", StatusCode::NOT_FOUND), OTHER);
        assert_eq!(metrics.organization_label("/healthz", StatusCode::OK), OTHER);
        for i in 0..MAX_ORGANIZATIONS {
            metrics.organization_label(&format!("/o/org{i}/jwks"), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(metrics.organization_label("/o/one-too-many/jwks", StatusCode::OK), OTHER);
        assert_eq!(metrics.organization_label("/o/acme/jwks", StatusCode::OK), "acme", "known ones stay");
    }

    #[test]
    fn expositions_concatenate_under_one_end_marker() {
        let text = concatenate(&[
            "# TYPE a counter\na_total 1\n# EOF\n".into(),
            "# TYPE b gauge\nb 2\n# EOF\n".into(),
        ]);
        assert_eq!(text, "# TYPE a counter\na_total 1\n# TYPE b gauge\nb 2\n# EOF\n");
    }

    #[test]
    fn a_family_of_several_expositions_appears_once_with_every_sample() {
        let store = |organization: &str| {
            format!(
                "# HELP users Users.\n# TYPE users gauge\nusers{{organization=\"{organization}\"}} 1\n\
                 # TYPE other gauge\nother 1\n# EOF\n"
            )
        };
        let text = concatenate(&[store("acme"), store("globex")]);
        assert_eq!(
            text,
            "# HELP users Users.\n# TYPE users gauge\nusers{organization=\"acme\"} 1\n\
             users{organization=\"globex\"} 1\n# TYPE other gauge\nother 1\nother 1\n# EOF\n"
        );
    }
}
