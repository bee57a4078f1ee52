//! Reconciles against a mocked API server that checks the exact sequence of
//! calls each key scenario makes (as controller-rs does), with a real
//! in-memory store. What the API server itself does is tested for real in
//! `tests/operator.rs`; these pin down what the operator sends.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use super::conditions;
use super::metrics::Metrics;
use super::reconcile::{self, Backoff, Context, Settings};
use super::tenants::{Stores, Tenants};
use super::{Error, FIELD_MANAGER, FINALIZER};
use crate::api::{IdentityProvider, OAuthClient, Organization, Role, RoleAssignment};
use crate::store::{AssignmentRecord, DesiredStateStore, ObjectMeta, OrganizationRecord, RoleRecord, Store};

const NOW: i64 = 1_800_000_000;

// === Fixtures, as builders ===

fn organization() -> Organization {
    serde_json::from_value(json!({
        "apiVersion": "iam.portcullis.dev/v1alpha1",
        "kind": "Organization",
        "metadata": {"name": "acme", "namespace": "acme", "uid": "org-uid", "generation": 1},
        "spec": {
            "displayName": "Acme",
            "permissions": [{"name": "journeys.view"}, {"name": "journeys.edit"}],
            "workspaces": [{"name": "emea"}],
        },
    }))
    .expect("organization fixture")
}

trait Fixture: Sized + Resource {
    fn with_finalizer(mut self) -> Self {
        self.meta_mut().finalizers = Some(vec![FINALIZER.to_owned()]);
        self
    }
    fn being_deleted(mut self) -> Self {
        self.meta_mut().deletion_timestamp =
            Some(Time(jiff::Timestamp::from_second(NOW).unwrap_or_default()));
        self
    }
}
impl Fixture for Organization {}
impl Fixture for Role {}
impl Fixture for RoleAssignment {}

trait OrganizationFixture {
    fn with_legal_hold(self) -> Self;
}
impl OrganizationFixture for Organization {
    fn with_legal_hold(mut self) -> Self {
        self.spec.legal_hold = true;
        self
    }
}

fn role() -> Role {
    serde_json::from_value(json!({
        "apiVersion": "iam.portcullis.dev/v1alpha1",
        "kind": "Role",
        "metadata": {"name": "editor", "namespace": "acme", "uid": "role-uid", "generation": 1},
        "spec": {"permissions": ["journeys.*"]},
    }))
    .expect("role fixture")
}

fn assignment() -> RoleAssignment {
    serde_json::from_value(json!({
        "apiVersion": "iam.portcullis.dev/v1alpha1",
        "kind": "RoleAssignment",
        "metadata": {"name": "bob-editor", "namespace": "acme", "uid": "ra-uid", "generation": 1},
        "spec": {"principal": {"kind": "User", "name": "bob@acme.com"}, "role": "editor"},
    }))
    .expect("assignment fixture")
}

// === The mocked API server ===

struct ApiServer(Handle<Request<Body>, Response<Body>>);

/// One call the reconcile is expected to make, and the answer it gets.
struct Expect {
    method: Method,
    path: String,
    /// Query parameters that must be present (`fieldManager=…`).
    query: Vec<&'static str>,
    status: StatusCode,
    /// Builds the response from the request body.
    respond: Box<dyn FnOnce(&Value) -> Value + Send>,
}

impl Expect {
    fn new(method: Method, path: &str, respond: impl FnOnce(&Value) -> Value + Send + 'static) -> Self {
        Expect {
            method,
            path: path.to_owned(),
            query: Vec::new(),
            status: StatusCode::OK,
            respond: Box::new(respond),
        }
    }
    fn query(mut self, parameter: &'static str) -> Self {
        self.query.push(parameter);
        self
    }
    fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl ApiServer {
    /// Serves `calls` in order, returning the request bodies; panics on any
    /// other call.
    async fn serve(mut self, calls: Vec<Expect>) -> (Self, Vec<Value>) {
        let mut bodies = Vec::new();
        for (i, expect) in calls.into_iter().enumerate() {
            let (request, send) =
                self.0.next_request().await.expect("the reconcile made fewer calls than expected");
            let uri = request.uri().clone();
            assert_eq!(
                (request.method(), uri.path()),
                (&expect.method, expect.path.as_str()),
                "call {i}: unexpected {} {uri}",
                request.method()
            );
            let query = uri.query().unwrap_or_default();
            for parameter in &expect.query {
                assert!(
                    query.split('&').any(|q| q == *parameter),
                    "call {i}: {parameter} missing from {uri}"
                );
            }
            let bytes = request.into_body().collect_bytes().await.expect("request body");
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("JSON body")
            };
            let response = (expect.respond)(&body);
            bodies.push(body);
            send.send_response(
                Response::builder()
                    .status(expect.status)
                    .body(Body::from(serde_json::to_vec(&response).expect("response")))
                    .expect("response"),
            );
        }
        (self, bodies)
    }

