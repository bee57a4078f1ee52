//! `portcullis operator` against the real control plane: the operator runs as
//! a child process with a SQLite store, and the tests look at what a platform
//! engineer would: conditions, derived status, Events, owned Secrets, the
//! store's rows, the Lease, and `kubectl diff`.

#[path = "support/postgres.rs"]
mod postgres;
mod support;
#[path = "support/upstream_op.rs"]
mod upstream_op;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis::store::{
    AssignmentRecord, DesiredStateStore, FederationStore as _, NewUser, OAuthClientRecord,
    OrganizationRecord, RoleRecord, ScimStore, SigningKeyState, Store, UserSource, UserStore,
};
use portcullis::token::keys::{Algorithm, KeyMeta, KeyState, SigningKey};
use support::{ControlPlane, eventually, repo};

/// As in config/: the operator, its Lease and the services it runs.
const OPERATOR_NAMESPACE: &str = "portcullis";
const ISSUER_BASE: &str = "https://id.portcullis.test";

/// An operator process, killed (SIGKILL) when dropped.
struct Operator {
    child: Child,
    log: PathBuf,
    probe_port: u16,
    identity: String,
}

impl Operator {
    fn start(cp: &ControlPlane, database_url: &str, identity: &str, lease_seconds: u64) -> Operator {
        Operator::start_with(cp, database_url, identity, lease_seconds, &[])
    }

    fn start_with(
        cp: &ControlPlane,
        database_url: &str,
        identity: &str,
        lease_seconds: u64,
        extra: &[&str],
    ) -> Operator {
        Operator::start_as(cp, &cp.kubeconfig, database_url, identity, lease_seconds, extra)
    }

    /// Starts an operator with its own kubeconfig (a ServiceAccount's, to
    /// prove the RBAC in config/ is enough).
    fn start_as(
        cp: &ControlPlane,
        kubeconfig: &std::path::Path,
        database_url: &str,
        identity: &str,
        lease_seconds: u64,
        extra: &[&str],
    ) -> Operator {
        let log = cp.dir().join(format!("operator-{identity}.log"));
        let out = File::options().create(true).append(true).open(&log).expect("operator log");
        let from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("operator")
            .args(["--database-url", database_url])
            .args(["--namespace", OPERATOR_NAMESPACE])
            .args(["--identity", identity])
            .args(["--lease-duration-seconds", &lease_seconds.to_string()])
            .args(["--probe-address", "127.0.0.1:0"])
            .args(["--issuer-base-url", ISSUER_BASE])
            .args(["--scim-base-url", "https://scim.portcullis.test"])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("OPERATOR_LOG")
                    .unwrap_or_else(|_| "info,portcullis=debug,kube=warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("start portcullis operator");
        let probe_port = support::logged_probe_port(&log, from, &mut child);
        Operator { child, log, probe_port, identity: identity.to_owned() }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GETs a probe path; `(status code, body)`.
    fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.probe_port, path)
    }

    fn is_leader(&self) -> bool {
        self.get("/metrics").is_ok_and(|(_, body)| body.lines().any(|l| l == "portcullis_operator_leader 1"))
    }

    /// SIGTERM, then waits for the process to exit.
    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = eventually("operator exits after SIGTERM", Duration::from_secs(20), || {
            self.child.try_wait().map_err(|e| e.to_string())?.ok_or_else(|| "still running".to_owned())
        });
        assert!(status.success(), "operator exited with {status}:\n{}", self.log());
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- operator {} log ---\n{}", self.identity, self.log());
        }
    }
}

fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((code, body))
}

/// A control plane with the CRDs and the namespaces the tests use.
fn control_plane() -> ControlPlane {
    let cp = ControlPlane::start();
    let crds = repo().join("crds");
    cp.kubectl_ok(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
    cp.kubectl_ok(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
    for namespace in ["acme", OPERATOR_NAMESPACE] {
        cp.kubectl_ok(&["create", "namespace", namespace]);
    }
    cp
}

fn database_url(cp: &ControlPlane) -> String {
    format!("sqlite://{}?mode=rwc", cp.dir().join("store.db").display())
}

/// The same store the operator writes, opened by the test.
struct StoreProbe {
    runtime: tokio::runtime::Runtime,
    store: Store,
}

impl StoreProbe {
    fn open(url: &str) -> StoreProbe {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        let store = eventually("the store exists", Duration::from_secs(30), || {
            runtime.block_on(Store::connect(url)).map_err(|e| e.to_string())
        });
        StoreProbe { runtime, store }
    }

    fn assignment(&self, name: &str) -> Option<AssignmentRecord> {
        self.runtime.block_on(self.store.get::<AssignmentRecord>("acme", name)).expect("read the store")
    }
}

/// An IdentityProvider `corp` in Testing with its upstream at `issuer`.
fn corp_identity_provider(issuer: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{ name: corp-oidc, namespace: acme }}
stringData: {{ clientSecret: corp-upstream-secret-0123456789abcdef }}
---
apiVersion: iam.portcullis.dev/v1alpha1
kind: IdentityProvider
metadata: {{ name: corp, namespace: acme }}
spec:
  type: OIDC
  oidc:
    issuer: {issuer}
    clientId: portcullis
    clientSecretRef: {{ name: corp-oidc, key: clientSecret }}
  emailDomains: [corp.example]
  rollout:
    stage: Testing
    testUsers: [tess@corp.example]
"#
    )
}

/// Makes the operator look at `corp` again now rather than at its next
/// periodic look (a minute): a change of the spec (another test user).
fn nudge(cp: &ControlPlane, n: u32) {
    let patch = format!(
        r#"{{"spec":{{"rollout":{{"testUsers":["tess@corp.example","tester-{n}@corp.example"]}}}}}}"#
    );
    cp.kubectl_ok(&[
        "patch",
        "identityproviders.iam.portcullis.dev",
        "corp",
        "-n",
        "acme",
        "--type",
        "merge",
        "-p",
        &patch,
    ]);
}

