//! The CRDs and examples against a real kube-apiserver: what a platform
//! engineer sees when applying them with kubectl.

mod support;

use std::time::Duration;

use support::{ControlPlane, eventually, invalid_examples, namespaces_in, repo};

#[test]
fn the_real_api_server_serves_the_portcullis_api() {
    let cp = ControlPlane::start();
    let crds = repo().join("crds");
    cp.kubectl_ok(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
    cp.kubectl_ok(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);

    the_acme_example_is_accepted(&cp);
    cel_rules_reject_each_invalid_example_with_its_message(&cp);
    printer_columns_and_the_category_show_in_kubectl_get(&cp);
    kubectl_explain_teaches_the_fields(&cp);
}

fn ensure_namespace(cp: &ControlPlane, namespace: &str) {
    let out = cp.kubectl(&["create", "namespace", namespace]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("AlreadyExists"),
        "create namespace {namespace}: {stderr}"
    );
}

fn the_acme_example_is_accepted(cp: &ControlPlane) {
    ensure_namespace(cp, "acme");
    let acme = repo().join("examples/acme");
    cp.kubectl_ok(&["apply", "--server-side", "-f", acme.to_str().unwrap()]);
    let names = cp.kubectl_ok(&["get", "portcullis", "-n", "acme", "-o", "name"]);
    for kind in ["organization", "role", "roleassignment", "identityprovider", "oauthclient"] {
        assert!(
            names.lines().any(|l| l.starts_with(&format!("{kind}.iam.portcullis.dev/"))),
            "no {kind} listed by `kubectl get portcullis`:\n{names}"
        );
    }
}

fn cel_rules_reject_each_invalid_example_with_its_message(cp: &ControlPlane) {
    let examples = invalid_examples();
    assert!(examples.iter().filter(|e| e.rejected_by == "cel").count() >= 10, "too few CEL examples");
    for example in examples {
        for namespace in namespaces_in(&example.path) {
            ensure_namespace(cp, &namespace);
        }
        let out = cp.kubectl(&["apply", "--server-side", "-f", example.path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let file = example.path.display();
        match example.rejected_by.as_str() {
            "cel" | "schema" => {
                assert!(!out.status.success(), "{file}: the API server accepted it");
                assert!(
                    stderr.contains(&example.expect),
                    "{file}: expected {:?} in:\n{stderr}",
                    example.expect
                );
            }
            // Cross-resource mistakes pass the API server: that is why `validate` exists.
            "validate" => assert!(out.status.success(), "{file}: the API server rejected it:\n{stderr}"),
            other => panic!("{file}: unknown rejected-by {other}"),
        }
    }
}

fn printer_columns_and_the_category_show_in_kubectl_get(cp: &ControlPlane) {
    let expected: [(&str, &[&str]); 5] = [
        ("organizations.iam.portcullis.dev", &["READY", "DISPLAY NAME", "PROVISIONING", "LEGAL HOLD", "AGE"]),
        ("iamrole", &["READY", "SCOPE", "PERMISSIONS", "AGE"]),
        ("ra", &["READY", "PRINCIPAL", "KIND", "ROLE", "SCOPE", "WORKSPACE", "AGE"]),
        ("idp", &["READY", "TYPE", "STAGE", "SCIM", "AGE"]),
        ("oc", &["READY", "TYPE", "GRANTS", "AGE"]),
    ];
    for (resource, columns) in expected {
        let table = cp.kubectl_ok(&["get", resource, "-n", "acme"]);
        let header = table.lines().next().unwrap_or_default();
        for column in columns {
            assert!(header.contains(column), "`kubectl get {resource}` has no {column} column:\n{table}");
        }
    }
    let roles = cp.kubectl_ok(&["get", "roles.iam.portcullis.dev", "-n", "acme", "org-admin"]);
    assert!(roles.contains("Organization"), "scope column shows the role's scope:\n{roles}");
}

fn kubectl_explain_teaches_the_fields(cp: &ControlPlane) {
    // The API server publishes a new CRD's OpenAPI a moment after it is established.
    let explained = eventually("kubectl explain", Duration::from_secs(60), || {
        let out = cp.kubectl(&[
            "explain",
            "organizations.spec.tokens.keyRotation.overlap",
            "--api-version=iam.portcullis.dev/v1alpha1",
        ]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    assert!(explained.contains("no valid token stops verifying"), "{explained}");
    let principal = cp.kubectl_ok(&[
        "explain",
        "roleassignments.spec.principal.kind",
        "--api-version=iam.portcullis.dev/v1alpha1",
    ]);
    assert!(principal.contains("OAuthClient name"), "{principal}");
}