    /// After every client is dropped: no call is left unanswered.
    async fn assert_no_more_calls(mut self) {
        if let Some((request, _)) = self.0.next_request().await {
            panic!("unexpected extra call {} {}", request.method(), request.uri());
        }
    }
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

struct Harness {
    ctx: Arc<Context>,
    server: ApiServer,
    writers: Writers,
}

struct Writers {
    organizations: Writer<Organization>,
    roles: Writer<Role>,
    role_assignments: Writer<RoleAssignment>,
}

impl Writers {
    fn organization(&mut self, org: &Organization) {
        self.organizations.apply_watcher_event(&watcher::Event::Apply(org.clone()));
    }
    fn role(&mut self, role: &Role) {
        self.roles.apply_watcher_event(&watcher::Event::Apply(role.clone()));
    }
    fn assignment(&mut self, ra: &RoleAssignment) {
        self.role_assignments.apply_watcher_event(&watcher::Event::Apply(ra.clone()));
    }
}

async fn mock_harness() -> Harness {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let store = Store::connect("sqlite::memory:").await.expect("in-memory store");
    let (organizations, organizations_writer) = reflector::store::<Organization>();
    let (roles, roles_writer) = reflector::store::<Role>();
    let (role_assignments, role_assignments_writer) = reflector::store::<RoleAssignment>();
    let (identity_providers, _) = reflector::store::<IdentityProvider>();
    let (oauth_clients, _) = reflector::store::<OAuthClient>();
    let ctx = Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter { controller: FIELD_MANAGER.to_owned(), instance: None },
        ),
        client,
        regions: crate::store::RegionalStores::single(store.clone()),
        residency: None,
        homes: Arc::default(),
        store,
        stores: Stores { organizations, roles, role_assignments, identity_providers, oauth_clients },
        tenants: Arc::new(Tenants::default()),
        metrics: Arc::new(Metrics::new()),
        settings: Settings::default(),
        backoff: Arc::new(Backoff::new(Duration::from_millis(500), Duration::from_secs(300))),
        clock: Arc::new(|| jiff::Timestamp::from_second(NOW).unwrap_or_default()),
        operator_status: Arc::default(),
        service_keys: tokio::sync::watch::channel(None).1,
    };
    Harness {
        ctx: Arc::new(ctx),
        server: ApiServer(handle),
        writers: Writers {
            organizations: organizations_writer,
            roles: roles_writer,
            role_assignments: role_assignments_writer,
        },
    }
}

/// Runs `reconcile` while the mocked API server answers `calls`; then checks
/// that nothing else was called.
async fn run<K>(
    harness: Harness,
    obj: K,
    calls: Vec<Expect>,
) -> (Result<kube::runtime::controller::Action, Error>, Vec<Value>, Store)
where
    K: reconcile::Reconciler,
{
    let Harness { ctx, server, writers } = harness;
    let served = tokio::spawn(server.serve(calls));
    let result =
        tokio::time::timeout(Duration::from_secs(10), reconcile::reconcile(Arc::new(obj), ctx.clone()))
            .await
            .expect("the reconcile waited for a call nobody expected");
    let (server, bodies) = tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("an expected call never came")
        .expect("server");
    let store = ctx.store.clone();
    drop(ctx);
    drop(writers);
    server.assert_no_more_calls().await;
    (result, bodies, store)
}

