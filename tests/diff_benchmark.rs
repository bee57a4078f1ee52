//! How long `portcullis diff` takes on a large tenant (BENCHMARKS.md, "Access
//! review"): two git revisions of a tenant with 500 roles and 10,000
//! assignments, where the head makes the role of a 5,000-member group
//! include an administrator role, with groups expanded from a SQLite store.
//! Not a test: ignored, run on request in release:
//!
//! ```text
//! cargo test --release --test diff_benchmark -- --ignored --nocapture
//! ```

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis::store::{GroupSource, GroupStore as _, NewGroup, NewUser, Store, UserSource, UserStore as _};

const NAMESPACE: &str = "bench";
const DOMAINS: usize = 20;
const ACTIONS: usize = 10;
const ROLES: usize = 500;
const WORKSPACES: usize = 10;
const ASSIGNMENTS: usize = 10_000;
const GROUP_MEMBERS: usize = 5_000;
/// Every this many users, one is inactive.
const INACTIVE_EVERY: usize = 50;
const RUNS: usize = 5;
const TARGET: Duration = Duration::from_secs(1);

fn permission(i: usize) -> String {
    let i = i % (DOMAINS * ACTIONS);
    format!("d{:02}.a{}", i / ACTIONS, i % ACTIONS)
}

fn user(n: usize) -> String {
    format!("user-{n:05}@bench.example")
}

fn organization() -> String {
    let mut text = format!(
        "apiVersion: iam.portcullis.dev/v1alpha1\nkind: Organization\nmetadata: {{name: {NAMESPACE}, namespace: {NAMESPACE}}}\n\
         spec:\n  displayName: Bench\n  workspaces:\n"
    );
    for w in 0..WORKSPACES {
        let _ = writeln!(text, "    - name: ws{w}");
    }
    text.push_str("  permissions:\n");
    for p in 0..DOMAINS * ACTIONS {
        let _ = writeln!(text, "    - name: {}", permission(p));
    }
    text.push_str("    - name: iam.view\n    - name: iam.manage\n      privileged: true\n");
    text
}

/// Role `r` grants two permissions; every tenth also a domain wildcard, and
/// every twenty-fifth includes the role before it. `admin` grants `iam.*`.
/// In the head, role 7 (the big group's) includes `admin`.
fn roles(head: bool) -> String {
    let mut docs = Vec::new();
    for r in 0..ROLES {
        let mut permissions = vec![permission(r), permission(r * 7 + 3)];
        if r.is_multiple_of(10) {
            permissions.push(format!("d{:02}.*", r % DOMAINS));
        }
        let mut includes = Vec::new();
        if r % 25 == 5 {
            includes.push(format!("role-{:03}", r - 1));
        }
        if head && r == 7 {
            includes.push("admin".to_owned());
        }
        let scope = if r.is_multiple_of(2) { "Organization" } else { "Workspace" };
        docs.push(format!(
            "apiVersion: iam.portcullis.dev/v1alpha1\nkind: Role\nmetadata: {{name: role-{r:03}, namespace: {NAMESPACE}}}\n\
             spec:\n  scope: {scope}\n  permissions: [{}]\n  includedRoles: [{}]\n",
            permissions.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", "),
            includes.join(", ")
        ));
    }
    docs.push(format!(
        "apiVersion: iam.portcullis.dev/v1alpha1\nkind: Role\nmetadata: {{name: admin, namespace: {NAMESPACE}}}\n\
         spec:\n  scope: Organization\n  permissions: [\"iam.*\"]\n"
    ));
    docs.join("---\n")
}

/// 10,000 assignments: the big group holds role 7 in workspace ws1, one
/// user in ten also has a direct assignment there, the rest are spread over
/// roles and scopes.
fn assignments(chunk: usize, per_file: usize) -> String {
    let mut docs = Vec::new();
    for a in chunk * per_file..(chunk + 1) * per_file {
        let role = a % ROLES;
        let (principal, role, scope) = if a == 0 {
            ("{kind: Group, name: Everyone}".to_owned(), 7, "Workspace".to_owned())
        } else {
            (
                format!("{{kind: User, name: \"{}\"}}", user(a)),
                role,
                if role.is_multiple_of(2) { "Organization" } else { "Workspace" }.to_owned(),
            )
        };
        let workspace = if scope == "Workspace" {
            format!("  workspace: ws{}\n", if a == 0 { 1 } else { a % WORKSPACES })
        } else {
            String::new()
        };
        docs.push(format!(
            "apiVersion: iam.portcullis.dev/v1alpha1\nkind: RoleAssignment\nmetadata: {{name: ra-{a:05}, namespace: {NAMESPACE}}}\n\
             spec:\n  principal: {principal}\n  role: role-{role:03}\n  scope: {scope}\n{workspace}"
        ));
    }
    docs.join("---\n")
}

