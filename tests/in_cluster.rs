//! Portcullis in a cluster, end to end: the chart's CRDs and RBAC (from
//! `config/`) on the real kube-apiserver, the operator running as its
//! ServiceAccount, `kubectl apply` of the example tenant, and the token and
//! SCIM services run from the Deployments the operator writes by the
//! kubelet stand-in (`support/kubelet.rs`), two replicas each on one real
//! PostgreSQL. Everything is asked over real HTTP, as a user would:
//!
//! ```text
//!  kubectl apply examples/acme ──► operator (ServiceAccount) ──► store (PostgreSQL) ◄── token-service ×2
//!                                   │ Deployments, Services,                       ◄── scim-service ×2
//!                                   │ the services' keys Secret                          ▲
//!                                   └──────────────────────────► kubelet stand-in ───────┘ (pods, Service ports)
//! ```

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/kubelet.rs"]
mod kubelet;
#[path = "support/postgres.rs"]
mod postgres;
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use cluster::*;
use kubelet::{Kubelet, PodView};
use portcullis::store::{SealedSigningKeyStore as _, Store, UserStore as _};
use support::{ControlPlane, eventually, repo};

/// Metric names an exposition defines (from its `# TYPE` lines), with the
/// sample suffixes their series carry.
fn metric_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