#[test]
fn the_operator_reports_an_identity_providers_rollout_and_upstream_health() {
    let cp = control_plane();
    let url = database_url(&cp);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let op = runtime.block_on(upstream_op::UpstreamOp::start(
        serde_json::json!([{ "client_id": "portcullis", "client_secret": "corp-upstream-secret-0123456789abcdef",
                              "redirect_uris": [format!("{ISSUER_BASE}/o/acme/sso/oidc/corp/callback")] }]),
        serde_json::json!({}),
    ));
    let _operator = Operator::start(&cp, &url, "solo", 15);
    cp.kubectl_ok(&[
        "apply",
        "--server-side",
        "-f",
        repo().join("examples/acme/organization.yaml").to_str().unwrap(),
    ]);
    apply_yaml(&cp, "corp", &corp_identity_provider(&op.issuer));
    let idp = "identityproviders.iam.portcullis.dev";
    let reason_of = |type_: &str| condition(&cp, idp, "corp", type_);

    // The upstream answers; nobody has signed in through it in Testing yet.
    eventually("the upstream is found healthy", Duration::from_secs(30), || {
        match reason_of("UpstreamHealthy") {
            (status, reason) if status == "True" => Ok(reason),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(reason_of("ReadyToAdvance"), ("False".to_owned(), "AwaitingTestSignIns".to_owned()));
    assert_eq!(
        jsonpath(&cp, idp, "corp", "{.status.rollout.stage} {.status.rollout.signIns24h}"),
        "Testing 0"
    );
    let table = cp.kubectl_ok(&["get", idp, "corp", "-n", "acme"]);
    let (header, row) = table.trim().split_once('\n').expect("a header and a row");
    let columns: Vec<&str> = header.split_whitespace().collect();
    let values: Vec<&str> = row.split_whitespace().collect();
    let column = |name: &str| {
        values[columns.iter().position(|c| *c == name).unwrap_or_else(|| panic!("{name}: {table}"))]
    };
    assert_eq!(
        (column("STAGE"), column("UPSTREAM-HEALTHY"), column("ADVANCE")),
        ("Testing", "True", "AwaitingTestSignIns"),
        "{table}"
    );

    // A test user signs in (counted in the store, as the token service counts it).
    let store = StoreProbe::open(&url);
    let outcome = portcullis::store::SsoOutcome {
        organization: "acme",
        identity_provider: "corp",
        stage: "Testing",
        failure: None,
        at_ms: jiff::Timestamp::now().as_millisecond(),
    };
    store.runtime.block_on(store.store.record_sso_outcome(&outcome)).expect("count a sign-in");
    nudge(&cp, 1);
    eventually("ready to advance", Duration::from_secs(30), || match reason_of("ReadyToAdvance") {
        (status, reason) if status == "True" => Ok(reason),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(reason_of("ReadyToAdvance").1, "TestUsersSignedIn");
    assert_eq!(jsonpath(&cp, idp, "corp", "{.status.rollout.signIns24h}"), "1");
    let wide = cp.kubectl_ok(&["get", idp, "corp", "-n", "acme", "-o", "wide"]);
    assert!(wide.contains("SIGN-INS") && wide.contains("TestUsersSignedIn"), "{wide}");

    // The upstream goes away: unhealthy, not ready to advance, and an Event says so.
    drop(op);
    nudge(&cp, 2);
    eventually("the upstream is found unhealthy", Duration::from_secs(30), || {
        match reason_of("UpstreamHealthy") {
            (status, reason) if status == "False" => Ok(reason),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(reason_of("UpstreamHealthy").1, "DiscoveryFailed");
    assert_eq!(reason_of("ReadyToAdvance"), ("False".to_owned(), "UpstreamUnhealthy".to_owned()));
    assert_eq!(condition(&cp, idp, "corp", "Ready").0, "True", "an upstream outage is reported beside Ready");
    eventually("an Event tells of it", Duration::from_secs(30), || {
        let events =
            cp.kubectl_ok(&["get", "events", "-n", "acme", "--field-selector", "involvedObject.name=corp"]);
        if events.contains("UpstreamHealthy is False") { Ok(()) } else { Err(events) }
    });
}

/// `kubectl get` of one field by JSONPath.
fn jsonpath(cp: &ControlPlane, resource: &str, name: &str, path: &str) -> String {
    let out = cp.kubectl(&["get", resource, name, "-n", "acme", "-o", &format!("jsonpath={path}")]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn condition(cp: &ControlPlane, resource: &str, name: &str, type_: &str) -> (String, String) {
    let status =
        jsonpath(cp, resource, name, &format!("{{.status.conditions[?(@.type==\"{type_}\")].status}}"));
    let reason =
        jsonpath(cp, resource, name, &format!("{{.status.conditions[?(@.type==\"{type_}\")].reason}}"));
    (status, reason)
}

fn wait_for_condition(
    cp: &ControlPlane,
    resource: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) {
    eventually(&format!("{resource} {name}: {type_}={status} ({reason})"), Duration::from_secs(60), || {
        let got = condition(cp, resource, name, type_);
        if got == (status.to_owned(), reason.to_owned()) { Ok(()) } else { Err(format!("{got:?}")) }
    });
}

const KINDS: &str = "organizations.iam.portcullis.dev,roles.iam.portcullis.dev,roleassignments.iam.portcullis.dev,\
                     identityproviders.iam.portcullis.dev,oauthclients.iam.portcullis.dev";

fn apply_yaml(cp: &ControlPlane, name: &str, yaml: &str) {
    let path = cp.dir().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("write manifest");
    cp.kubectl_ok(&["apply", "--server-side", "-f", path.to_str().unwrap()]);
}

/// A kubeconfig for the ServiceAccount portcullis/portcullis-operator.
fn service_account_kubeconfig(cp: &ControlPlane) -> PathBuf {
    cp.service_account_kubeconfig(OPERATOR_NAMESPACE, "portcullis-operator")
}

fn assignment_yaml(name: &str, role: &str) -> String {
    format!(
        "apiVersion: iam.portcullis.dev/v1alpha1\nkind: RoleAssignment\nmetadata:\n  name: {name}\n  namespace: acme\n\
         spec:\n  principal:\n    kind: User\n    name: bob@acme.com\n  role: {role}\n  scope: Organization\n"
    )
}

#[test]
fn the_operator_reconciles_acme_follows_changes_and_honours_legal_hold() {
    let cp = control_plane();
    let url = database_url(&cp);
    let operator = Operator::start(&cp, &url, "solo", 15);
    let acme = repo().join("examples/acme");
    cp.kubectl_ok(&["apply", "--server-side", "-f", acme.to_str().unwrap()]);

    // 1. Every resource of the example becomes Ready.
    cp.kubectl_ok(&["wait", "--for=condition=Ready", "--timeout=120s", "-n", "acme", KINDS, "--all"]);
    eventually("the operator is ready", Duration::from_secs(10), || match operator.get("/readyz")? {
        (200, _) => Ok(()),
        (code, body) => Err(format!("{code} {body}")),
    });

    // Audited: each resource as changed by its Kubernetes field manager
    // (`kubectl apply --server-side` is manager `kubectl`), and the signing
    // key the operator made; the exported chain verifies.
    let exported =
        eventually("acme's audit trail has the applied resources", Duration::from_secs(30), || {
            let events = audit_export(&url, "acme")?;
            let find = |action: &str, target: &str| {
                events.iter().find(|e| e["action"] == action && e["target"]["name"] == target).cloned()
            };
            let role = find("role.apply", "acme/org-admin").ok_or("no role.apply of acme/org-admin yet")?;
            let assignment = find("roleAssignment.apply", "acme/ci-deployer-integrations")
                .ok_or("no roleAssignment.apply of acme/ci-deployer-integrations yet")?;
            let key = events
                .iter()
                .find(|e| e["action"] == "signingKey.create")
                .cloned()
                .ok_or("no signingKey.create yet")?;
            Ok((role, assignment, key))
        });
    let (role, assignment, key) = exported;
    for applied in [&role, &assignment] {
        assert_eq!(
            applied["actor"],
            serde_json::json!({"kind": "kubernetes", "name": "kubectl"}),
            "{applied}"
        );
        assert_eq!(applied["details"]["generation"], 1, "{applied}");
    }
    assert_eq!(key["actor"]["kind"], "system", "{key}");
    assert_eq!(key["details"]["state"], "active", "{key}");
    let verified = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "verify", "--database-url", &url, "--organization", "acme"])
        .output()
        .expect("run portcullis audit verify");
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));

    // Derived status fields.
    assert_eq!(
        jsonpath(&cp, "organizations.iam.portcullis.dev", "acme", "{.status.issuer}"),
        format!("{ISSUER_BASE}/o/acme")
    );
    let effective = jsonpath(&cp, "roles.iam.portcullis.dev", "org-admin", "{.status.effectivePermissions}");
    for permission in
        ["iam.manage", "journeys.publish", "deliverability.manage-warmup", "data.manage-webhooks"]
    {
        assert!(effective.contains(permission), "org-admin lacks {permission}: {effective}");
    }
    assert!(!effective.contains("compliance.export-consent"), "{effective}");
    assert_eq!(
        condition(&cp, "roleassignments.iam.portcullis.dev", "alice-martin-org-admin", "PrincipalResolved"),
        ("False".to_owned(), "PrincipalPending".to_owned()),
        "no user exists yet, and the assignment is Ready all the same"
    );
    assert_eq!(
        jsonpath(
            &cp,
            "roleassignments.iam.portcullis.dev",
            "ci-deployer-integrations",
            "{.status.resolvedPrincipal}"
        ),
        "Client/ci-deployer"
    );
    // Where the SCIM service serves acme (the token in okta's Secret says who calls).
    assert_eq!(
        jsonpath(&cp, "identityproviders.iam.portcullis.dev", "okta", "{.status.scimEndpoint}"),
        "https://scim.portcullis.test/o/acme/scim/v2"
    );
    assert_eq!(
        jsonpath(&cp, "identityproviders.iam.portcullis.dev", "okta", "{.status.scimTokenSecretName}"),
        "okta-scim-token"
    );
    assert_eq!(
        jsonpath(&cp, "oauthclients.iam.portcullis.dev", "ci-deployer", "{.status.secretName}"),
        "ci-deployer-client-secret"
    );
    assert_eq!(
        jsonpath(&cp, "oauthclients.iam.portcullis.dev", "journey-studio-web", "{.status.secretName}"),
        ""
    );
    // The warnings the example carries on purpose show, without making it not Ready.
    assert_eq!(condition(&cp, "roles.iam.portcullis.dev", "org-admin", "Ready").0, "True");

    // Owned Secrets: labelled, owned, and only hashes in the store.
    let client_secret = cp.kubectl_ok(&[
        "get",
        "secret",
        "ci-deployer-client-secret",
        "-n",
        "acme",
        "-o",
        "jsonpath={.data.client-secret}",
    ]);
    let client_secret = decode_base64(&client_secret);
    assert!(client_secret.len() >= 40, "a generated secret: {client_secret:?}");
    let owner = cp.kubectl_ok(&[
        "get", "secret", "ci-deployer-client-secret", "-n", "acme", "-o",
        "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.metadata.labels.app\\.kubernetes\\.io/managed-by}",
    ]);
    assert_eq!(owner, "OAuthClient/ci-deployer portcullis-operator");
    cp.kubectl_ok(&["get", "secret", "okta-scim-token", "-n", "acme"]);
    let keys = cp.kubectl_ok(&[
        "get",
        "secret",
        "acme-signing-keys",
        "-n",
        "acme",
        "-o",
        "jsonpath={.data.keys\\.json}",
    ]);
    // The Secret is the token service's keys directory for acme: it loads as is.
    let metas: Vec<KeyMeta> = serde_json::from_str(&decode_base64(&keys)).expect("keys.json");
    assert_eq!(metas.len(), 1, "{metas:?}");
    let kid = metas[0].kid.clone();
    let pem = cp.kubectl_ok(&[
        "get",
        "secret",
        "acme-signing-keys",
        "-n",
        "acme",
        "-o",
        &format!("jsonpath={{.data.{kid}\\.pem}}"),
    ]);
    let key =
        SigningKey::from_pkcs8_pem(metas[0].clone(), &decode_base64(&pem)).expect("the PEM is the kid's key");
    assert_eq!((key.state(), key.algorithm()), (KeyState::Active, Algorithm::ES256));

    // 2. The store holds the desired state.
    let store = StoreProbe::open(&url);
    let alice = store.assignment("alice-martin-org-admin").expect("assignment stored");
    assert_eq!((alice.role.as_str(), alice.principal_name.as_str()), ("org-admin", "alice.martin@acme.com"));
    let org: OrganizationRecord =
        store.runtime.block_on(store.store.get("acme", "acme")).expect("read").expect("organization stored");
    assert!(org.catalog.contains(&"journeys.publish".to_owned()));
    let client: OAuthClientRecord =
        store.runtime.block_on(store.store.get("acme", "ci-deployer")).expect("read").expect("client stored");
    let hash = client.secret_hash.expect("the client secret's hash is stored");
    assert!(hash.expose().starts_with("sha256:"), "a hash, not the secret");
    assert!(!hash.expose().contains(&client_secret));
    let signing_keys = store.runtime.block_on(store.store.list_signing_keys("acme")).expect("keys");
    assert_eq!(signing_keys.len(), 1);
    assert_eq!(signing_keys[0].state, SigningKeyState::Active);
    assert_eq!(signing_keys[0].kid, kid);

    // Of the SCIM token only its hash is stored, and that hash identifies okta.
    let scim_token =
        cp.kubectl_ok(&["get", "secret", "okta-scim-token", "-n", "acme", "-o", "jsonpath={.data.token}"]);
    let scim_hash = portcullis::secret::SecretHash::of(&decode_base64(&scim_token)).to_string();
    let provider = store
        .runtime
        .block_on(store.store.scim_provider_for_token("acme", &scim_hash))
        .expect("read")
        .expect("okta's SCIM token hash is stored");
    assert_eq!(provider.meta.name, "okta");

    // A user appearing in the store (as SCIM or a first sign-in would create
    // it) resolves the assignment waiting for it at once: the change feed
    // wakes it, well before its periodic recheck (5 minutes).
    let alice_user = NewUser::new("acme", "alice.martin@acme.com", UserSource::Scim);
    store.runtime.block_on(store.store.create_user(&alice_user)).expect("create user");
    eventually("alice's assignment sees her user", Duration::from_secs(20), || {
        match condition(
            &cp,
            "roleassignments.iam.portcullis.dev",
            "alice-martin-org-admin",
            "PrincipalResolved",
        ) {
            (status, reason) if status == "True" && reason == "PrincipalFound" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    // 3. GitOps: what Git holds is what the cluster has (Argo CD shows Synced).
    let diff = cp.kubectl(&["diff", "--server-side", "-f", acme.to_str().unwrap()]);
    assert!(
        diff.status.success() && diff.stdout.is_empty(),
        "kubectl diff is not empty ({}):\n{}{}",
        diff.status,
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );

    // 4. A broken reference names its cause; fixing it makes it Ready again,
    //    and the store follows each change.
    apply_yaml(&cp, "bob", &assignment_yaml("bob-admin", "ghost-role"));
    wait_for_condition(
        &cp,
        "roleassignments.iam.portcullis.dev",
        "bob-admin",
        "Ready",
        "False",
        "RoleNotFound",
    );
    assert_eq!(
        condition(&cp, "roleassignments.iam.portcullis.dev", "bob-admin", "ReferencesResolved"),
        ("False".to_owned(), "RoleNotFound".to_owned())
    );
    let message = jsonpath(
        &cp,
        "roleassignments.iam.portcullis.dev",
        "bob-admin",
        "{.status.conditions[?(@.type==\"Ready\")].message}",
    );
    assert!(message.contains("ghost-role"), "{message}");
    eventually("the store holds the broken assignment", Duration::from_secs(30), || {
        match store.assignment("bob-admin") {
            Some(r) if r.role == "ghost-role" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let events = cp.kubectl_ok(&[
        "get",
        "events.events.k8s.io",
        "-n",
        "acme",
        "--field-selector",
        "regarding.name=bob-admin",
        "-o",
        "jsonpath={range .items[*]}{.type} {.reason}{\"\\n\"}{end}",
    ]);
    assert!(events.contains("Warning RoleNotFound"), "an Event says what broke:\n{events}");

    apply_yaml(&cp, "bob", &assignment_yaml("bob-admin", "org-admin"));
    wait_for_condition(&cp, "roleassignments.iam.portcullis.dev", "bob-admin", "Ready", "True", "Reconciled");
    eventually("the store follows the fix", Duration::from_secs(30), || {
        match store.assignment("bob-admin") {
            Some(r) if r.role == "org-admin" && r.meta.generation == 2 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let observed =
        jsonpath(&cp, "roleassignments.iam.portcullis.dev", "bob-admin", "{.status.observedGeneration}");
    assert_eq!(observed, "2");

    // 5. A Role going away re-reconciles the assignments that name it.
    cp.kubectl_ok(&["delete", "roles.iam.portcullis.dev", "integrations", "-n", "acme", "--timeout=60s"]);
    wait_for_condition(
        &cp,
        "roleassignments.iam.portcullis.dev",
        "ci-deployer-integrations",
        "Ready",
        "False",
        "RoleNotFound",
    );
    let gone: Option<RoleRecord> =
        store.runtime.block_on(store.store.get("acme", "integrations")).expect("read");
    assert!(gone.is_none(), "a deleted role leaves the store");
    cp.kubectl_ok(&["apply", "--server-side", "-f", acme.to_str().unwrap()]);
    wait_for_condition(
        &cp,
        "roleassignments.iam.portcullis.dev",
        "ci-deployer-integrations",
        "Ready",
        "True",
        "Reconciled",
    );

    // 6. Deleting the Organization under legal hold is refused, and the data stays.
    cp.kubectl_ok(&[
        "patch",
        "organizations.iam.portcullis.dev",
        "acme",
        "-n",
        "acme",
        "--type=merge",
        "-p",
        r#"{"spec":{"legalHold":true}}"#,
    ]);
    eventually("the hold is observed", Duration::from_secs(30), || {
        let observed =
            jsonpath(&cp, "organizations.iam.portcullis.dev", "acme", "{.status.observedGeneration}");
        let generation = jsonpath(&cp, "organizations.iam.portcullis.dev", "acme", "{.metadata.generation}");
        if observed == generation {
            Ok(())
        } else {
            Err(format!("observed {observed}, generation {generation}"))
        }
    });
    cp.kubectl_ok(&["delete", "organizations.iam.portcullis.dev", "acme", "-n", "acme", "--wait=false"]);
    wait_for_condition(
        &cp,
        "organizations.iam.portcullis.dev",
        "acme",
        "DeletionBlocked",
        "True",
        "LegalHold",
    );
    let org_row: Option<OrganizationRecord> =
        store.runtime.block_on(store.store.get("acme", "acme")).expect("read");
    assert!(org_row.is_some(), "the data stays under legal hold");
    cp.kubectl_ok(&["get", "secret", "acme-signing-keys", "-n", "acme"]);

    // Lifting the hold lets the deletion finish.
    cp.kubectl_ok(&[
        "patch",
        "organizations.iam.portcullis.dev",
        "acme",
        "-n",
        "acme",
        "--type=merge",
        "-p",
        r#"{"spec":{"legalHold":false}}"#,
    ]);
    eventually("the organization is gone", Duration::from_secs(60), || {
        let out = cp.kubectl(&["get", "organizations.iam.portcullis.dev", "acme", "-n", "acme"]);
        if out.status.success() { Err("still there".to_owned()) } else { Ok(()) }
    });
    let org_row: Option<OrganizationRecord> =
        store.runtime.block_on(store.store.get("acme", "acme")).expect("read");
    assert!(org_row.is_none(), "the organization left the store");
    assert!(store.runtime.block_on(store.store.list_signing_keys("acme")).expect("keys").is_empty());
    // Everything else in the namespace now says why it grants nothing.
    wait_for_condition(
        &cp,
        "roleassignments.iam.portcullis.dev",
        "alice-martin-org-admin",
        "Ready",
        "False",
        "OrganizationNotFound",
    );
}

/// An organization's sealed audit events, as `portcullis audit export` writes them.
fn audit_export(database_url: &str, organization: &str) -> Result<Vec<serde_json::Value>, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "export", "--database-url", database_url, "--organization", organization])
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
            Ok(line["event"].clone())
        })
        .collect()
}

fn reconcile_count(operator: &Operator) -> u64 {
    let (_, body) = operator.get("/metrics").unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("portcullis_operator_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn decode_base64(text: &str) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).expect("base64");
    String::from_utf8(bytes).expect("utf-8")
}

fn lease_holder(cp: &ControlPlane) -> String {
    let out = cp.kubectl(&[
        "get",
        "lease",
        "portcullis-operator",
        "-n",
        OPERATOR_NAMESPACE,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn two_operators_elect_one_leader_which_hands_over_on_kill_and_on_sigterm() {
    const LEASE: u64 = 6;
    let cp = control_plane();
    let url = database_url(&cp);
    let workloads = [
        "--image",
        "registry.test/portcullis:1.2.3",
        "--token-service-replicas",
        "3",
        "--scim-service-replicas",
        "1",
        "--owner-deployment",
        "portcullis-operator",
    ];
    // The Secret the services read the database URL from (the operator checks it).
    cp.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "portcullis-database",
        "-n",
        OPERATOR_NAMESPACE,
        "--from-literal=url=postgres://portcullis@db.test/portcullis",
    ]);
    // The operator's own Deployment (never started: there is no kubelet) owns the services.
    cp.kubectl_ok(&[
        "create",
        "deployment",
        "portcullis-operator",
        "--image=registry.test/portcullis:1.2.3",
        "-n",
        OPERATOR_NAMESPACE,
    ]);
    let first = Operator::start_with(&cp, &url, "first", LEASE, &workloads);
    eventually("first leads", Duration::from_secs(30), || {
        if first.is_leader() && lease_holder(&cp) == "first" { Ok(()) } else { Err(lease_holder(&cp)) }
    });
    let mut second = Operator::start(&cp, &url, "second", LEASE);
    eventually("second is up", Duration::from_secs(30), || second.get("/healthz").map(|_| ()));
    eventually("second stands by, ready to take over", Duration::from_secs(30), || {
        match second.get("/readyz")? {
            (200, _) => Ok(()),
            (code, body) => Err(format!("{code} {body}")),
        }
    });
    assert!(!second.is_leader());

    let acme = repo().join("examples/acme");
    cp.kubectl_ok(&["apply", "--server-side", "-f", acme.to_str().unwrap()]);
    cp.kubectl_ok(&["wait", "--for=condition=Ready", "--timeout=120s", "-n", "acme", KINDS, "--all"]);
    assert!(!second.is_leader(), "only one operator reconciles");
    assert_eq!(reconcile_count(&second), 0, "the follower reconciled nothing");

    // The leader runs the two services: Deployments and Services, as configured.
    eventually("the managed services exist", Duration::from_secs(30), || {
        let out = cp.kubectl(&["get", "deployments,services", "-n", OPERATOR_NAMESPACE, "-o", "name"]);
        let names = String::from_utf8_lossy(&out.stdout).into_owned();
        let all = [
            "deployment.apps/portcullis-token-service",
            "deployment.apps/portcullis-scim-service",
            "service/portcullis-token-service",
            "service/portcullis-scim-service",
        ];
        if all.iter().all(|n| names.contains(n)) { Ok(()) } else { Err(names) }
    });
    let token_service = cp.kubectl_ok(&[
        "get", "deployment", "portcullis-token-service", "-n", OPERATOR_NAMESPACE, "-o",
        "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].args[0]} {.spec.template.spec.containers[0].env[?(@.name==\"PORTCULLIS_DATABASE_URL\")].valueFrom.secretKeyRef.name} {.metadata.managedFields[0].manager}",
    ]);
    assert_eq!(
        token_service,
        "3 registry.test/portcullis:1.2.3 token-service portcullis-database portcullis-operator"
    );
    let owner = cp.kubectl_ok(&[
        "get", "deployment,service", "portcullis-token-service", "-n", OPERATOR_NAMESPACE, "-o",
        "jsonpath={range .items[*]}{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {end}",
    ]);
    assert_eq!(owner.trim(), "Deployment/portcullis-operator Deployment/portcullis-operator");

    // Kill the leader: the other takes over within the lease duration.
    let mut first = first;
    first.kill();
    let killed = Instant::now();
    eventually("second takes over", Duration::from_secs(LEASE * 3), || {
        if lease_holder(&cp) == "second" && second.is_leader() { Ok(()) } else { Err(lease_holder(&cp)) }
    });
    let takeover = killed.elapsed();
    assert!(takeover <= Duration::from_secs(LEASE + 3), "took {takeover:?} with a {LEASE}s lease");
    apply_yaml(&cp, "bob", &assignment_yaml("bob-admin", "org-admin"));
    wait_for_condition(&cp, "roleassignments.iam.portcullis.dev", "bob-admin", "Ready", "True", "Reconciled");

    // A clean shutdown releases the lease at once: a third takes over well
    // before the lease would have expired.
    // The third runs without SCIM: the scim-service it no longer wants goes.
    let workloads = ["--image", "registry.test/portcullis:1.2.4", "--scim-service-replicas", "0"];
    let third = Operator::start_with(&cp, &url, "third", LEASE, &workloads);
    eventually("third is up", Duration::from_secs(30), || third.get("/healthz").map(|_| ()));
    second.terminate();
    let terminated = Instant::now();
    eventually("third takes over", Duration::from_secs(LEASE * 3), || {
        if lease_holder(&cp) == "third" && third.is_leader() { Ok(()) } else { Err(lease_holder(&cp)) }
    });
    let handover = terminated.elapsed();
    assert!(handover < Duration::from_secs(LEASE / 2), "SIGTERM hand-over took {handover:?}");
    assert!(second.log().contains("released the lease"), "{}", second.log());
    eventually("scim-service is deleted, token-service updated", Duration::from_secs(30), || {
        let out = cp.kubectl(&[
            "get",
            "deployments",
            "-l",
            "app.kubernetes.io/managed-by=portcullis-operator",
            "-n",
            OPERATOR_NAMESPACE,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.spec.template.spec.containers[0].image} {end}",
        ]);
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        if got.trim() == "portcullis-token-service=registry.test/portcullis:1.2.4" {
            Ok(())
        } else {
            Err(got)
        }
    });
}

#[test]
fn the_operator_keeps_running_through_an_api_server_restart() {
    let cp = control_plane();
    let url = database_url(&cp);
    // This one runs as the ServiceAccount of config/rbac, with only the
    // permissions granted there.
    let rbac = cp.kubectl_ok(&["kustomize", repo().join("config/rbac").to_str().unwrap()]);
    apply_yaml(&cp, "rbac", &rbac);
    let kubeconfig = service_account_kubeconfig(&cp);
    let operator = Operator::start_as(&cp, &kubeconfig, &url, "steady", 15, &[]);
    let acme = repo().join("examples/acme");
    cp.kubectl_ok(&["apply", "--server-side", "-f", acme.to_str().unwrap()]);
    cp.kubectl_ok(&["wait", "--for=condition=Ready", "--timeout=120s", "-n", "acme", KINDS, "--all"]);

    // While it starts, a restarted API server answers "forbidden" until its RBAC
    // cache is loaded, so the RBAC check covers the steady state before it.
    let steady_log = operator.log();
    assert!(!steady_log.contains("forbidden"), "the RBAC of config/rbac lacks something:\n{steady_log}");
    let down = cp.restart_apiserver();
    eprintln!("kube-apiserver was down for {down:?}");
    assert!(operator.get("/healthz").is_ok(), "the operator kept running:\n{}", operator.log());

    // It watches again and reconciles what changed after the restart.
    apply_yaml(&cp, "bob", &assignment_yaml("bob-admin", "ghost-role"));
    wait_for_condition(
        &cp,
        "roleassignments.iam.portcullis.dev",
        "bob-admin",
        "Ready",
        "False",
        "RoleNotFound",
    );
    apply_yaml(&cp, "bob", &assignment_yaml("bob-admin", "org-admin"));
    wait_for_condition(&cp, "roleassignments.iam.portcullis.dev", "bob-admin", "Ready", "True", "Reconciled");
    let store = StoreProbe::open(&url);
    eventually("the store follows", Duration::from_secs(30), || match store.assignment("bob-admin") {
        Some(r) if r.role == "org-admin" => Ok(()),
        other => Err(format!("{other:?}")),
    });
    assert!(operator.is_leader(), "still (or again) the leader");
}

#[test]
fn deployment_manifests_carry_the_generated_crds() {
    for copy in ["config/crd/bases", "charts/portcullis/crds"] {
        for (file, yaml) in portcullis::cli::crds::render() {
            let committed = std::fs::read_to_string(repo().join(copy).join(file)).unwrap_or_default();
            assert!(committed == yaml, "{copy}/{file} is stale: run `cargo run -- crds --out-dir {copy}`");
        }
    }
}

/// A TCP proxy on loopback in front of a real PostgreSQL that can cut every
/// connection and refuse new ones: the database going away, and coming back.
struct Outage {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Outage {
    fn start(target_port: u16) -> Outage {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let port = listener.local_addr().expect("proxy address").port();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (accept_up, accept_connections) = (up.clone(), connections.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else { continue };
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else { continue };
                if let Ok(mut open) = accept_connections.lock() {
                    open.extend(client.try_clone().ok());
                    open.extend(server.try_clone().ok());
                }
                pipe(client, server2);
                pipe(server, client2);
            }
        });
        Outage { port, up, connections }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut open) = self.connections.lock() {
            for stream in open.drain(..) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn the_operator_survives_a_database_outage_and_says_so_meanwhile() {
    let pg = postgres::Postgres::start();
    let direct = pg.create_database();
    let proxy = Outage::start(pg.port());
    let through_proxy = direct.replace(&format!(":{}/", pg.port()), &format!(":{}/", proxy.port));
    let cp = control_plane();
    let operator = Operator::start(&cp, &through_proxy, "pg", 15);
    let acme = repo().join("examples/acme");
    cp.kubectl_ok(&["apply", "--server-side", "-f", acme.to_str().unwrap()]);
    cp.kubectl_ok(&["wait", "--for=condition=Ready", "--timeout=120s", "-n", "acme", KINDS, "--all"]);

    proxy.cut();
    apply_yaml(&cp, "bob", &assignment_yaml("bob-admin", "org-admin"));
    eventually("the outage shows in the status", Duration::from_secs(120), || {
        let stored = condition(&cp, "roleassignments.iam.portcullis.dev", "bob-admin", "Stored");
        let ready = condition(&cp, "roleassignments.iam.portcullis.dev", "bob-admin", "Ready");
        let down = ("False".to_owned(), "StoreUnavailable".to_owned());
        if stored == down && ready == down {
            Ok(())
        } else {
            Err(format!("Stored {stored:?}, Ready {ready:?}"))
        }
    });
    assert!(operator.get("/healthz").is_ok(), "the operator keeps running");

    proxy.restore();
    wait_for_condition(&cp, "roleassignments.iam.portcullis.dev", "bob-admin", "Ready", "True", "Reconciled");
    let store = StoreProbe::open(&direct);
    assert_eq!(store.assignment("bob-admin").map(|r| r.role), Some("org-admin".to_owned()));
    let (_, metrics) = operator.get("/metrics").expect("metrics");
    assert!(
        metrics.contains(
            r#"portcullis_operator_reconcile_errors_total{kind="RoleAssignment",reason="StoreUnavailable"}"#
        ),
        "errors are counted by reason:\n{metrics}"
    );
}

// === Measurements for BENCHMARKS.md (ignored: run them with
// `cargo test --release --test operator -- --ignored --nocapture measure_`). ===

fn kube_client(runtime: &tokio::runtime::Runtime, cp: &ControlPlane) -> kube::Client {
    runtime.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(&cp.kubeconfig).expect("kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .expect("kube config");
        kube::Client::try_from(config).expect("kube client")
    })
}

/// The store a measurement runs against: `BENCH_DATABASE=postgres` for a
/// real PostgreSQL (kept alive by the returned guard), a SQLite file otherwise.
fn bench_database(cp: &ControlPlane) -> (String, Option<postgres::Postgres>) {
    if std::env::var("BENCH_DATABASE").is_ok_and(|v| v == "postgres") {
        let pg = postgres::Postgres::start();
        let url = pg.create_database();
        (url, Some(pg))
    } else {
        (database_url(cp), None)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or_default();
    (ticks(11) + ticks(12)) / 100.0
}

fn control_plane_cpu_seconds(cp: &ControlPlane) -> (f64, f64) {
    let pid = |name: &str| {
        std::fs::read_to_string(cp.dir().join(format!("{name}.pid")))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    };
    (cpu_seconds(pid("kube-apiserver")), cpu_seconds(pid("etcd")))
}

fn peak_rss_mb(operator: &Operator) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", operator.child.id())).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_default();
    kb / 1024.0
}

#[test]
#[ignore = "a measurement, not a test: see BENCHMARKS.md"]
fn measure_apply_to_store_latency() {
    use kube::api::{Api, PostParams};
    use portcullis::api::RoleAssignment;
    const SAMPLES: usize = 200;
    let cp = control_plane();
    let (url, _postgres) = bench_database(&cp);
    let operator = Operator::start(&cp, &url, "bench", 15);
    let acme = repo().join("examples/acme");
    cp.kubectl_ok(&["apply", "--server-side", "-f", acme.to_str().unwrap()]);
    cp.kubectl_ok(&["wait", "--for=condition=Ready", "--timeout=120s", "-n", "acme", KINDS, "--all"]);
    let store = StoreProbe::open(&url);
    let client = kube_client(&store.runtime, &cp);
    let api: Api<RoleAssignment> = Api::namespaced(client, "acme");
    let mut latencies = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let ra: RoleAssignment = serde_json::from_value(serde_json::json!({
            "apiVersion": "iam.portcullis.dev/v1alpha1",
            "kind": "RoleAssignment",
            "metadata": {"name": format!("latency-{i}"), "namespace": "acme"},
            "spec": {"principal": {"kind": "User", "name": format!("user{i}@acme.com")}, "role": "org-admin"},
        }))
        .expect("assignment");
        let started = Instant::now();
        store.runtime.block_on(api.create(&PostParams::default(), &ra)).expect("create");
        // Polled every millisecond: this is the measurement's resolution.
        loop {
            if store.assignment(&format!("latency-{i}")).is_some() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "latency-{i} never reached the store");
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    eprintln!(
        "apply → store over {SAMPLES} RoleAssignments: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}; operator peak RSS {:.1} MB",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies[SAMPLES - 1],
        peak_rss_mb(&operator),
    );
    assert!(percentile(&latencies, 0.99) <= Duration::from_millis(500), "p99 over the 500 ms target");
}

#[test]
#[ignore = "a measurement, not a test: see BENCHMARKS.md"]
fn measure_initial_sync_of_10000_assignments_and_500_roles() {
    use futures::StreamExt;
    use kube::api::{Api, PostParams};
    use portcullis::api::{Organization, Role, RoleAssignment};
    const ROLES: usize = 500;
    const ASSIGNMENTS: usize = 10_000;
    let cp = control_plane();
    cp.kubectl_ok(&["create", "namespace", "bench"]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = kube_client(&runtime, &cp);
    let created = Instant::now();
    runtime.block_on(async {
        let permissions: Vec<serde_json::Value> =
            (0..50).map(|i| serde_json::json!({"name": format!("domain{}.action{i}", i % 10)})).collect();
        let org: Organization = serde_json::from_value(serde_json::json!({
            "apiVersion": "iam.portcullis.dev/v1alpha1", "kind": "Organization",
            "metadata": {"name": "bench", "namespace": "bench"},
            "spec": {"displayName": "Bench", "permissions": permissions, "workspaces": [{"name": "main"}]},
        }))
        .expect("organization");
        Api::<Organization>::namespaced(client.clone(), "bench").create(&PostParams::default(), &org).await.expect("org");
        let roles = Api::<Role>::namespaced(client.clone(), "bench");
        futures::stream::iter(0..ROLES)
            .map(|i| {
                let roles = roles.clone();
                async move {
                    let includes: Vec<String> = if i > 0 { vec![format!("role-{}", i - 1)] } else { vec![] };
                    let role: Role = serde_json::from_value(serde_json::json!({
                        "apiVersion": "iam.portcullis.dev/v1alpha1", "kind": "Role",
                        "metadata": {"name": format!("role-{i}"), "namespace": "bench"},
                        "spec": {"permissions": [format!("domain{}.*", i % 10), format!("domain{}.action{}", i % 10, i % 50)],
                                 "includedRoles": if i % 10 == 0 { includes } else { vec![] }},
                    }))
                    .expect("role");
                    roles.create(&PostParams::default(), &role).await.expect("create role");
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
        let assignments = Api::<RoleAssignment>::namespaced(client.clone(), "bench");
        futures::stream::iter(0..ASSIGNMENTS)
            .map(|i| {
                let assignments = assignments.clone();
                async move {
                    let ra: RoleAssignment = serde_json::from_value(serde_json::json!({
                        "apiVersion": "iam.portcullis.dev/v1alpha1", "kind": "RoleAssignment",
                        "metadata": {"name": format!("ra-{i}"), "namespace": "bench"},
                        "spec": {"principal": {"kind": "User", "name": format!("user{i}@bench.example")},
                                 "role": format!("role-{}", i % ROLES)},
                    }))
                    .expect("assignment");
                    assignments.create(&PostParams::default(), &ra).await.expect("create assignment");
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
    });
    eprintln!("created {ROLES} Roles and {ASSIGNMENTS} RoleAssignments in {:?}", created.elapsed());

    let (url, _postgres) = bench_database(&cp);
    let (apiserver_before, etcd_before) = control_plane_cpu_seconds(&cp);
    let started = Instant::now();
    let operator = Operator::start(&cp, &url, "bench", 15);
    // Watched, not listed: polling 10,500 objects would load the API server
    // the operator is being measured against.
    let synced = runtime.block_on(async {
        use kube::runtime::{WatchStreamExt, watcher};
        use std::collections::HashMap;
        fn is_ready(status: Option<&portcullis::api::CommonStatus>, generation: Option<i64>) -> bool {
            status.is_some_and(|s| {
                s.observed_generation == generation
                    && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
            })
        }
        let roles = watcher(Api::<Role>::namespaced(client.clone(), "bench"), watcher::Config::default())
            .applied_objects()
            .map(|r| {
                r.map(|o| {
                    (
                        format!("Role/{}", o.metadata.name.clone().unwrap_or_default()),
                        is_ready(o.status.as_ref().map(|s| &s.common), o.metadata.generation),
                    )
                })
            });
        let assignments =
            watcher(Api::<RoleAssignment>::namespaced(client.clone(), "bench"), watcher::Config::default())
                .applied_objects()
                .map(|r| {
                    r.map(|o| {
                        (
                            format!("RoleAssignment/{}", o.metadata.name.clone().unwrap_or_default()),
                            is_ready(o.status.as_ref().map(|s| &s.common), o.metadata.generation),
                        )
                    })
                });
        let mut events = std::pin::pin!(futures::stream::select(roles, assignments));
        let mut ready: HashMap<String, bool> = HashMap::new();
        let deadline = Duration::from_secs(300);
        loop {
            let remaining = deadline.checked_sub(started.elapsed()).expect("every object Ready within 300 s");
            match tokio::time::timeout(remaining, events.next()).await {
                Ok(Some(Ok((name, is_ready)))) => {
                    ready.insert(name, is_ready);
                    if ready.len() == ROLES + ASSIGNMENTS && ready.values().all(|r| *r) {
                        return started.elapsed();
                    }
                }
                Ok(Some(Err(e))) => eprintln!("watch: {e}"),
                Ok(None) => panic!("watch ended"),
                Err(_) => panic!(
                    "not every object Ready after {deadline:?}: {} of {} seen Ready",
                    ready.values().filter(|r| **r).count(),
                    ROLES + ASSIGNMENTS
                ),
            }
        }
    });
    let store = StoreProbe::open(&url);
    let stored =
        store.runtime.block_on(store.store.list_uids::<AssignmentRecord>("bench")).expect("uids").len();
    assert_eq!(stored, ASSIGNMENTS);
    let (apiserver_after, etcd_after) = control_plane_cpu_seconds(&cp);
    eprintln!(
        "initial sync of {ROLES} Roles + {ASSIGNMENTS} RoleAssignments: every status Ready and stored after {synced:?}; \
         operator peak RSS {:.1} MB; CPU seconds meanwhile: operator {:.1}, kube-apiserver {:.1}, etcd {:.1}",
        peak_rss_mb(&operator),
        cpu_seconds(operator.child.id()),
        apiserver_after - apiserver_before,
        etcd_after - etcd_before,
    );
    assert!(synced <= Duration::from_secs(60), "over the 60 s target");
    assert!(peak_rss_mb(&operator) <= 150.0, "over the 150 MB target");
}

/// The issue's "done when": `kubectl get org -n acme` shows MFA adoption and
/// stale accounts, from people in the store (made before the operator's
/// first pass, so its first posture already counts them).
#[test]
fn kubectl_get_org_shows_mfa_adoption_and_stale_accounts() {
    use portcullis::secret::SecretString;
    use portcullis::store::MfaFactor;

    let cp = control_plane();
    let url = database_url(&cp);
    let probe = StoreProbe::open(&url);
    let now = jiff::Timestamp::now().as_millisecond();
    let day = 24 * 3600 * 1000;
    probe.runtime.block_on(async {
        let store = &probe.store;
        let mut ids = Vec::new();
        for name in ["ana", "ben", "cy", "dee"] {
            ids.push(store.create_user(&NewUser::new("acme", name, UserSource::Local)).await.unwrap().id);
        }
        let totp = MfaFactor::Totp { sealed_secret: SecretString::new("sealed-by-the-test") };
        store.add_mfa_enrolment("acme", &ids[0], None, &totp, now).await.unwrap();
        let key = MfaFactor::WebAuthn { credential_id: "c".into(), public_key: "k".into(), sign_count: 0 };
        store.add_mfa_enrolment("acme", &ids[1], None, &key, now).await.unwrap();
        // The example's threshold is 90 days.
        store.record_login("acme", &ids[2], now - 200 * day).await.unwrap();
        store.record_login("acme", &ids[3], now - day).await.unwrap();
    });
    let _operator = Operator::start(&cp, &url, "solo", 15);
    let acme = repo().join("examples/acme");
    cp.kubectl_ok(&["apply", "--server-side", "-f", acme.to_str().unwrap()]);

    let table = eventually("kubectl get org shows the posture", Duration::from_secs(60), || {
        let table = cp.kubectl_ok(&["get", "org", "-n", "acme"]);
        let mut lines = table.lines();
        let (header, row) = (lines.next().unwrap_or_default(), lines.next().unwrap_or_default());
        let column = |name: &str| -> Result<String, String> {
            let at = header.find(name).ok_or_else(|| format!("no column {name}:\n{table}"))?;
            Ok(row.get(at..).unwrap_or_default().split_whitespace().next().unwrap_or_default().to_owned())
        };
        match (column("MFA %")?, column("STALE")?) {
            (mfa, stale) if mfa == "50" && stale == "1" => Ok(table),
            other => Err(format!("{other:?}\n{table}")),
        }
    });
    println!("{table}");
    // The whole posture is in the status, for `kubectl get org -o yaml` and tools.
    assert_eq!(jsonpath(&cp, "org", "acme", "{.status.posture.mfa.totp}"), "1");
    assert_eq!(jsonpath(&cp, "org", "acme", "{.status.posture.mfa.securityKey}"), "1");
    assert_eq!(jsonpath(&cp, "org", "acme", "{.status.posture.activeUsers}"), "4");
}

// === Data residency: each organization reconciled into its region's store. ===

fn residency_tenant(namespace: &str, residency: Option<&str>, role_permission: &str) -> String {
    let residency = residency.map(|region| format!("  dataResidency: {region}\n")).unwrap_or_default();
    format!(
        "apiVersion: iam.portcullis.dev/v1alpha1\nkind: Organization\nmetadata: {{ name: {namespace}, namespace: {namespace} }}\n\
         spec:\n  displayName: {namespace}\n{residency}  permissions:\n    - {{ name: journeys.view }}\n    - {{ name: journeys.edit }}\n\
         ---\napiVersion: iam.portcullis.dev/v1alpha1\nkind: Role\nmetadata: {{ name: viewer, namespace: {namespace} }}\n\
         spec: {{ scope: Organization, permissions: [{role_permission}] }}\n"
    )
}

fn condition_in(cp: &ControlPlane, namespace: &str, type_: &str) -> (String, String, String) {
    let field = |field: &str| {
        let path = format!("jsonpath={{.status.conditions[?(@.type==\"{type_}\")].{field}}}");
        let out = cp.kubectl(&["get", "org", namespace, "-n", namespace, "-o", &path]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    (field("status"), field("reason"), field("message"))
}

fn await_condition_in(cp: &ControlPlane, namespace: &str, type_: &str, status: &str, reason: &str) -> String {
    eventually(&format!("org {namespace}: {type_}={status} ({reason})"), Duration::from_secs(60), || {
        let (got_status, got_reason, message) = condition_in(cp, namespace, type_);
        if (got_status.as_str(), got_reason.as_str()) == (status, reason) {
            Ok(message)
        } else {
            Err(format!("{got_status} {got_reason}: {message}"))
        }
    })
}

/// The Roles (namespace/name) a store holds, and its Organizations' namespaces.
fn residents(probe: &StoreProbe) -> (Vec<String>, Vec<String>) {
    probe.runtime.block_on(async {
        let mut organizations = Vec::new();
        let mut roles = Vec::new();
        for namespace in ["acme", "globex", "initech"] {
            if !probe
                .store
                .list::<OrganizationRecord>(namespace)
                .await
                .expect("read organizations")
                .is_empty()
            {
                organizations.push(namespace.to_owned());
            }
            for role in probe.store.list::<RoleRecord>(namespace).await.expect("read roles") {
                roles.push(format!("{namespace}/{}:{}", role.meta.name, role.permissions.join(",")));
            }
        }
        (organizations, roles)
    })
}

#[test]
fn organizations_are_stored_in_their_regions_store_and_a_change_of_region_is_refused() {
    let cp = control_plane();
    for namespace in ["globex", "initech"] {
        cp.kubectl_ok(&["create", "namespace", namespace]);
    }
    let default_url = database_url(&cp);
    let (eu_url, us_url) = {
        let server = postgres::Postgres::shared();
        (server.create_database(), server.create_database())
    };
    let regions = [format!("eu={eu_url}"), format!("us={us_url}")];
    let flags = ["--store", &regions[0], "--store", &regions[1]];
    let operator = Operator::start_with(&cp, &default_url, "regional", 15, &flags);
    apply_yaml(&cp, "acme-eu", &residency_tenant("acme", Some("eu"), "journeys.view"));
    apply_yaml(&cp, "globex-us", &residency_tenant("globex", Some("us"), "journeys.view"));
    apply_yaml(&cp, "initech-ap-south", &residency_tenant("initech", Some("ap-south"), "journeys.view"));

    let stored = await_condition_in(&cp, "acme", "DataResidency", "True", "Stored");
    assert!(stored.contains("region eu"), "{stored}");
    await_condition_in(&cp, "acme", "Ready", "True", "Reconciled");
    await_condition_in(&cp, "globex", "Ready", "True", "Reconciled");
    // A region no store is configured for: said, with the ones that are, and nothing written.
    let unknown = await_condition_in(&cp, "initech", "Ready", "False", "UnknownRegion");
    assert!(unknown.contains("\"ap-south\"") && unknown.contains("eu, us"), "{unknown}");

    let (eu, us, default) =
        (StoreProbe::open(&eu_url), StoreProbe::open(&us_url), StoreProbe::open(&default_url));
    let eventually_residents = |probe: &StoreProbe, what: &str, organizations: &[&str], roles: &[&str]| {
        eventually(what, Duration::from_secs(60), || {
            let (got_organizations, got_roles) = residents(probe);
            if got_organizations == organizations && got_roles == roles {
                Ok(())
            } else {
                Err(format!("{got_organizations:?} {got_roles:?}"))
            }
        })
    };
    eventually_residents(&eu, "the eu store holds acme only", &["acme"], &["acme/viewer:journeys.view"]);
    eventually_residents(
        &us,
        "the us store holds globex only",
        &["globex"],
        &["globex/viewer:journeys.view"],
    );
    assert_eq!(residents(&default), (Vec::new(), Vec::new()), "the default store holds no organization");

    // A Role in a namespace without an Organization is written nowhere (the
    // failed pass is counted) until an Organization says its region.
    cp.kubectl_ok(&["create", "namespace", "hooli"]);
    let hooli = residency_tenant("hooli", Some("us"), "journeys.view");
    let (organization_yaml, role_yaml) = hooli.split_once("---\n").expect("two documents");
    apply_yaml(&cp, "hooli-role", role_yaml);
    eventually("the role's pass fails for want of a region", Duration::from_secs(60), || {
        let (_, metrics) = operator.get("/metrics")?;
        let counted = r#"portcullis_operator_reconcile_errors_total{kind="Role",reason="DataResidency"}"#;
        if metrics.contains(counted) { Ok(()) } else { Err(metrics) }
    });
    let hooli_roles = |probe: &StoreProbe| {
        probe.runtime.block_on(probe.store.list::<RoleRecord>("hooli")).expect("read roles").len()
    };
    assert_eq!([&eu, &us, &default].map(hooli_roles), [0, 0, 0], "the role is in no store");
    apply_yaml(&cp, "hooli-org", organization_yaml);
    eventually("hooli's role lands in the us store", Duration::from_secs(60), || {
        match [&eu, &us, &default].map(hooli_roles) {
            [0, 1, 0] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    // Moving acme to us by editing the field is refused; it is still served from eu.
    apply_yaml(&cp, "acme-us", &residency_tenant("acme", Some("us"), "journeys.view"));
    let refused = await_condition_in(&cp, "acme", "Ready", "False", "DataResidencyChangeRefused");
    assert!(refused.contains("region eu") && refused.contains("docs/data-residency.md"), "{refused}");
    assert_eq!(condition_in(&cp, "acme", "DataResidency").1, "DataResidencyChangeRefused");
    // A restarted operator finds acme's home in the eu store again: a change
    // of its role lands there, and nothing of acme reaches the us store.
    drop(operator);
    let _operator = Operator::start_with(&cp, &default_url, "regional-2", 15, &flags);
    apply_yaml(&cp, "acme-us-edit", &residency_tenant("acme", Some("us"), "journeys.edit"));
    eventually_residents(
        &eu,
        "acme's role change lands in the eu store",
        &["acme"],
        &["acme/viewer:journeys.edit"],
    );
    await_condition_in(&cp, "acme", "Ready", "False", "DataResidencyChangeRefused");
    assert_eq!(residents(&us), (vec!["globex".to_owned()], vec!["globex/viewer:journeys.view".to_owned()]));
    assert_eq!(residents(&default), (Vec::new(), Vec::new()));
    // Put back, it is Ready again.
    apply_yaml(&cp, "acme-eu-again", &residency_tenant("acme", Some("eu"), "journeys.edit"));
    await_condition_in(&cp, "acme", "Ready", "True", "Reconciled");

    // Deleted (Organization and Role at once), globex leaves nothing in the
    // us store; created again in eu, it is stored there.
    let globex = cp.dir().join("globex-us.yaml");
    cp.kubectl_ok(&["delete", "-f", globex.to_str().unwrap(), "--wait=true", "--timeout=60s"]);
    eventually_residents(&us, "globex is gone from the us store", &[], &[]);
    apply_yaml(&cp, "globex-eu", &residency_tenant("globex", Some("eu"), "journeys.view"));
    await_condition_in(&cp, "globex", "Ready", "True", "Reconciled");
    eventually_residents(
        &eu,
        "the eu store holds acme and globex",
        &["acme", "globex"],
        &["acme/viewer:journeys.edit", "globex/viewer:journeys.view"],
    );
    assert_eq!(residents(&us), (Vec::new(), Vec::new()));
    assert_eq!(residents(&default), (Vec::new(), Vec::new()));

    // Running the services, the operator hands them each region's Secret, and
    // says when one is missing.
    drop(_operator);
    for (name, url) in [("portcullis-database", &default_url), ("db-eu", &eu_url)] {
        let literal = format!("--from-literal=url={url}");
        cp.kubectl_ok(&["create", "secret", "generic", name, "-n", OPERATOR_NAMESPACE, &literal]);
    }
    let mut with_services = flags.to_vec();
    with_services.extend([
        "--image",
        "portcullis:test",
        "--region-secret",
        "eu=db-eu",
        "--region-secret",
        "us=db-us",
    ]);
    let _operator = Operator::start_with(&cp, &default_url, "regional-3", 15, &with_services);
    let missing = await_condition_in(&cp, "acme", "ServicesConfigured", "False", "DatabaseSecretMissing");
    assert!(missing.contains("portcullis/db-us") && missing.contains("region us"), "{missing}");
    let literal = format!("--from-literal=url={us_url}");
    cp.kubectl_ok(&["create", "secret", "generic", "db-us", "-n", OPERATOR_NAMESPACE, &literal]);
    await_condition_in(&cp, "acme", "ServicesConfigured", "True", "SettingsComplete");
}

// === AccessRequest: filed by the operator, decided by Portcullis users. ===

/// acme with an access request policy, a Role to ask for, and the requester.
const ACCESS_REQUEST_TENANT: &str = "apiVersion: iam.portcullis.dev/v1alpha1
kind: Organization
metadata: { name: acme, namespace: acme }
spec:
  displayName: Acme
  workspaces: [{ name: emea-marketing }]
  permissions: [{ name: journeys.publish }, { name: iam.approve-access }]
  accessRequests:
    approvers: { permission: iam.approve-access }
    maxDuration: 8h
---
apiVersion: iam.portcullis.dev/v1alpha1
kind: Role
metadata: { name: publisher, namespace: acme }
spec: { scope: Workspace, permissions: [journeys.publish] }
";

fn access_request_yaml(name: &str, role: &str, duration: &str) -> String {
    format!(
        "apiVersion: iam.portcullis.dev/v1alpha1\nkind: AccessRequest\nmetadata: {{ name: {name}, namespace: acme }}\n\
         spec:\n  requester: ada@acme.test\n  role: {role}\n  workspace: emea-marketing\n  duration: {duration}\n  \
         justification: campaign launch\n"
    )
}

#[test]
fn an_access_request_applied_with_kubectl_is_filed_once_and_its_status_follows_the_decision() {
    use portcullis::authz::Principal;
    use portcullis::store::access_requests::{
        AccessRequestFilter, AccessRequestStatus, AccessRequestStore as _,
    };
    let every_request = AccessRequestFilter { limit: 100, ..AccessRequestFilter::default() };

    let cp = control_plane();
    let url = database_url(&cp);
    let probe = StoreProbe::open(&url);
    probe.runtime.block_on(async {
        probe.store.create_user(&NewUser::new("acme", "ada@acme.test", UserSource::Local)).await.unwrap();
    });
    let _operator = Operator::start(&cp, &url, "solo", 15);
    apply_yaml(&cp, "access-request-tenant", ACCESS_REQUEST_TENANT);
    apply_yaml(&cp, "ada-publisher", &access_request_yaml("ada-publisher", "publisher", "2h"));

    // Pending, filed under the object's uid.
    let uid = jsonpath(&cp, "accessrequests", "ada-publisher", "{.metadata.uid}");
    let id = eventually("the AccessRequest is filed", Duration::from_secs(60), || {
        let (phase, id) = (
            jsonpath(&cp, "ar", "ada-publisher", "{.status.phase}"),
            jsonpath(&cp, "ar", "ada-publisher", "{.status.requestId}"),
        );
        if phase == "Pending" && !id.is_empty() { Ok(id) } else { Err(format!("{phase:?} {id:?}")) }
    });
    assert_eq!(id, uid, "filed under the object's uid");
    assert_eq!(condition(&cp, "ar", "ada-publisher", "Ready"), ("True".into(), "Reconciled".into()));
    let filed = probe.runtime.block_on(probe.store.get_access_request("acme", &id)).unwrap().expect("stored");
    assert_eq!((filed.role.as_str(), filed.requester.name.as_str()), ("publisher", "ada@acme.test"));
    assert_eq!(filed.duration_ms, 2 * 3600 * 1000);
    // Once: every pass after the first finds it filed (one request in the store).
    let all = probe.runtime.block_on(probe.store.list_access_requests("acme", &every_request)).unwrap();
    assert_eq!(all.len(), 1, "{all:?}");

    // A Portcullis approver approves (here through the store, as the admin
    // API does); the status follows, with the grant's expiry.
    let approved = probe
        .runtime
        .block_on(probe.store.approve_access_request(
            "acme",
            &id,
            &Principal::user("boss@acme.test"),
            Some("ok"),
        ))
        .unwrap();
    assert!(
        matches!(approved, portcullis::store::access_requests::ApprovalOutcome::Granted(_)),
        "{approved:?}"
    );
    eventually("the status says Approved", Duration::from_secs(60), || {
        let phase = jsonpath(&cp, "ar", "ada-publisher", "{.status.phase}");
        if phase == "Approved" { Ok(()) } else { Err(phase) }
    });
    let expires = jsonpath(&cp, "ar", "ada-publisher", "{.status.expiresAt}");
    let expires: jiff::Timestamp = expires.parse().unwrap_or_else(|e| panic!("expiresAt {expires:?}: {e}"));
    let left = expires.duration_since(jiff::Timestamp::now());
    assert!(
        left > jiff::SignedDuration::from_mins(115) && left <= jiff::SignedDuration::from_mins(120),
        "{left:?}"
    );
    assert_eq!(jsonpath(&cp, "ar", "ada-publisher", "{.status.approvals[0].approver}"), "boss@acme.test");
    let table = cp.kubectl_ok(&["get", "accessrequests.iam.portcullis.dev", "-n", "acme"]);
    let header = table.lines().next().unwrap_or_default();
    for column in ["PHASE", "ROLE", "REQUESTER", "EXPIRES", "AGE"] {
        assert!(header.contains(column), "no {column} in\n{table}");
    }
    assert!(table.contains("Approved") && table.contains("ada@acme.test"), "{table}");
    assert!(table.contains(&expires.to_string()[..16]), "the expiry as a time, not an age:\n{table}");

    // Invalid specs: a condition with the reason, nothing filed.
    apply_yaml(&cp, "ada-ghost", &access_request_yaml("ada-ghost", "ghost", "1h"));
    apply_yaml(&cp, "ada-too-long", &access_request_yaml("ada-too-long", "publisher", "9h"));
    wait_for_condition(&cp, "ar", "ada-ghost", "Filed", "False", "RoleNotFound");
    wait_for_condition(&cp, "ar", "ada-too-long", "Filed", "False", "DurationTooLong");
    assert_eq!(condition(&cp, "ar", "ada-ghost", "Ready"), ("False".into(), "RoleNotFound".into()));
    let all = probe.runtime.block_on(probe.store.list_access_requests("acme", &every_request)).unwrap();
    assert_eq!(all.len(), 1, "an invalid AccessRequest filed nothing: {all:?}");

    // A spec cannot change once filed (the API server refuses).
    let changed = cp.kubectl(&[
        "patch",
        "ar",
        "ada-publisher",
        "-n",
        "acme",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"duration":"8h"}}"#,
    ]);
    assert!(!changed.status.success(), "the spec of a filed request changed");
    assert!(String::from_utf8_lossy(&changed.stderr).contains("cannot be changed"));

    // Deleting it revokes the grant.
    cp.kubectl_ok(&["delete", "ar", "ada-publisher", "-n", "acme", "--timeout=60s"]);
    let revoked = probe.runtime.block_on(probe.store.get_access_request("acme", &id)).unwrap().expect("kept");
    assert_eq!(revoked.status, AccessRequestStatus::Revoked, "{revoked:?}");
    let grant =
        probe.runtime.block_on(probe.store.get_by_uid::<AssignmentRecord>(&format!("access-request-{id}")));
    assert!(grant.unwrap().is_none(), "the grant outlived its deleted AccessRequest");
}