const ROLES: &str = "/apis/iam.portcullis.dev/v1alpha1/namespaces/acme/roles/editor";
const ORGANIZATIONS: &str = "/apis/iam.portcullis.dev/v1alpha1/namespaces/acme/organizations/acme";
const ASSIGNMENTS: &str = "/apis/iam.portcullis.dev/v1alpha1/namespaces/acme/roleassignments/bob-editor";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/acme/events";

fn echo_status(obj: Value) -> impl FnOnce(&Value) -> Value + Send {
    move |body| {
        let mut obj = obj;
        obj["status"] = body["status"].clone();
        obj
    }
}

#[tokio::test]
async fn first_apply_adds_the_finalizer_writes_the_store_then_the_whole_status() {
    let mut harness = mock_harness().await;
    harness.writers.organization(&organization());
    harness.writers.role(&role());
    let with_finalizer = serde_json::to_value(role().with_finalizer()).expect("json");
    let (result, bodies, store) = run::<Role>(
        harness,
        role(),
        vec![
            Expect::new(Method::PATCH, ROLES, {
                let obj = with_finalizer.clone();
                move |_| obj
            }),
            Expect::new(Method::PATCH, &format!("{ROLES}/status"), echo_status(with_finalizer))
                .query("fieldManager=portcullis-operator")
                .query("force=true"),
        ],
    )
    .await;
    result.expect("reconcile");
    assert_eq!(
        bodies[0],
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]),
        "the finalizer is added before anything outside the cluster is written"
    );
    let status = &bodies[1];
    assert_eq!(status["apiVersion"], "iam.portcullis.dev/v1alpha1");
    assert_eq!(status["kind"], "Role");
    assert_eq!(status["status"]["observedGeneration"], 1);
    assert_eq!(status["status"]["effectivePermissions"], json!(["journeys.edit", "journeys.view"]));
    assert_eq!(status["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(status["status"]["conditions"][0]["status"], "True");
    let stored: Option<RoleRecord> = store.get("acme", "editor").await.expect("store");
    assert_eq!(stored.map(|r| r.permissions), Some(vec!["journeys.*".to_owned()]));
}

#[tokio::test]
async fn an_unchanged_status_is_not_written_again() {
    // First pass, to learn the status it writes.
    let mut harness = mock_harness().await;
    harness.writers.organization(&organization());
    harness.writers.role(&role());
    let with_finalizer = role().with_finalizer();
    let (_, bodies, _) = run::<Role>(
        harness,
        with_finalizer.clone(),
        vec![Expect::new(
            Method::PATCH,
            &format!("{ROLES}/status"),
            echo_status(serde_json::to_value(&with_finalizer).expect("json")),
        )],
    )
    .await;
    let mut settled = with_finalizer;
    settled.status = Some(serde_json::from_value(bodies[0]["status"].clone()).expect("status"));

    // Second pass over the object as it now is: no call at all.
    let mut harness = mock_harness().await;
    harness.writers.organization(&organization());
    harness.writers.role(&settled);
    let (result, bodies, _) = run::<Role>(harness, settled, vec![]).await;
    result.expect("reconcile");
    assert!(bodies.is_empty());
}

#[tokio::test]
async fn deletion_without_legal_hold_cleans_the_store_then_removes_the_finalizer() {
    let mut harness = mock_harness().await;
    let org = organization().with_finalizer().being_deleted();
    harness.writers.organization(&org);
    let record = crate::resources::ToRecord::to_record(&org, ObjectMeta::new("org-uid", "acme", "acme", 1));
    harness.ctx.store.apply(&record).await.expect("seed the store");
    let (result, bodies, store) = run::<Organization>(
        harness,
        org.clone(),
        vec![
            Expect::new(Method::DELETE, "/api/v1/namespaces/acme/secrets/acme-signing-keys", |_| not_found())
                .status(StatusCode::NOT_FOUND),
            Expect::new(Method::PATCH, ORGANIZATIONS, {
                let obj = serde_json::to_value(&org).expect("json");
                move |_| obj
            }),
        ],
    )
    .await;
    result.expect("reconcile");
    assert_eq!(
        bodies[1],
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    let stored: Option<OrganizationRecord> = store.get("acme", "acme").await.expect("store");
    assert!(stored.is_none(), "the organization left the store before its finalizer was removed");
}

#[tokio::test]
async fn deletion_under_legal_hold_keeps_the_finalizer_and_the_data_and_says_why() {
    let mut harness = mock_harness().await;
    let org = organization().with_legal_hold().with_finalizer().being_deleted();
    harness.writers.organization(&org);
    let record = crate::resources::ToRecord::to_record(&org, ObjectMeta::new("org-uid", "acme", "acme", 1));
    harness.ctx.store.apply(&record).await.expect("seed the store");
    let (result, bodies, store) = run::<Organization>(
        harness,
        org.clone(),
        vec![
            Expect::new(
                Method::PATCH,
                &format!("{ORGANIZATIONS}/status"),
                echo_status(serde_json::to_value(&org).expect("json")),
            )
            .query("fieldManager=portcullis-operator"),
            Expect::new(Method::POST, EVENTS, Value::clone),
        ],
    )
    .await;
    result.expect("a refusal is not a failure");
    let blocked = bodies[0]["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == conditions::DELETION_BLOCKED).cloned())
        .expect("DeletionBlocked");
    assert_eq!((blocked["status"].as_str(), blocked["reason"].as_str()), (Some("True"), Some("LegalHold")));
    assert_eq!(bodies[1]["reason"], "LegalHold");
    assert_eq!(bodies[1]["type"], "Warning");
    let stored: Option<OrganizationRecord> = store.get("acme", "acme").await.expect("store");
    assert!(stored.is_some(), "the data stays");
}

#[tokio::test]
async fn a_store_outage_shows_in_the_status_and_fails_the_pass_for_backoff() {
    let mut harness = mock_harness().await;
    harness.writers.organization(&organization());
    harness.writers.role(&role());
    let ra = assignment();
    harness.writers.assignment(&ra);
    harness.ctx.store.close().await;
    let (result, bodies, _) = run::<RoleAssignment>(
        harness,
        ra.clone(),
        vec![
            Expect::new(
                Method::PATCH,
                &format!("{ASSIGNMENTS}/status"),
                echo_status(serde_json::to_value(&ra).expect("json")),
            ),
            Expect::new(Method::POST, EVENTS, Value::clone),
        ],
    )
    .await;
    let error = result.expect_err("the pass fails, so it is retried with backoff");
    assert_eq!(error.reason(), "StoreUnavailable");
    let ready = &bodies[0]["status"]["conditions"][0];
    assert_eq!((ready["type"].as_str(), ready["status"].as_str()), (Some("Ready"), Some("False")));
    assert_eq!(ready["reason"], "StoreUnavailable");
    assert_eq!(bodies[1]["type"], "Warning");
}

#[tokio::test]
async fn a_role_assignment_carries_no_finalizer_one_status_write_is_its_only_api_call() {
    let mut harness = mock_harness().await;
    harness.writers.organization(&organization());
    harness.writers.role(&role());
    let ra = assignment();
    harness.writers.assignment(&ra);
    let (result, bodies, store) = run::<RoleAssignment>(
        harness,
        ra.clone(),
        vec![Expect::new(
            Method::PATCH,
            &format!("{ASSIGNMENTS}/status"),
            echo_status(serde_json::to_value(&ra).expect("json")),
        )],
    )
    .await;
    result.expect("reconcile");
    assert_eq!(bodies[0]["kind"], "RoleAssignment");
    let stored: Option<AssignmentRecord> = store.get("acme", "bob-editor").await.expect("store");
    assert_eq!(stored.map(|r| r.role), Some("editor".to_owned()));
}

#[tokio::test]
async fn a_finalizer_left_on_a_role_assignment_by_an_earlier_version_is_removed() {
    let mut harness = mock_harness().await;
    harness.writers.organization(&organization());
    harness.writers.role(&role());
    let ra = assignment().with_finalizer();
    harness.writers.assignment(&ra);
    let plain = serde_json::to_value(assignment()).expect("json");
    let (result, bodies, _) = run::<RoleAssignment>(
        harness,
        ra,
        vec![
            Expect::new(Method::PATCH, ASSIGNMENTS, {
                let obj = plain.clone();
                move |_| obj
            }),
            Expect::new(Method::PATCH, &format!("{ASSIGNMENTS}/status"), echo_status(plain)),
        ],
    )
    .await;
    result.expect("reconcile");
    assert_eq!(
        bodies[0],
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
}