fn write_side(dir: &Path, head: bool) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("organization.yaml"), organization()).unwrap();
    std::fs::write(dir.join("roles.yaml"), roles(head)).unwrap();
    let per_file = 1_000;
    for chunk in 0..ASSIGNMENTS / per_file {
        std::fs::write(dir.join(format!("assignments-{chunk:02}.yaml")), assignments(chunk, per_file))
            .unwrap();
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=bench", "-c", "user.email=bench@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

async fn populate_store(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let everyone = store
        .create_group(&NewGroup {
            organization: NAMESPACE.into(),
            display_name: "Everyone".into(),
            source: GroupSource::Idp,
            external_id: None,
        })
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..GROUP_MEMBERS {
        let active = !n.is_multiple_of(INACTIVE_EVERY);
        let created = store
            .create_user(&NewUser { active, ..NewUser::new(NAMESPACE, user(n), UserSource::Scim) })
            .await
            .unwrap();
        ids.push(created.id);
    }
    store.replace_members(NAMESPACE, &everyone.id, &ids).await.unwrap();
    store.close().await;
}

#[test]
#[ignore = "a benchmark: run in release with --ignored (BENCHMARKS.md)"]
fn diff_of_two_revisions_of_a_large_tenant_with_a_big_group_from_the_store() {
    // PORTCULLIS_DIFF_BENCH_DIR keeps the tenant, to run the command by hand.
    let temporary = tempfile::tempdir().unwrap();
    let dir =
        std::env::var_os("PORTCULLIS_DIFF_BENCH_DIR").map_or_else(|| temporary.path().to_owned(), Into::into);
    let _ = std::fs::remove_dir_all(&dir);
    let repository = dir.join("repo");
    std::fs::create_dir_all(&repository).unwrap();
    git(&repository, &["init", "-q", "-b", "main"]);
    write_side(&repository.join("iam"), false);
    git(&repository, &["add", "-A"]);
    git(&repository, &["commit", "-q", "-m", "base"]);
    write_side(&repository.join("iam"), true);
    git(&repository, &["commit", "-q", "-am", "role-007 includes admin"]);
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let url = format!("sqlite://{}?mode=rwc", data.join("portcullis.db").display());
    tokio::runtime::Runtime::new().unwrap().block_on(populate_store(&url));

    println!(
        "in {}: portcullis diff HEAD~1 HEAD --path iam --store {}",
        repository.display(),
        data.display()
    );
    for output in ["text", "json"] {
        let mut times = Vec::new();
        let mut stdout = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
                .args(["diff", "HEAD~1", "HEAD", "--path", "iam", "--store"])
                .arg(&data)
                .args(["--output", output])
                .current_dir(&repository)
                .output()
                .unwrap();
            times.push(started.elapsed());
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            stdout = out.stdout;
        }
        times.sort();
        let text = String::from_utf8_lossy(&stdout);
        if output == "text" {
            let expected =
                format!("through this group, {GROUP_MEMBERS} user(s) gain in workspace ws1: iam.manage");
            assert!(
                text.contains(&expected),
                "the review names the group's reach:\n{}",
                &text[..text.len().min(4000)]
            );
        }
        println!(
            "portcullis diff --output {output}: {} roles, {ASSIGNMENTS} assignments, a {GROUP_MEMBERS}-member group: \
             median {:?} (min {:?}, max {:?}, {RUNS} runs; target {TARGET:?}); {} bytes of output",
            ROLES + 1,
            times[RUNS / 2],
            times[0],
            times[RUNS - 1],
            stdout.len()
        );
    }
}