/// The metric names the Grafana dashboard's queries use.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = repo().join("charts/portcullis/dashboards/portcullis.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("the dashboard"))
        .expect("dashboard JSON");
    let mut exprs = Vec::new();
    fn collect(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr" | "query", Value::String(expr)) => out.push(expr.clone()),
                        _ => collect(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    collect(&dashboard, &mut exprs);
    assert!(exprs.len() >= 8, "the dashboard has panels with queries: {exprs:?}");
    let name = regex::Regex::new(r"\bportcullis_[a-z_]+\b").expect("regex");
    exprs.iter().flat_map(|e| name.find_iter(e).map(|m| m.as_str().to_owned()).collect::<Vec<_>>()).collect()
}

#[test]
fn portcullis_runs_in_a_cluster_as_the_operator_deploys_it() {
    let started = Instant::now();
    let installation = Installation::start(postgres::Postgres::start());
    let (cp, operator, kubelet) = (&installation.cp, &installation.operator, &installation.kubelet);
    let database_url = &installation.database_url;
    let acme = repo().join("examples/acme");
    cp.kubectl_ok(&["apply", "--server-side", "-f", acme.to_str().unwrap()]);
    cp.kubectl_ok(&["wait", "--for=condition=Ready", "--timeout=120s", "-n", "acme", KINDS, "--all"]);
    // The IdentityProvider's client secret (labelled for it) is copied for
    // the token service, whose pods then roll to mount it.
    eventually("the token service mounts the upstream secrets", Duration::from_secs(60), || {
        let items = cp.kubectl_ok(&[
            "get",
            "deployment",
            TOKEN_SERVICE,
            "-n",
            OPERATOR_NAMESPACE,
            "-o",
            "jsonpath={.spec.template.spec.volumes[0].secret.items[*].path}",
        ]);
        if items.split(' ').any(|p| p == "acme/okta-oidc/client-secret") { Ok(()) } else { Err(items) }
    });
    let token_pods = kubelet.await_rollout(TOKEN_SERVICE, 2, Duration::from_secs(90));
    let env = process_env(token_pods[0].pid.expect("a running pod"));
    let dir = env
        .iter()
        .find_map(|v| v.strip_prefix("PORTCULLIS_UPSTREAM_SECRETS_DIR="))
        .expect("the token service is told where the upstream secrets are");
    let mounted = std::fs::read_to_string(Path::new(dir).join("acme/okta-oidc/client-secret"));
    assert_eq!(mounted.expect("the client secret is mounted"), "PLACEHOLDER-not-a-real-okta-client-secret");
    let scim_pods = kubelet.await_rollout(SCIM_SERVICE, 2, Duration::from_secs(90));
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Available",
        "--timeout=30s",
        "-n",
        OPERATOR_NAMESPACE,
        &format!("deployment/{TOKEN_SERVICE}"),
        &format!("deployment/{SCIM_SERVICE}"),
    ]);
    eprintln!("operator, tenant and four service pods up in {:?}", started.elapsed());
    let http = Http::new();
    let token_url = kubelet.service_url(TOKEN_SERVICE, "http");
    let scim_url = kubelet.service_url(SCIM_SERVICE, "http");

    // The Organization names its issuer; each replica serves it.
    let issuer = format!("{ISSUER_BASE}/o/acme");
    let status_issuer = cp.kubectl_ok(&[
        "get",
        "organizations.iam.portcullis.dev",
        "acme",
        "-n",
        "acme",
        "-o",
        "jsonpath={.status.issuer}",
    ]);
    assert_eq!(status_issuer, issuer);
    for pod in &token_pods {
        let discovery = http.json(&format!("{}/o/acme/.well-known/openid-configuration", pod.url("http")));
        assert_eq!(discovery["issuer"], issuer.as_str(), "{}", pod.name);
    }

    // 1. A client-credentials token for ci-deployer, with its roles.
    let client_secret = secret_value(cp, "acme", "ci-deployer-client-secret", "client-secret");
    let (status, body) = http.client_credentials(&token_url, "ci-deployer", &client_secret).expect("token");
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<Value>(&body).expect("token response")["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = claims(&token);
    assert_eq!(first["iss"], issuer.as_str());
    assert_eq!(role_names(&first), BTreeSet::from(["integrations".to_owned()]), "{first}");
    let permissions = strings(&first["permissions"]);
    assert!(
        permissions.contains("data.manage-webhooks")
            && !permissions.iter().any(|p| p.starts_with("compliance.")),
        "{first}"
    );
    let jwks = http.json(&format!("{token_url}/o/acme/jwks"));
    assert!(verifies(&token, &jwks), "the token verifies with the published keys");

    // 2. kubectl apply of an edited RoleAssignment: the next token carries it.
    let assignment =
        std::fs::read_to_string(acme.join("role-assignments.yaml")).expect("role-assignments.yaml");
    let start = assignment.find("  name: ci-deployer-integrations").expect("ci-deployer's assignment");
    let document = &assignment[assignment[..start].rfind("apiVersion").unwrap_or(0)..];
    let document = document.split("\n---").next().unwrap_or(document);
    let edited = document.replace("role: integrations", "role: compliance-officer");
    let applied = Instant::now();
    apply_yaml(cp, "ci-deployer-edited", &edited);
    let carried = eventually("the next token carries the edited role", Duration::from_secs(10), || {
        let (_, body) = http.client_credentials(&token_url, "ci-deployer", &client_secret)?;
        let token: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let carried = claims(token["access_token"].as_str().unwrap_or_default());
        if role_names(&carried).contains("compliance-officer") {
            Ok(carried)
        } else {
            Err(format!("{carried}"))
        }
    });
    assert_eq!(
        role_names(&carried),
        BTreeSet::from(["compliance-officer".to_owned()]),
        "the old role is gone"
    );
    let permissions = strings(&carried["permissions"]);
    assert!(
        permissions.contains("compliance.fulfill-dsar")
            && !permissions.iter().any(|p| p.starts_with("data.")),
        "the permissions follow the role: {carried}"
    );
    eprintln!("kubectl apply → a token carrying the change: {:?}", applied.elapsed());

    // 3. SCIM through the token the operator generated for okta.
    let scim_token = secret_value(cp, "acme", "okta-scim-token", "token");
    let endpoint = cp.kubectl_ok(&[
        "get",
        "identityproviders.iam.portcullis.dev",
        "okta",
        "-n",
        "acme",
        "-o",
        "jsonpath={.status.scimEndpoint}",
    ]);
    assert_eq!(
        endpoint,
        format!("{SCIM_BASE}/o/acme/scim/v2"),
        "the status names where the SCIM service serves acme"
    );
    let user =
        std::fs::read_to_string(repo().join("tests/fixtures/scim/okta_create_user.json")).expect("fixture");
    let (status, body) = http
        .send(
            http.client
                .post(format!("{scim_url}/o/acme/scim/v2/Users"))
                .bearer_auth(&scim_token)
                .header("content-type", "application/scim+json")
                .body(user),
        )
        .expect("SCIM create");
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).expect("SCIM user");
    let location = created["meta"]["location"].as_str().unwrap_or_default();
    assert!(location.starts_with(&format!("{SCIM_BASE}/o/acme/scim/v2/Users/")), "{location}");
    // Every replica sees it (one store).
    for pod in &scim_pods {
        let (status, body) = http
            .send(
                http.client
                    .get(format!(
                        "{}/o/acme/scim/v2/Users/{}",
                        pod.url("http"),
                        created["id"].as_str().unwrap()
                    ))
                    .bearer_auth(&scim_token),
            )
            .expect("SCIM read");
        assert_eq!(status, 200, "{}: {body}", pod.name);
    }

    // 3b. The kubectl plugin, installed as the README says (the binary
    //     linked as kubectl-portcullis on the PATH) and run by kubectl, as
    //     ci-deployer (compliance-officer since step 2: iam.view and
    //     iam.export-audit), through the token Service.
    //     Like any caller of the admin API, its tokens must name the issuer
    //     among their audiences.
    let clients = std::fs::read_to_string(acme.join("oauth-clients.yaml")).expect("oauth-clients.yaml");
    let start = clients.find("  name: ci-deployer").expect("ci-deployer");
    let client = &clients[clients[..start].rfind("apiVersion").unwrap_or(0)..];
    let client = client.split("\n---").next().unwrap_or(client);
    let with_issuer = client.replace(
        "    - https://api.acme.com/data",
        &format!("    - https://api.acme.com/data\n    - {issuer}"),
    );
    assert_ne!(with_issuer, client);
    apply_yaml(cp, "ci-deployer-admin", &with_issuer);
    let plugin = Plugin::install(cp, &token_url);
    eventually("ci-deployer may call the check API", Duration::from_secs(10), || {
        match plugin.run(&["check", "client/ci-deployer", "compliance.fulfill-dsar"]) {
            (0, _) => Ok(()),
            (code, out) => Err(format!("{code}: {out}")),
        }
    });
    let (code, out) = plugin.run(&["check", "client/ci-deployer", "data.manage-webhooks"]);
    assert_eq!(code, 1, "denied since step 2: {out}");
    let (code, out) = plugin.run(&["why", "client/ci-deployer", "iam.view"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("RoleAssignment acme/ci-deployer-integrations") && out.contains("compliance-officer"),
        "the trail names the assignment and the role: {out}"
    );
    let (code, out) = plugin.run(&["users"]);
    assert_eq!(code, 0, "{out}");
    let user_name = created["userName"].as_str().unwrap_or_default();
    assert!(out.lines().any(|line| line.starts_with(user_name)), "the SCIM user is listed: {out}");
    let export = cp.dir().join("audit.jsonl");
    let (code, out) = plugin.run(&["audit", "export", "-o", export.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let exported = std::fs::read_to_string(&export).expect("the export");
    assert!(
        exported.contains(r#""action":"roleAssignment.apply""#) && exported.contains(r#""name":"kubectl""#),
        "the export holds the kubectl apply of step 2, by its field manager"
    );
    let (code, out) = plugin.run(&["audit", "verify", export.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    // A new SCIM token: printed once; the old one stops working, the new one works.
    let (code, new_scim_token) = plugin.run(&["scim-token", "okta"]);
    assert_eq!(code, 0, "{new_scim_token}");
    let new_scim_token = new_scim_token.trim().to_owned();
    assert!(new_scim_token.len() >= 40 && new_scim_token != scim_token, "a new token: {new_scim_token:?}");
    let users_url = format!("{scim_url}/o/acme/scim/v2/Users");
    eventually("the old SCIM token is refused and the new one served", Duration::from_secs(10), || {
        let old = http.send(http.client.get(&users_url).bearer_auth(&scim_token))?.0;
        let new = http.send(http.client.get(&users_url).bearer_auth(&new_scim_token))?.0;
        if (old, new) == (401, 200) { Ok(()) } else { Err(format!("old {old}, new {new}")) }
    });
    // A key rotation asked for: the next key is published at once.
    let (code, out) = plugin.run(&["rotate-keys", "acme"]);
    assert_eq!(code, 0, "{out}");
    let kid = out.split_whitespace().nth(2).unwrap_or_default().to_owned();
    assert!(out.starts_with("published key ") && !kid.is_empty(), "{out}");
    eventually("the token service publishes the next key", Duration::from_secs(10), || {
        let jwks = http.json(&format!("{token_url}/o/acme/jwks"));
        let kids: Vec<&str> =
            jwks["keys"].as_array().into_iter().flatten().filter_map(|k| k["kid"].as_str()).collect();
        if kids.contains(&kid.as_str()) { Ok(()) } else { Err(format!("{kids:?}")) }
    });

    // 4. Metrics on their own port, not on the public one.
    for url in [&token_url, &scim_url] {
        let (status, _) = http.get(&format!("{url}/metrics")).expect("GET /metrics");
        assert_eq!(status, 404, "{url}/metrics must not answer on the public listener");
    }
    // A sign-in step (a form without its CSRF token): counted by result.
    let (status, _) = http
        .send(
            http.client
                .post(format!("{token_url}/o/acme/login"))
                .form(&[("username", "a"), ("password", "b")]),
        )
        .expect("sign-in step");
    assert!((400..500).contains(&status), "a forged form is refused: {status}");
    let token_metrics = scrape(&http, &kubelet.service_url(TOKEN_SERVICE, "metrics"), &token_pods);
    assert!(
        token_metrics.contains(
            r#"portcullis_tokens_issued_total{organization="acme",grant_type="client_credentials"}"#
        ),
        "{token_metrics}"
    );
    assert!(
        token_metrics.contains(r#"route="/o/{org}/token",method="POST",organization="acme",code="200""#),
        "{token_metrics}"
    );
    let scim_metrics = scrape(&http, &kubelet.service_url(SCIM_SERVICE, "metrics"), &scim_pods);
    assert!(
        scim_metrics.contains(r#"portcullis_scim_operations_total{organization="acme",resource="User",operation="create",code="201"} 1"#),
        "{scim_metrics}"
    );
    let (_, operator_metrics) =
        http.get(&format!("http://127.0.0.1:{}/metrics", operator.probe_port)).expect("operator metrics");
    assert!(operator_metrics.contains("portcullis_operator_setting_problems 0"), "{operator_metrics}");
    assert!(
        token_metrics.contains(r#"portcullis_sign_ins_total{organization="acme",result=""#),
        "{token_metrics}"
    );

    // 5. The key-encryption key rotated by the steps of docs/key-rotation.md,
    //    run as written, while a client keeps asking for tokens: the client
    //    notices nothing, a token from before still verifies, and every
    //    signing key ends up sealed under the new key, which the token
    //    service then holds alone.
    let kek_before = secret_value(cp, OPERATOR_NAMESPACE, SERVICE_KEYS, "key-encryption-key");
    let client = TokenClient::start(&token_url, &client_secret);
    let kek_rotated = Instant::now();
    run_documented_steps(cp, "docs/key-rotation.md", "## The key-encryption key");
    let kek_after = secret_value(cp, OPERATOR_NAMESPACE, SERVICE_KEYS, "key-encryption-key");
    assert_ne!(kek_after, kek_before, "a new key-encryption key");
    let new_id = portcullis::sealing::KeyEncryptionKey::from_text(&kek_after).expect("a key").id().to_owned();
    let previous = cp.kubectl_ok(&[
        "get",
        "secret",
        SERVICE_KEYS,
        "-n",
        OPERATOR_NAMESPACE,
        "-o",
        "jsonpath={.data.previous-key-encryption-key}",
    ]);
    assert!(previous.is_empty(), "the previous key is gone from the Secret");
    let token_pods = eventually("the token service holds the new key alone", Duration::from_secs(60), || {
        let pods = kubelet.await_rollout(TOKEN_SERVICE, 2, Duration::from_secs(60));
        let current = pods.iter().all(|pod| {
            let env = process_env(pod.pid.unwrap_or_default());
            env.contains(&format!("PORTCULLIS_KEY_ENCRYPTION_KEY={kek_after}"))
                && !env.iter().any(|v| v.starts_with("PORTCULLIS_PREVIOUS_KEY_ENCRYPTION_KEY="))
        });
        if current { Ok(pods) } else { Err(format!("{pods:?}")) }
    });
    let (issued, failures) = client.stop();
    eprintln!("key-encryption key rotated in {:?}; {issued} tokens issued meanwhile", kek_rotated.elapsed());
    assert!(failures.is_empty(), "a client noticed the rotation: {failures:?}");
    assert!(issued >= 10, "the client kept asking throughout: {issued} tokens");
    let sealed = StoreProbe::open(database_url).sealed_with("acme");
    assert!(
        !sealed.is_empty() && sealed.iter().all(|id| *id == new_id),
        "every signing key sealed under {new_id}: {sealed:?}"
    );
    let jwks = http.json(&format!("{token_url}/o/acme/jwks"));
    assert!(verifies(&token, &jwks), "a token from before the rotation still verifies");
    let (status, body) = http.client_credentials(&token_url, "ci-deployer", &client_secret).expect("token");
    assert_eq!(status, 200, "tokens are issued by the rolled pods: {body}");

    // 6. A key rotation: a token signed by the old key verifies during the overlap,
    //    and both replicas publish the same keys.
    let old_kid = header(&token)["kid"].as_str().unwrap().to_owned();
    apply_yaml(
        cp,
        "acme-rotating",
        &organization_yaml(&[
            ("accessTokenLifetime: 15m", "accessTokenLifetime: 10s"),
            ("period: 720h", "period: 20s"),
            ("overlap: 24h", "overlap: 10s"),
        ]),
    );
    let rotation_started = Instant::now();
    // The token from before the rotation is one of the old key, should the
    // rotation be done before the first request below.
    let mut last_old: Option<String> = Some(token.clone());
    let new_token = eventually("a new key signs", Duration::from_secs(40), || {
        let (_, body) = http.client_credentials(&token_url, "ci-deployer", &client_secret)?;
        let token = serde_json::from_str::<Value>(&body).map_err(|e| e.to_string())?["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if header(&token)["kid"] == old_kid.as_str() {
            last_old = Some(token);
            Err("still the old key".into())
        } else {
            Ok(token)
        }
    });
    let last_old = last_old.expect("a token of the old key");
    eprintln!("rotation after {:?}", rotation_started.elapsed());
    let jwks_of = |pod: &PodView| http.json(&format!("{}/o/acme/jwks", pod.url("http")));
    let published = eventually("both replicas publish the same keys", Duration::from_secs(5), || {
        let sets: Vec<Value> = token_pods.iter().map(jwks_of).collect();
        if sets.windows(2).all(|w| w[0] == w[1]) { Ok(sets[0].clone()) } else { Err(format!("{sets:?}")) }
    });
    assert!(verifies(&last_old, &published), "a token of the retiring key still verifies: {published}");
    assert!(verifies(&new_token, &published));
    assert!(
        claims(&last_old)["exp"].as_i64().unwrap() > jiff::Timestamp::now().as_second(),
        "and has not expired"
    );

    // 7. What Git holds is what the cluster has.
    cp.kubectl_ok(&["apply", "--server-side", "-f", acme.to_str().unwrap()]);
    let diff = cp.kubectl(&["diff", "--server-side", "-f", acme.to_str().unwrap()]);
    assert!(
        diff.status.success() && diff.stdout.is_empty(),
        "kubectl diff is not empty ({}):\n{}{}",
        diff.status,
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );

    // 8. Deleting the Organization: refused under legal hold (its issuer and
    //    data stay), then done: the issuer is gone from every replica and so
    //    are its users and keys.
    let store = StoreProbe::open(database_url);
    apply_yaml(cp, "acme-held", &organization_yaml(&[("legalHold: false", "legalHold: true")]));
    cp.kubectl_ok(&["delete", "organizations.iam.portcullis.dev", "acme", "-n", "acme", "--wait=false"]);
    eventually("the deletion is blocked", Duration::from_secs(30), || {
        let reason = cp.kubectl_ok(&[
            "get",
            "organizations.iam.portcullis.dev",
            "acme",
            "-n",
            "acme",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"DeletionBlocked\")].reason}",
        ]);
        if reason == "LegalHold" { Ok(()) } else { Err(reason) }
    });
    let (status, _) =
        http.get(&format!("{token_url}/o/acme/.well-known/openid-configuration")).expect("discovery");
    assert_eq!(status, 200, "held: still served");
    assert_eq!(store.users("acme"), 1, "held: the data stays");
    apply_yaml(cp, "acme-released", &organization_yaml(&[]));
    eventually("the Organization is gone", Duration::from_secs(30), || {
        let out = cp.kubectl(&["get", "organizations.iam.portcullis.dev", "acme", "-n", "acme"]);
        if out.status.success() { Err("still there".into()) } else { Ok(()) }
    });
    for pod in &token_pods {
        eventually(&format!("{} no longer serves acme", pod.name), Duration::from_secs(10), || {
            match http.get(&format!("{}/o/acme/.well-known/openid-configuration", pod.url("http")))? {
                (404, _) => Ok(()),
                (status, body) => Err(format!("{status} {body}")),
            }
        });
    }
    assert_eq!(store.users("acme"), 0, "its users are purged");
    assert_eq!(store.signing_keys("acme"), 0, "its keys are gone from the store");
    let secret = cp.kubectl(&["get", "secret", "acme-signing-keys", "-n", "acme"]);
    assert!(!secret.status.success(), "and their export");

    // A Secret without the opt-in label is not handed to the token service:
    // an IdentityProvider's author cannot send any Secret of the namespace upstream.
    cp.kubectl_ok(&["label", "secret", "okta-oidc", "-n", "acme", "iam.portcullis.dev/upstream-secret-"]);
    eventually("the unlabelled client secret leaves the copy", Duration::from_secs(30), || {
        let keys = cp.kubectl_ok(&[
            "get",
            "secret",
            "portcullis-upstream-secrets",
            "-n",
            OPERATOR_NAMESPACE,
            "-o",
            "jsonpath={.data}",
        ]);
        if keys.contains("okta-oidc") { Err(keys) } else { Ok(()) }
    });

    // Nothing restarted along the way, and the operator had every permission it needed.
    for pod in kubelet.pods() {
        assert_eq!(pod.restarts, 0, "{} restarted", pod.name);
    }
    assert!(
        !operator.log().contains("forbidden"),
        "the RBAC of config/rbac lacks something:\n{}",
        operator.log()
    );

    // 9. Without its ClusterRoleBinding the operator cannot write a status: its
    //    metrics count the failure, and it recovers once the binding is back.
    let binding = cp.kubectl_ok(&["get", "clusterrolebinding", "portcullis-operator", "-o", "yaml"]);
    cp.kubectl_ok(&["delete", "clusterrolebinding", "portcullis-operator"]);
    apply_yaml(cp, "ci-deployer-edited-again", &edited);
    let operator_metrics =
        eventually("the operator counts a failed reconcile", Duration::from_secs(30), || {
            let (_, metrics) = http.get(&format!("http://127.0.0.1:{}/metrics", operator.probe_port))?;
            if metrics.contains("portcullis_operator_reconcile_errors_total{") {
                Ok(metrics)
            } else {
                Err(metrics)
            }
        });
    assert!(operator_metrics.contains(r#"reason="Forbidden""#), "{operator_metrics}");
    let binding_file = cp.dir().join("operator-binding.yaml");
    std::fs::write(&binding_file, &binding).expect("write the binding");
    cp.kubectl_ok(&["create", "-f", binding_file.to_str().unwrap()]);
    eventually("the operator writes statuses again", Duration::from_secs(60), || {
        let generation = cp.kubectl_ok(&[
            "get",
            "ra",
            "ci-deployer-integrations",
            "-n",
            "acme",
            "-o",
            "jsonpath={.metadata.generation} {.status.observedGeneration}",
        ]);
        let mut parts = generation.split_whitespace();
        if parts.next() == parts.next() { Ok(()) } else { Err(generation) }
    });

    // The Grafana dashboard asks only for metrics that exist (scraped now,
    // and before the token-service pods were rolled with the new
    // key-encryption key: a counter shows once something counted).
    let late_token_metrics = scrape(&http, &kubelet.service_url(TOKEN_SERVICE, "metrics"), &token_pods);
    let late_scim_metrics = scrape(&http, &kubelet.service_url(SCIM_SERVICE, "metrics"), &scim_pods);
    let scraped: BTreeSet<String> =
        [&token_metrics, &scim_metrics, &late_token_metrics, &late_scim_metrics, &operator_metrics]
            .iter()
            .flat_map(|m| metric_names(m))
            .collect();
    let queried = dashboard_metrics();
    let unknown: Vec<&String> = queried.iter().filter(|m| !scraped.contains(*m)).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics no service exposes: {unknown:?}\nscraped: {scraped:?}"
    );
    eprintln!("in-cluster scenario done in {:?}", started.elapsed());
}

/// `/metrics` through the Service's metrics port, and from each pod directly.
/// `kubectl portcullis`: this binary linked as `kubectl-portcullis` into a
/// folder put first on kubectl's PATH, as the README installs it.
struct Plugin {
    kubectl: std::path::PathBuf,
    path: std::ffi::OsString,
    kubeconfig: std::path::PathBuf,
    token_service: String,
}

impl Plugin {
    fn install(cp: &ControlPlane, token_service: &str) -> Plugin {
        let folder = cp.dir().join("plugins");
        std::fs::create_dir_all(&folder).expect("plugins folder");
        let link = folder.join("kubectl-portcullis");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_portcullis"), &link).expect("link the plugin");
        let path = std::env::join_paths(
            std::iter::once(folder)
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .expect("PATH");
        Plugin {
            kubectl: cp.kubectl_bin(),
            path,
            kubeconfig: cp.kubeconfig.clone(),
            token_service: token_service.to_owned(),
        }
    }

    /// `kubectl portcullis ARGS` in namespace acme as ci-deployer; the exit
    /// code, and standard output (with standard error after it on failure).
    fn run(&self, args: &[&str]) -> (i32, String) {
        let output = Command::new(&self.kubectl)
            .arg("portcullis")
            .args(args)
            .args([
                "--kubeconfig",
                self.kubeconfig.to_str().unwrap(),
                "-n",
                "acme",
                "--client",
                "ci-deployer",
            ])
            .args(["--token-service", &self.token_service])
            .env("PATH", &self.path)
            .output()
            .expect("run kubectl portcullis");
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            text.push_str(&String::from_utf8_lossy(&output.stderr));
        }
        (output.status.code().unwrap_or(-1), text)
    }
}

fn scrape(http: &Http, service_url: &str, pods: &[PodView]) -> String {
    let (status, body) = http.get(&format!("{service_url}/metrics")).expect("scrape");
    assert_eq!(status, 200, "{body}");
    let mut all = body;
    for pod in pods {
        let (status, body) = http.get(&format!("{}/metrics", pod.url("metrics"))).expect("scrape a pod");
        assert_eq!(status, 200, "{}: {body}", pod.name);
        all.push_str(&body);
    }
    all
}

/// The store the operator and the services share, read by the test.
struct StoreProbe {
    runtime: tokio::runtime::Runtime,
    store: Store,
}

impl StoreProbe {
    fn open(url: &str) -> StoreProbe {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let store = runtime.block_on(Store::connect(url)).expect("the store");
        StoreProbe { runtime, store }
    }

    fn users(&self, namespace: &str) -> usize {
        self.runtime.block_on(self.store.list_users(namespace, 0, 100)).expect("users").len()
    }

    fn signing_keys(&self, namespace: &str) -> usize {
        self.runtime.block_on(self.store.sealed_signing_keys(namespace)).expect("keys").len()
    }

    /// The id of the key-encryption key each signing key is sealed under.
    fn sealed_with(&self, namespace: &str) -> Vec<String> {
        let rows = self.runtime.block_on(self.store.sealed_signing_keys(namespace)).expect("keys");
        rows.iter()
            .map(|row| {
                let sealed = row.sealed.as_deref().unwrap_or("unsealed");
                portcullis::sealing::sealed_key_id(sealed).unwrap_or(sealed).to_owned()
            })
            .collect()
    }
}

/// A client asking for client-credentials tokens about 20 times a second,
/// on a thread of its own, until stopped; it keeps what went wrong.
struct TokenClient {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl TokenClient {
    fn start(token_url: &str, client_secret: &str) -> TokenClient {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (url, secret, stopped) = (token_url.to_owned(), client_secret.to_owned(), stop.clone());
        let thread = std::thread::spawn(move || {
            // A connection per request: kube-proxy balances connections, not
            // requests, and an idle keep-alive connection that a replaced pod
            // closes as the client reuses it is HTTP/1.1's race, in any
            // rollout; what this client checks is the answers of the service.
            let http = Http {
                runtime: tokio::runtime::Runtime::new().expect("runtime"),
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .pool_max_idle_per_host(0)
                    .build()
                    .expect("client"),
            };
            let (mut issued, mut failures) = (0, Vec::new());
            while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                match http.client_credentials(&url, "ci-deployer", &secret) {
                    Ok((200, _)) => issued += 1,
                    Ok((status, body)) => failures.push(format!("{status} {body}")),
                    Err(e) => failures.push(e),
                }
                // The client's pace, not a wait for anything.
                std::thread::sleep(Duration::from_millis(50));
            }
            (issued, failures)
        });
        TokenClient { stop, thread }
    }

    /// Tokens issued, and every failure.
    fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().expect("the token client")
    }
}

/// Runs the `sh` blocks of one section of a document, in order, as one
/// script, with the control plane's `kubectl` first on the PATH: the
/// document's steps tried exactly as a reader would type them.
fn run_documented_steps(cp: &ControlPlane, document: &str, section: &str) {
    let text = std::fs::read_to_string(repo().join(document)).expect("the document");
    let start = text.find(&format!("\n{section}")).unwrap_or_else(|| panic!("{document} has no {section:?}"));
    let body = &text[start + 1..];
    let body = &body[..body[1..].find("\n## ").map_or(body.len(), |end| end + 1)];
    let mut script = String::from("set -euo pipefail\n");
    let mut in_block = false;
    for line in body.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_block = !in_block && trimmed == "```sh";
            continue;
        }
        if in_block {
            script.push_str(trimmed);
            script.push('\n');
        }
    }
    assert!(script.lines().count() > 5, "{document}: no sh blocks under {section:?}");
    let path = format!("{}:{}", cp.bin().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-c", &script])
        .env("PATH", path)
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "the steps of {document} ({section}) failed:\n{script}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The environment of a running process, as the kernel has it.
fn process_env(pid: u32) -> BTreeSet<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn process_args(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// The stand-in itself, on a Deployment written by hand: it runs what the
/// Deployment says and nothing else, rolls on a change, stops on deletion.
#[test]
fn the_kubelet_stand_in_runs_exactly_what_a_deployment_says() {
    let postgres = postgres::Postgres::start();
    let database_url = postgres.create_database();
    let cp = ControlPlane::start();
    cp.kubectl_ok(&["create", "namespace", OPERATOR_NAMESPACE]);
    let manifest = format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: scim-settings, namespace: {OPERATOR_NAMESPACE}}}
data: {{base: "https://one.example"}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: probe-scim
  namespace: {OPERATOR_NAMESPACE}
  labels: {{app.kubernetes.io/managed-by: portcullis-operator}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: probe-scim}}}}
  template:
    metadata: {{labels: {{app: probe-scim}}}}
    spec:
      enableServiceLinks: false
      terminationGracePeriodSeconds: 5
      containers:
        - name: scim
          image: registry.test/ignored:1
          args: [scim-service, "--listen=$(POD_IP):8080", "--log-format=json"]
          env:
            - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
            - {{name: PORTCULLIS_DATABASE_URL, valueFrom: {{secretKeyRef: {{name: probe-db, key: url}}}}}}
            - {{name: PORTCULLIS_SCIM_BASE_URL, valueFrom: {{configMapKeyRef: {{name: scim-settings, key: base}}}}}}
            - {{name: GREETING, value: "hello from $(POD_IP)"}}
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe: {{httpGet: {{path: /readyz, port: http}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: probe-scim, namespace: {OPERATOR_NAMESPACE}}}
spec:
  selector: {{app: probe-scim}}
  ports: [{{name: web, port: 80, targetPort: http}}]
"#
    );
    apply_yaml(&cp, "probe", &manifest);
    let kubelet = Kubelet::start(
        &cp.kubeconfig,
        OPERATOR_NAMESPACE,
        Path::new(env!("CARGO_BIN_EXE_portcullis")),
        &cp.dir().join("pods"),
    );

    // The Secret does not exist yet: the pods wait, as CreateContainerConfigError.
    eventually("the pods wait for their Secret", Duration::from_secs(30), || {
        let pods = kubelet.pods_of("probe-scim");
        let waiting = pods.iter().filter(|p| p.pid.is_none()).count();
        let logs = kubelet.logs();
        if pods.len() == 2 && waiting == 2 && logs.contains("CreateContainerConfigError") {
            Ok(())
        } else {
            Err(format!("{pods:?}\n{logs}"))
        }
    });
    cp.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "probe-db",
        "-n",
        OPERATOR_NAMESPACE,
        &format!("--from-literal=url={database_url}"),
    ]);
    let pods = kubelet.await_rollout("probe-scim", 2, Duration::from_secs(60));
    assert_ne!(pods[0].ip, pods[1].ip, "each pod has an address of its own");
    for pod in &pods {
        let pid = pod.pid.expect("running");
        let env = process_env(pid);
        let ip = pod.ip.to_string();
        let expected: BTreeSet<String> = [
            format!("POD_IP={ip}"),
            format!("PORTCULLIS_DATABASE_URL={database_url}"),
            "PORTCULLIS_SCIM_BASE_URL=https://one.example".to_owned(),
            format!("GREETING=hello from {ip}"),
            format!("HOSTNAME={}", pod.name),
        ]
        .into();
        assert_eq!(env, expected, "exactly the env written, nothing of the test's (no KUBECONFIG, no PATH)");
        assert_eq!(
            process_args(pid)[1..],
            ["scim-service".to_owned(), format!("--listen={ip}:8080"), "--log-format=json".to_owned()],
            "the args written, $(POD_IP) expanded"
        );
    }
    let http = Http::new();
    let url = kubelet.service_url("probe-scim", "web");
    assert_eq!(http.get(&format!("{url}/readyz")).expect("through the Service").0, 200);
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Available",
        "--timeout=30s",
        "-n",
        OPERATOR_NAMESPACE,
        "deployment/probe-scim",
    ]);

    // A change of the template rolls the pods, reading the ConfigMap anew.
    cp.kubectl_ok(&[
        "patch",
        "configmap",
        "scim-settings",
        "-n",
        OPERATOR_NAMESPACE,
        "-p",
        r#"{"data":{"base":"https://two.example"}}"#,
    ]);
    cp.kubectl_ok(&[
        "patch",
        "deployment",
        "probe-scim",
        "-n",
        OPERATOR_NAMESPACE,
        "-p",
        r#"{"spec":{"template":{"metadata":{"annotations":{"revision":"2"}}}}}"#,
    ]);
    let rolled = eventually("the pods are replaced", Duration::from_secs(60), || {
        let now = kubelet.await_rollout("probe-scim", 2, Duration::from_secs(60));
        if now.iter().all(|p| pods.iter().all(|old| old.template != p.template)) {
            Ok(now)
        } else {
            Err(format!("{now:?}"))
        }
    });
    for pod in &rolled {
        assert!(
            process_env(pod.pid.expect("running")).contains("PORTCULLIS_SCIM_BASE_URL=https://two.example")
        );
    }
    for old in &pods {
        assert!(!alive(old.pid.expect("was running")), "{} is stopped", old.name);
    }

    // Scaled down, then deleted: the processes go.
    cp.kubectl_ok(&["scale", "deployment", "probe-scim", "-n", OPERATOR_NAMESPACE, "--replicas=1"]);
    let one = kubelet.await_rollout("probe-scim", 1, Duration::from_secs(30));
    cp.kubectl_ok(&["delete", "deployment", "probe-scim", "-n", OPERATOR_NAMESPACE]);
    eventually("the Deployment's pods are gone", Duration::from_secs(30), || {
        let left = kubelet.pods_of("probe-scim");
        if left.is_empty() && one.iter().all(|p| !alive(p.pid.unwrap_or(0))) {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
    let refused = http.get(&format!("{url}/readyz"));
    assert!(refused.is_err(), "no endpoint left behind the Service: {refused:?}");
}
