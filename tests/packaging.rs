//! How Portcullis is packaged, checked with the real tools: the Helm chart
//! (`helm lint`, `helm template` with default and non-default values), the
//! kustomize layout in `config/`, and the Argo CD health checks (run by
//! gopher-lua, the Lua engine Argo CD embeds), each rendered manifest
//! dry-run against the real kube-apiserver.
//!
//! `helm`, the Lua runner and the upstream CRDs the chart's optional objects
//! need (Gateway API HTTPRoute, prometheus-operator ServiceMonitor) come from
//! `e2e/build-tools.sh` (source-built through the Go module proxy, cached).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;
use support::{ControlPlane, repo};

/// The directory `e2e/build-tools.sh` prints: helm, luahealth, crds/.
fn tools() -> &'static Path {
    static TOOLS: OnceLock<PathBuf> = OnceLock::new();
    TOOLS.get_or_init(|| {
        if let Some(dir) = std::env::var_os("PORTCULLIS_TOOLS_BIN") {
            return PathBuf::from(dir);
        }
        let out = Command::new("bash")
            .arg(repo().join("e2e/build-tools.sh"))
            .output()
            .expect("run e2e/build-tools.sh");
        assert!(out.status.success(), "tool build failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(stdout.lines().last().expect("build-tools.sh prints the tool directory"))
    })
}

fn chart() -> PathBuf {
    repo().join("charts/portcullis")
}

/// Runs the source-built helm with its own throwaway config and cache, so
/// nothing on the machine (repositories, plugins) changes what it does.
fn helm(args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("helm home");
    Command::new(tools().join("helm"))
        .args(args)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .env_remove("KUBECONFIG")
        .output()
        .expect("run helm")
}

fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm template` of the chart into namespace `portcullis`, with extra arguments.
fn render(extra: &[&str]) -> String {
    let chart = chart();
    let mut args = vec!["template", "portcullis", chart.to_str().unwrap(), "--namespace", "portcullis"];
    args.extend_from_slice(extra);
    helm_ok(&args)
}

fn values_everything() -> String {
    repo().join("tests/fixtures/helm/values-everything.yaml").to_string_lossy().into_owned()
}

/// Every object of a multi-document YAML stream.
fn objects(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("rendered YAML: {e}\n{yaml}"));
    docs.into_iter().filter(|d| d.is_object()).collect()
}

fn find<'o>(objects: &'o [Value], kind: &str, name: &str) -> &'o Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", summary(objects)))
}

fn summary(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| format!("{}/{}", o["kind"].as_str().unwrap_or("?"), o["metadata"]["name"]))
        .collect()
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects.iter().filter_map(|o| o["kind"].as_str().map(str::to_owned)).collect()
}

/// The operator's container in the rendered Deployment.
fn operator_container(objects: &[Value]) -> &Value {
    &find(objects, "Deployment", "portcullis-operator")["spec"]["template"]["spec"]["containers"][0]
}

fn env<'c>(container: &'c Value, name: &str) -> &'c Value {
    container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no env {name} in {container}"))
}

fn args(container: &Value) -> Vec<&str> {
    container["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect()
}

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn helm_lint_accepts_the_chart_with_default_and_every_optional_value() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let lint = helm_ok(&["lint", "--strict", chart]);
    assert!(lint.contains("1 chart(s) linted, 0 chart(s) failed"), "{lint}");
    let lint = helm_ok(&["lint", "--strict", chart, "--values", &values_everything()]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
}

#[test]
fn default_values_render_a_locked_down_operator_and_no_optional_objects() {
    let objects = objects(&render(&[]));
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
        .into_iter()
        .map(str::to_owned)
        .collect(),
        "{:?}",
        summary(&objects)
    );
    let deployment = find(&objects, "Deployment", "portcullis-operator");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = operator_container(&objects);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(container["image"], "ghcr.io/portcullis/portcullis:0.1.0", "the appVersion by default");
    assert_eq!(env(container, "PORTCULLIS_ISSUER_BASE_URL")["value"], "https://id.example.com");
    assert_eq!(
        env(container, "PORTCULLIS_DATABASE_URL")["valueFrom"]["secretKeyRef"]["name"],
        "portcullis-database"
    );
    assert_eq!(env(container, "PORTCULLIS_IMAGE")["value"], "ghcr.io/portcullis/portcullis:0.1.0");
    // The default spread keeps replicas apart, and selects the operator's own pods.
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(spread["labelSelector"]["matchLabels"]["app.kubernetes.io/component"], "operator");
    assert_eq!(find(&objects, "PodDisruptionBudget", "portcullis-operator")["spec"]["maxUnavailable"], 1);
}

#[test]
fn every_value_shows_where_it_should() {
    let objects = objects(&render(&["--values", &values_everything()]));
    let deployment = find(&objects, "Deployment", "portcullis-operator");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let template = &deployment["spec"]["template"];
    assert_eq!(template["metadata"]["annotations"]["acme.test/owner"], "platform-team");
    assert_eq!(template["metadata"]["labels"]["acme.test/tier"], "control");
    let pod = &template["spec"];
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["tolerations"][0]["value"], "platform");
    assert_eq!(pod["imagePullSecrets"][0]["name"], "acme-registry");
    assert!(pod["affinity"]["nodeAffinity"].is_object(), "{pod}");
    let spreads = pod["topologySpreadConstraints"].as_array().expect("spread constraints");
    assert_eq!(spreads.len(), 2);
    assert_eq!(spreads[0]["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(spreads[0]["whenUnsatisfiable"], "DoNotSchedule");
    assert!(
        spreads
            .iter()
            .all(|s| s["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator")
    );

    let container = operator_container(&objects);
    let image = "registry.acme.test/platform/portcullis@sha256:3b7e1f4c9a2d8e6f0b5c1a9d7e3f2b8c4a6d0e9f1b3c5a7d9e2f4b6c8a0d1e3f";
    assert_eq!(container["image"], image, "a digest wins over the tag");
    assert_eq!(env(container, "PORTCULLIS_IMAGE")["value"], image, "the services run the same image");
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(container["resources"]["limits"]["memory"], "384Mi");
    let secret = &env(container, "PORTCULLIS_DATABASE_URL")["valueFrom"]["secretKeyRef"];
    assert_eq!(
        (secret["name"].as_str(), secret["key"].as_str()),
        (Some("iam-postgres"), Some("connection-url"))
    );
    // Each region's store: its Secret under the same key, named to the operator and handed to the services.
    let eu = &env(container, "PORTCULLIS_STORE_URL_EU")["valueFrom"]["secretKeyRef"];
    assert_eq!((eu["name"].as_str(), eu["key"].as_str()), (Some("iam-postgres-eu"), Some("connection-url")));
    assert_eq!(
        env(container, "PORTCULLIS_STORE_ENVS")["value"],
        "eu=PORTCULLIS_STORE_URL_EU,us-east=PORTCULLIS_STORE_URL_US_EAST"
    );
    assert_eq!(
        env(container, "PORTCULLIS_REGION_SECRETS")["value"],
        "eu=iam-postgres-eu,us-east=iam-postgres-us-east"
    );
    assert_eq!(env(container, "PORTCULLIS_ISSUER_BASE_URL")["value"], "https://id.acme.test");
    assert_eq!(
        env(container, "PORTCULLIS_SCIM_BASE_URL")["value"],
        "https://scim.acme.test",
        "trailing / dropped"
    );
    assert_eq!(env(container, "RUST_LOG")["value"], "info,portcullis=debug");
    let args = args(container);
    for expected in [
        "--lease-duration-seconds=20",
        "--concurrency=8",
        "--resync-seconds=300",
        "--token-service-replicas=4",
        "--scim-service-replicas=3",
        "--database-secret=iam-postgres",
        "--database-secret-key=connection-url",
        "--service-cpu-request=200m",
        "--service-memory-request=256Mi",
        "--service-memory-limit=1Gi",
        "--service-trusted-proxies=10.0.0.0/8,fd00::/8",
        "--service-smtp-secret=iam-smtp",
        "--service-mail-from=Acme IAM <iam@acme.example>",
    ] {
        assert!(args.contains(&expected), "{expected} not in {args:?}");
    }

    let account = find(&objects, "ServiceAccount", "portcullis-operator");
    assert_eq!(
        account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
        "portcullis@acme.iam.gserviceaccount.com"
    );
    assert_eq!(find(&objects, "PodDisruptionBudget", "portcullis-operator")["spec"]["maxUnavailable"], 2);
    assert_eq!(find(&objects, "Service", "portcullis-operator-metrics")["spec"]["ports"][0]["port"], 9090);

    // Routing: each service's host, /o/, to the Service the operator creates.
    let ingress = find(&objects, "Ingress", "portcullis");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"], "letsencrypt");
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "portcullis-tls");
    let rules: Vec<String> = ingress["spec"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            let path = &r["http"]["paths"][0];
            format!(
                "{} {} -> {}:{}",
                r["host"].as_str().unwrap_or_default(),
                path["path"].as_str().unwrap_or_default(),
                path["backend"]["service"]["name"].as_str().unwrap_or_default(),
                path["backend"]["service"]["port"]["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            "id.acme.test /o/ -> portcullis-token-service:http",
            "scim.acme.test /o/ -> portcullis-scim-service:http"
        ]
    );
    for (service, host) in
        [("portcullis-token-service", "id.acme.test"), ("portcullis-scim-service", "scim.acme.test")]
    {
        let route = find(&objects, "HTTPRoute", service);
        assert_eq!(route["spec"]["hostnames"], serde_json::json!([host]));
        assert_eq!(route["spec"]["parentRefs"][0]["name"], "public");
        assert_eq!(route["spec"]["rules"][0]["matches"][0]["path"]["value"], "/o/");
        assert_eq!(route["spec"]["rules"][0]["backendRefs"][0]["name"], service);
        assert_eq!(route["spec"]["rules"][0]["backendRefs"][0]["port"], 8080);
    }

    let monitor = find(&objects, "ServiceMonitor", "portcullis-operator");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
    assert_eq!(monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"], "operator");
    let services = find(&objects, "ServiceMonitor", "portcullis-services");
    assert_eq!(
        services["spec"]["selector"]["matchLabels"]["app.kubernetes.io/managed-by"],
        "portcullis-operator"
    );
    let default_port =
        &yaml_file(&chart().join("values.yaml"))["metrics"]["serviceMonitor"]["services"]["port"];
    assert_eq!(
        default_port, "metrics",
        "the services serve /metrics on the port the operator names metrics, not on http"
    );
    assert_eq!(services["spec"]["endpoints"][0]["port"], "metrics");

    // The Grafana dashboard, as the sidecar loads it: the chart's JSON, unchanged.
    let dashboards = find(&objects, "ConfigMap", "portcullis-dashboards");
    assert_eq!(dashboards["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(dashboards["metadata"]["labels"]["team"], "identity");
    let shipped: Value =
        serde_json::from_str(dashboards["data"]["portcullis.json"].as_str().unwrap_or_default())
            .expect("the dashboard in the ConfigMap is JSON");
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(chart().join("dashboards/portcullis.json")).expect("the dashboard"),
    )
    .expect("dashboard JSON");
    assert_eq!(shipped, file);
}

#[test]
fn the_chart_takes_its_crds_and_rbac_rules_from_config() {
    // The chart links to config/; `helm package` must carry the linked files,
    // so the published archive is checked as well as the directory.
    let packaged = tempfile::tempdir().expect("package dir");
    helm_ok(&["package", chart().to_str().unwrap(), "--destination", packaged.path().to_str().unwrap()]);
    let archive = packaged.path().join("portcullis-0.1.0.tgz");
    for chart in [chart(), archive] {
        let chart = chart.to_str().unwrap();
        // CRDs: what `helm install` would create is config/crd/bases, byte for byte.
        let shown = helm_ok(&["show", "crds", chart]);
        for (file, generated) in portcullis::cli::crds::render() {
            let in_config =
                std::fs::read_to_string(repo().join("config/crd/bases").join(file)).expect("config CRD");
            assert_eq!(
                in_config, generated,
                "config/crd/bases/{file} is stale: run `cargo run -- crds --out-dir config/crd/bases`"
            );
            assert!(
                shown.contains(generated.trim_end()),
                "{chart}: its CRDs differ from config/crd/bases/{file}"
            );
        }
        // RBAC: the rendered rules are config/rbac's.
        let objects = objects(&helm_ok(&["template", "portcullis", chart, "--namespace", "portcullis"]));
        for (kind, name, file) in [
            ("ClusterRole", "portcullis-portcullis-operator", "cluster_role.yaml"),
            ("Role", "portcullis-operator", "role.yaml"),
        ] {
            let source = yaml_file(&repo().join("config/rbac").join(file));
            assert!(
                source["rules"].as_array().is_some_and(|r| !r.is_empty()),
                "config/rbac/{file} has rules"
            );
            assert_eq!(
                find(&objects, kind, name)["rules"],
                source["rules"],
                "{chart}: its {kind} differs from config/rbac/{file}"
            );
        }
    }
}

#[test]
fn bad_values_are_refused_with_a_message_naming_the_value() {
    let cases: [(&[&str], &str); 7] = [
        (&["--set", "publicBaseUrl=https://id.acme.test/iam"], "publicBaseUrl"),
        (&["--set", "operator.replicas=-1"], "replicas"),
        (&["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (
            &["--set", "ingress.enabled=true", "--set", "scimBaseUrl=https://id.example.com"],
            "share the host id.example.com",
        ),
        (&["--set", "httpRoute.enabled=true"], "httpRoute.parentRefs"),
        (&["--set", "operator.replica=3"], "additional properties 'replica' not allowed"),
        (
            &[
                "--set",
                "database.regions[0].name=europe",
                "--set",
                "database.regions[0].existingSecret=db-eu",
            ],
            "/database/regions/0/name",
        ),
    ];
    let chart = chart();
    for (extra, expected) in cases {
        let mut args = vec!["template", "portcullis", chart.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = helm(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "helm template {extra:?} was accepted");
        assert!(stderr.contains(expected), "helm template {extra:?}: expected {expected:?} in:\n{stderr}");
    }
}

/// Applies a file with `kubectl apply --dry-run=server`: the API server runs
/// admission and schema validation (including CRD schemas and CEL) and stores nothing.
fn dry_run(cp: &ControlPlane, what: &str, yaml: &str) -> String {
    let file = cp.dir().join(format!("{what}.yaml"));
    std::fs::write(&file, yaml).expect("write manifest");
    cp.kubectl_ok(&["apply", "--dry-run=server", "-f", file.to_str().unwrap()])
}

#[test]
fn the_api_server_accepts_what_helm_and_kustomize_render() {
    let cp = ControlPlane::start();
    // The chart's optional objects are of upstream kinds; their CRDs come
    // from Gateway API's and prometheus-operator's own releases.
    for crd in ["httproutes.yaml", "servicemonitors.yaml"] {
        let path = tools().join("crds").join(crd);
        cp.kubectl_ok(&["apply", "--server-side", "-f", path.to_str().unwrap()]);
    }
    cp.kubectl_ok(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
    for namespace in ["portcullis", "argocd"] {
        cp.kubectl_ok(&["create", "namespace", namespace]);
    }

    let everything = render(&["--include-crds", "--values", &values_everything()]);
    let applied = dry_run(&cp, "helm-everything", &everything);
    for object in [
        "deployment.apps/portcullis-operator",
        "ingress.networking.k8s.io/portcullis",
        "httproute.gateway.networking.k8s.io/portcullis-scim-service",
        "servicemonitor.monitoring.coreos.com/portcullis-services",
        "poddisruptionbudget.policy/portcullis-operator",
        "customresourcedefinition.apiextensions.k8s.io/organizations.iam.portcullis.dev",
    ] {
        assert!(
            applied.contains(&format!("{object} created (server dry run)")),
            "{object} not in:\n{applied}"
        );
    }
    let defaults = dry_run(&cp, "helm-defaults", &render(&["--include-crds"]));
    assert!(
        defaults.contains("clusterrole.rbac.authorization.k8s.io/portcullis-portcullis-operator created"),
        "{defaults}"
    );

    let kustomized = cp.kubectl_ok(&["kustomize", repo().join("config/default").to_str().unwrap()]);
    let applied = dry_run(&cp, "kustomize-default", &kustomized);
    for object in
        ["deployment.apps/portcullis-operator", "rolebinding.rbac.authorization.k8s.io/portcullis-operator"]
    {
        assert!(
            applied.contains(&format!("{object} created (server dry run)")),
            "{object} not in:\n{applied}"
        );
    }
    // The samples are valid tenants (the CRDs are really installed for them).
    cp.kubectl_ok(&["apply", "--server-side", "-f", repo().join("config/crd/bases").to_str().unwrap()]);
    cp.kubectl_ok(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
    cp.kubectl_ok(&["create", "namespace", "sample"]);
    let samples = cp.kubectl_ok(&["kustomize", repo().join("config/samples").to_str().unwrap()]);
    dry_run(&cp, "kustomize-samples", &samples);

    // The health checks' test objects are valid objects of their kinds.
    for namespace in ["acme", "acme-eu", "typo"] {
        cp.kubectl_ok(&["create", "namespace", namespace]);
    }
    for kind in portcullis_kinds() {
        let testdata = health_dir(&kind).join("testdata");
        let applied = cp.kubectl_ok(&["apply", "--dry-run=server", "-f", testdata.to_str().unwrap()]);
        assert!(applied.contains("(server dry run)"), "{applied}");
    }

    // argocd-cm with one key per kind, each exactly its health.lua.
    let argocd = cp.kubectl_ok(&["kustomize", repo().join("config/argocd").to_str().unwrap()]);
    let config_map: Value = serde_saphyr::from_str(&argocd).expect("argocd-cm");
    assert_eq!(
        (config_map["metadata"]["name"].as_str(), config_map["metadata"]["namespace"].as_str()),
        (Some("argocd-cm"), Some("argocd"))
    );
    let data = config_map["data"].as_object().expect("data");
    for kind in portcullis_kinds() {
        let key = format!("resource.customizations.health.iam.portcullis.dev_{kind}");
        let script = std::fs::read_to_string(health_dir(&kind).join("health.lua")).expect("health.lua");
        assert_eq!(data.get(&key).and_then(Value::as_str), Some(script.as_str()), "{key}");
    }
    assert_eq!(data.len(), portcullis_kinds().len(), "one key per kind: {:?}", data.keys());
    let applied = dry_run(&cp, "argocd-cm", &argocd);
    assert!(applied.contains("configmap/argocd-cm created (server dry run)"), "{applied}");
}

/// The kinds the CRDs define.
fn portcullis_kinds() -> Vec<String> {
    portcullis::api::crds().into_iter().map(|(_, crd)| crd.spec.names.kind).collect()
}

fn health_dir(kind: &str) -> PathBuf {
    repo().join("config/argocd/iam.portcullis.dev").join(kind)
}

fn luahealth(dirs: &[PathBuf]) -> Output {
    Command::new(tools().join("luahealth")).args(dirs).output().expect("run luahealth")
}

#[test]
fn argo_cd_health_checks_give_the_expected_health_for_every_case() {
    let dirs: Vec<PathBuf> = portcullis_kinds().iter().map(|k| health_dir(k)).collect();
    let out = luahealth(&dirs);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for dir in &dirs {
        let kind = dir.file_name().unwrap().to_string_lossy();
        for status in ["Healthy", "Progressing", "Degraded"] {
            assert!(
                stdout.lines().any(|l| l.contains(&format!("/{kind}/testdata/")) && l.contains(&format!(": {status} "))),
                "{kind} has no {status} case:\n{stdout}"
            );
        }
    }
    eprintln!("{stdout}");
}

#[test]
fn the_health_runner_fails_when_a_script_answers_otherwise() {
    // A copy of a real check whose test expects what the script does not say.
    let dir = tempfile::tempdir().expect("temp dir");
    let source = health_dir("Role");
    std::fs::copy(source.join("health.lua"), dir.path().join("health.lua")).expect("copy script");
    std::fs::create_dir(dir.path().join("testdata")).expect("testdata");
    std::fs::copy(
        source.join("testdata/degraded_unknown_permission.yaml"),
        dir.path().join("testdata/case.yaml"),
    )
    .expect("copy case");
    std::fs::write(
        dir.path().join("health_test.yaml"),
        "tests:\n- healthStatus: {status: Healthy, message: Role grants 2 permissions}\n  inputPath: testdata/case.yaml\n",
    )
    .expect("write test");
    let out = luahealth(&[dir.path().to_path_buf()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a wrong expectation passed:\n{stdout}");
    assert!(stdout.contains("FAIL") && stdout.contains("Degraded"), "{stdout}");
}

#[test]
fn dockerfile_builds_locked_and_runs_as_non_root_on_a_minimal_base() {
    // It cannot be built here (no container engine): check what matters in it.
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let instructions: Vec<&str> =
        dockerfile.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let stages: Vec<&&str> = instructions.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage: {stages:?}");
    assert!(stages[1].contains("distroless") && stages[1].contains("nonroot"), "{}", stages[1]);
    assert!(
        instructions
            .iter()
            .any(|l| l.contains("cargo build") && l.contains("--release") && l.contains("--locked"))
    );
    let values = yaml_file(&chart().join("values.yaml"));
    let (user, group) =
        (&values["podSecurityContext"]["runAsUser"], &values["podSecurityContext"]["runAsGroup"]);
    let chart_user = format!("USER {user}:{group}");
    assert!(
        instructions.contains(&chart_user.as_str()),
        "the image runs as the chart's runAsUser ({chart_user})"
    );
    assert!(instructions.last().is_some_and(|l| l.starts_with("ENTRYPOINT")), "{instructions:?}");
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target"), "the build context leaves out target/");
}

/// An operator process against the test control plane, killed when dropped.
struct Operator {
    child: std::process::Child,
    log: PathBuf,
}

impl Operator {
    fn start(cp: &ControlPlane) -> Operator {
        let log = cp.dir().join("operator.log");
        let out = std::fs::File::create(&log).expect("operator log");
        let probe =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port");
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("operator")
            .args(["--database-url", &format!("sqlite://{}?mode=rwc", cp.dir().join("store.db").display())])
            .args(["--namespace", "portcullis", "--identity", "packaging", "--lease-duration-seconds", "15"])
            .args(["--probe-address", &probe.to_string()])
            .args(["--issuer-base-url", "https://id.portcullis.test"])
            .env("KUBECONFIG", &cp.kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("start portcullis operator");
        Operator { child, log }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- operator log ---\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

const KINDS: &str = "organizations.iam.portcullis.dev,roles.iam.portcullis.dev,roleassignments.iam.portcullis.dev,\
                     identityproviders.iam.portcullis.dev,oauthclients.iam.portcullis.dev,\
                     accessrequests.iam.portcullis.dev";

/// Each object of `KINDS` in a namespace, as `(kind, name, file with its JSON)`.
fn live_objects(cp: &ControlPlane, namespace: &str) -> Vec<(String, String, PathBuf)> {
    let list: Value = serde_json::from_str(&cp.kubectl_ok(&["get", KINDS, "-n", namespace, "-o", "json"]))
        .expect("kubectl get -o json");
    let dir = cp.dir().join("live");
    std::fs::create_dir_all(&dir).expect("live dir");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            let kind = item["kind"].as_str().expect("kind").to_owned();
            let name = item["metadata"]["name"].as_str().expect("name").to_owned();
            let file = dir.join(format!("{kind}-{name}.json"));
            std::fs::write(&file, item.to_string()).expect("write object");
            (kind, name, file)
        })
        .collect()
}

/// The health Argo CD would show for an object: `(status, message)`.
fn live_health(kind: &str, file: &Path) -> (String, String) {
    let out = Command::new(tools().join("luahealth"))
        .arg("-eval")
        .arg(health_dir(kind).join("health.lua"))
        .arg(file)
        .output()
        .expect("run luahealth");
    assert!(out.status.success(), "{kind}: {}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
    let (status, message) = line.split_once('\t').unwrap_or((&line, ""));
    (status.to_owned(), message.to_owned())
}

#[test]
fn health_checks_read_what_the_real_operator_writes() {
    let cp = ControlPlane::start();
    cp.kubectl_ok(&["apply", "--server-side", "-f", repo().join("config/crd/bases").to_str().unwrap()]);
    cp.kubectl_ok(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
    for namespace in ["portcullis", "acme"] {
        cp.kubectl_ok(&["create", "namespace", namespace]);
    }
    cp.kubectl_ok(&["apply", "--server-side", "-f", repo().join("examples/acme").to_str().unwrap()]);
    let broken = cp.dir().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: iam.portcullis.dev/v1alpha1\nkind: RoleAssignment\nmetadata: {name: ghost, namespace: acme}\n\
         spec:\n  principal: {kind: User, name: alice.martin@acme.com}\n  role: ghost-role\n  scope: Organization\n\
         ---\napiVersion: iam.portcullis.dev/v1alpha1\nkind: AccessRequest\nmetadata: {name: ghost-access, namespace: acme}\n\
         spec: {requester: alice.martin@acme.com, role: org-admin, duration: 1h, justification: a test}\n",
    )
    .expect("write manifest");
    cp.kubectl_ok(&["apply", "--server-side", "-f", broken.to_str().unwrap()]);

    // Before the operator has said anything: Progressing, for every kind.
    let before = live_objects(&cp, "acme");
    assert!(before.len() >= 6, "{before:?}");
    for (kind, name, file) in &before {
        let (status, message) = live_health(kind, file);
        assert_eq!(status, "Progressing", "{kind} {name}: {message}");
    }

    let _operator = Operator::start(&cp);
    let reported = support::eventually(
        "the operator reports on every object",
        std::time::Duration::from_secs(120),
        || {
            let objects = live_objects(&cp, "acme");
            let waiting: Vec<String> = objects
                .iter()
                .filter(|(kind, _, file)| live_health(kind, file).0 == "Progressing")
                .map(|(kind, name, _)| format!("{kind}/{name}"))
                .collect();
            if waiting.is_empty() { Ok(objects) } else { Err(format!("still Progressing: {waiting:?}")) }
        },
    );
    let mut kinds_seen = BTreeSet::new();
    for (kind, name, file) in &reported {
        let (status, message) = live_health(kind, file);
        kinds_seen.insert(kind.clone());
        if name == "ghost" {
            assert_eq!(status, "Degraded", "{message}");
            assert_eq!(message, "RoleNotFound: role ghost-role does not exist in namespace acme");
        } else if name == "ghost-access" {
            // acme takes no access requests (its Organization names no approvers).
            assert_eq!(status, "Degraded", "{message}");
            assert!(message.starts_with("AccessRequestsDisabled: "), "{message}");
        } else {
            assert_eq!(status, "Healthy", "{kind} {name}: {message}");
        }
        if kind == "Organization" {
            assert_eq!(message, "Issuer https://id.portcullis.test/o/acme");
        }
    }
    assert_eq!(kinds_seen.len(), portcullis_kinds().len(), "every kind checked live: {kinds_seen:?}");
}
