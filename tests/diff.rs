//! `portcullis diff` as a reviewer and a CI job run it: the real binary on
//! the fixture pairs under `tests/fixtures/diff/` (the `base` folder and one
//! folder per change), on git revisions of a repository each test creates,
//! and with groups expanded from a real store (SQLite, and PostgreSQL).

#[path = "support/postgres.rs"]
mod postgres;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use portcullis::store::{GroupSource, GroupStore as _, NewGroup, NewUser, Store, UserSource, UserStore as _};

const FIXTURES: &str = "tests/fixtures/diff";
/// Expiries are judged at this instant in the cases that print them all.
const AT: &str = "2030-01-01T00:00:00Z";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn portcullis_in(dir: &Path, args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("diff")
        .args(args)
        .current_dir(dir)
        .env_remove("CLICOLOR_FORCE")
        .output()
        .expect("run portcullis");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `portcullis diff` from the repository root, on fixture folders.
fn diff(head: &str, extra: &[&str]) -> Run {
    let base = format!("{FIXTURES}/base");
    let head = format!("{FIXTURES}/{head}");
    let mut args = vec![base.as_str(), head.as_str()];
    args.extend_from_slice(extra);
    portcullis_in(&repo(), &args)
}

fn assert_contains(run: &Run, expected: &[&str]) {
    for text in expected {
        assert!(run.stdout.contains(text), "missing {text:?} in:\n{}\n(stderr: {})", run.stdout, run.stderr);
    }
}

/// The block of one principal in the text output.
fn block<'a>(stdout: &'a str, heading: &str) -> &'a str {
    let start = stdout
        .find(&format!("\n  {heading}\n"))
        .unwrap_or_else(|| panic!("no block {heading:?} in:\n{stdout}"));
    let rest = &stdout[start + 1..];
    let end = rest[1..].find("\n\n").map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

#[test]
fn a_role_gaining_iam_through_included_roles_is_named_privileged_and_fails_the_review() {
    let run = diff("role-includes-admin", &["--fail-on", "privileged"]);
    assert_eq!(run.code, 1, "--fail-on privileged fails it:\n{}{}", run.stdout, run.stderr);
    let dan = block(&run.stdout, "user dan@globex.example");
    assert!(dan.contains("in the organization"), "{dan}");
    for permission in ["iam.manage", "iam.configure-sso"] {
        assert!(dan.contains(&format!("+ {permission}  [privileged]")), "{dan}");
    }
    assert!(
        dan.contains(&format!("role auditor > iam-admin (iam.*), RoleAssignment dan-auditor ({FIXTURES}/role-includes-admin/assignments.yaml:")),
        "the cause names the role, the included role, the grant and the assignment with its file:\n{dan}"
    );
    assert!(!dan.contains("+ iam.view"), "already held: {dan}");
    assert_contains(
        &run,
        &["role auditor changed", "reaches:", "user dan@globex.example in the organization"],
    );
    assert!(
        run.stderr.contains("--fail-on privileged: globex: 1 principal(s) gain privileged access"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("--fail-on privileged: globex: role auditor now gives privileged permissions"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_markdown_and_json_outputs_in_full() {
    for (output, file) in [("markdown", "role-includes-admin.md"), ("json", "role-includes-admin.json")] {
        let run = diff("role-includes-admin", &["--output", output, "--at", AT]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let path = repo().join(FIXTURES).join("expected").join(file);
        let expected = std::fs::read_to_string(&path).expect("expected output");
        assert!(
            run.stdout == expected,
            "{output} output differs from {}:\n--- got ---\n{}\n--- expected ---\n{expected}",
            path.display(),
            run.stdout
        );
    }
}

#[test]
fn a_group_mapping_added_to_an_identity_provider_grants_the_group() {
    let run = diff("group-mapping-added", &["--fail-on", "privileged"]);
    assert_eq!(run.code, 0, "a harmless change passes --fail-on privileged:\n{}{}", run.stdout, run.stderr);
    let finance = block(&run.stdout, "group Finance");
    assert!(finance.contains("+ data.export"), "{finance}");
    assert!(
        finance.contains(&format!(
            "IdentityProvider sso groupMappings[1] ({FIXTURES}/group-mapping-added/identity-provider.yaml:21)"
        )),
        "{finance}"
    );
    assert!(run.stdout.contains("Groups are not expanded into their members (no --store)"), "{}", run.stdout);
    let any = diff("group-mapping-added", &["--fail-on", "any"]);
    assert_eq!(any.code, 1, "any change fails --fail-on any: {}", any.stderr);
    let approval = diff("group-mapping-added", &["--fail-on", "approval"]);
    assert_eq!(approval.code, 0, "{}", approval.stderr);
}

#[test]
fn an_assignment_moved_from_a_workspace_to_the_organization() {
    let run = diff("assignment-to-organization", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let eve = block(&run.stdout, "user eve@globex.example");
    assert!(eve.contains("in the organization\n      + data.export"), "{eve}");
    assert!(!eve.contains("workspace"), "held in emea on both sides, so nothing to say there: {eve}");
}

#[test]
fn an_expiry_removed_holds_the_permission_longer() {
    let run = diff("expiry-removed", &["--fail-on", "privileged"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let carol = block(&run.stdout, "user carol@globex.example");
    assert!(carol.contains("+ data.export  held longer: until 2099-01-01T00:00:00Z -> no end"), "{carol}");
    assert!(carol.contains("role exporter (data.export), RoleAssignment carol-exporter"), "{carol}");
}

#[test]
fn a_role_deleted_loses_its_holders_what_it_gave() {
    let run = diff("role-deleted", &["--fail-on", "any"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_contains(
        &run,
        &["role auditor deleted", "- iam.view", "user dan@globex.example in the organization"],
    );
    let dan = block(&run.stdout, "user dan@globex.example");
    assert!(
        dan.contains(&format!("RoleAssignment dan-auditor ({FIXTURES}/base/assignments.yaml:")),
        "the base side explains a loss: {dan}"
    );
    assert!(run.stdout.contains("0 principal(s) gain access (0 privileged, 0 requiring approval), 1 lose access; 1 role(s) changed"), "{}", run.stdout);
}

#[test]
fn invalid_manifests_on_one_side_are_reported_as_validate_does_with_the_side() {
    let run = diff("invalid-head", &[]);
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "", "no review is printed");
    let file = format!("{FIXTURES}/invalid-head/assignments.yaml:");
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with(&file))
        .unwrap_or_else(|| panic!("no {file} line in:\n{}", run.stderr));
    assert!(line.contains(": error: RoleAssignment dan-auditor: role auditors does not exist"), "{line}");
    let validate = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["validate", &format!("{FIXTURES}/invalid-head")])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&validate.stdout).contains(line), "the same line as validate prints");
    assert!(
        run.stderr.contains(&format!("the head side ({FIXTURES}/invalid-head) has 1 error(s)")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("base side"), "{}", run.stderr);
}

#[test]
fn a_folder_that_does_not_exist_is_named() {
    let run = portcullis_in(&std::env::temp_dir(), &["/nonexistent-base", "/nonexistent-head"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("/nonexistent-base: no such folder"), "{}", run.stderr);
}

// === Git revisions. ===

/// A repository with the base fixture under `iam/` on `main`, the
/// role-includes-admin change on branch `feature`, and, after the branch,
/// one more commit on `main` (zed's assignment).
fn repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let copy = |from: &str| {
        let target = dir.path().join("iam");
        let _ = std::fs::remove_dir_all(&target);
        std::fs::create_dir_all(&target).unwrap();
        for entry in std::fs::read_dir(repo().join(FIXTURES).join(from)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
    };
    git(&["init", "-q", "-b", "main"]);
    // A workflow file is YAML too, but outside the manifests folder.
    std::fs::create_dir_all(dir.path().join(".ci")).unwrap();
    std::fs::write(dir.path().join(".ci/pipeline.yml"), "steps: []\n").unwrap();
    copy("base");
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "base"]);
    git(&["checkout", "-q", "-b", "feature"]);
    copy("role-includes-admin");
    git(&["commit", "-q", "-am", "auditor includes iam-admin"]);
    git(&["checkout", "-q", "main"]);
    let zed = "---\napiVersion: iam.portcullis.dev/v1alpha1\nkind: RoleAssignment\nmetadata:\n  name: zed-auditor\n  \
               namespace: globex\nspec:\n  principal: {kind: User, name: zed@globex.example}\n  role: auditor\n  scope: Organization\n";
    let assignments = dir.path().join("iam/assignments.yaml");
    let text = std::fs::read_to_string(&assignments).unwrap() + zed;
    std::fs::write(&assignments, text).unwrap();
    git(&["commit", "-q", "-am", "zed is an auditor"]);
    dir
}

#[test]
fn revisions_are_read_from_the_repository() {
    let repository = repository();
    let dir = repository.path();
    let two_revisions = portcullis_in(dir, &["main", "feature", "--path", "iam"]);
    assert_eq!(two_revisions.code, 0, "{}", two_revisions.stderr);
    assert!(
        two_revisions.stdout.contains("Access review: main:iam -> feature:iam"),
        "{}",
        two_revisions.stdout
    );
    let dan = block(&two_revisions.stdout, "user dan@globex.example");
    assert!(dan.contains("+ iam.manage  [privileged]"), "{dan}");
    assert!(
        dan.contains("RoleAssignment dan-auditor (feature:iam/assignments.yaml:"),
        "files are named rev:path: {dan}"
    );
    // feature has no zed: against main's tip, zed loses.
    assert!(two_revisions.stdout.contains("user zed@globex.example"), "{}", two_revisions.stdout);

    // What the pull request from feature into main changes: against the merge base, no zed.
    let merge_base = portcullis_in(dir, &["main...feature", "--path", "iam"]);
    assert_eq!(merge_base.code, 0, "{}", merge_base.stderr);
    assert!(merge_base.stdout.contains("(merge base of main and feature)"), "{}", merge_base.stdout);
    assert!(merge_base.stdout.contains("user dan@globex.example"), "{}", merge_base.stdout);
    assert!(!merge_base.stdout.contains("zed"), "{}", merge_base.stdout);

    // REV:PATH, and a bare revision from inside the folder.
    let explicit = portcullis_in(dir, &["main:iam", "feature:iam"]);
    assert_eq!(explicit.stdout, two_revisions.stdout);
    let inside = portcullis_in(&dir.join("iam"), &["main", "feature"]);
    assert_eq!(inside.stdout, two_revisions.stdout, "{}", inside.stderr);

    // A revision against a folder of the working tree.
    let against_folder = portcullis_in(dir, &["feature:iam", "iam"]);
    assert_eq!(against_folder.code, 0, "{}", against_folder.stderr);
    assert!(against_folder.stdout.contains("user zed@globex.example"), "{}", against_folder.stdout);
}

#[test]
fn a_revision_or_path_that_does_not_exist_is_named() {
    let repository = repository();
    let dir = repository.path();
    let run = portcullis_in(dir, &["main", "no-such-branch", "--path", "iam"]);
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("no-such-branch: no such folder, and no such revision in this repository"),
        "{}",
        run.stderr
    );
    let run = portcullis_in(dir, &["main:nowhere", "feature:iam"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("\"nowhere\" does not exist at revision main"), "{}", run.stderr);
    let outside = tempfile::tempdir().unwrap();
    let run = portcullis_in(outside.path(), &["main", "feature"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not in a git repository"), "{}", run.stderr);
}

#[test]
fn invalid_manifests_at_a_revision_name_the_revision_and_file() {
    let repository = repository();
    let dir = repository.path();
    let broken = "---\napiVersion: iam.portcullis.dev/v1alpha1\nkind: Role\nmetadata:\n  name: broken\n  \
                  namespace: globex\nspec:\n  scope: Organization\n  permissions: [journeys.launch]\n";
    let roles = dir.join("iam/roles.yaml");
    std::fs::write(&roles, std::fs::read_to_string(&roles).unwrap() + broken).unwrap();
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-am", "broken"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let run = portcullis_in(dir, &["main~1", "main", "--path", "iam"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.lines().any(|l| l.starts_with("main:iam/roles.yaml:")
            && l.contains("permission journeys.launch is not in the catalog")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("the head side (main:iam) has 1 error(s)"), "{}", run.stderr);
}

// === The example tenant. ===

#[test]
fn acme_with_analysts_including_org_admin_names_everyone_who_gains_iam_manage() {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("examples/acme")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let roles = copy.path().join("roles.yaml");
    let text = std::fs::read_to_string(&roles).unwrap();
    let changed = text.replacen(
        "  includedRoles:\n    - workspace-viewer\n  permissions:\n    - compliance.view\n    - data.view\n",
        "  includedRoles:\n    - workspace-viewer\n    - org-admin\n  permissions:\n    - compliance.view\n    - data.view\n",
        1,
    );
    assert_ne!(changed, text, "analyst-readonly found in the example");
    std::fs::write(&roles, changed).unwrap();

    let head = copy.path().to_str().unwrap();
    let run = portcullis_in(&repo(), &["examples/acme", head, "--output", "json", "--fail-on", "privileged"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let review: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let mut gaining: Vec<(String, String, String)> = Vec::new();
    for principal in review["organizations"][0]["principals"].as_array().unwrap() {
        for scope in principal["scopes"].as_array().unwrap() {
            for change in scope["permissions"].as_array().unwrap() {
                if change["permission"] == "iam.manage" && change["change"] == "gained" {
                    assert_eq!(change["privileged"], true, "{change}");
                    gaining.push((
                        principal["principal"]["kind"].as_str().unwrap().to_owned(),
                        principal["principal"]["name"].as_str().unwrap().to_owned(),
                        scope["scope"]["name"].as_str().unwrap_or("organization").to_owned(),
                    ));
                }
            }
        }
    }
    // analyst-readonly is held only through Okta's group mappings.
    let expected =
        [("group", "Acme Analysts EMEA", "emea-marketing"), ("group", "Acme Analysts US", "us-marketing")]
            .map(|(k, n, s)| (k.to_owned(), n.to_owned(), s.to_owned()));
    assert_eq!(gaining, expected);

    let text = portcullis_in(&repo(), &["examples/acme", head]);
    for group in ["group Acme Analysts EMEA", "group Acme Analysts US"] {
        let block = block(&text.stdout, group);
        assert!(block.contains("+ iam.manage  [privileged]"), "{block}");
        assert!(block.contains("role analyst-readonly > org-admin (iam.*) in workspace "), "{block}");
        assert!(block.contains(", IdentityProvider okta groupMappings["), "{block}");
    }
}

// === Groups expanded from the store. ===

/// Finance (the group mapping-added change grants it data.export) with three
/// members, one inactive; Support with one.
async fn populate(store: &Store) {
    let org = "globex";
    let finance = store
        .create_group(&NewGroup {
            organization: org.into(),
            display_name: "Finance".into(),
            source: GroupSource::Idp,
            external_id: None,
        })
        .await
        .unwrap();
    for (name, active) in
        [("fay@globex.example", true), ("gus@globex.example", false), ("hal@globex.example", true)]
    {
        let user = store
            .create_user(&NewUser { active, ..NewUser::new(org, name, UserSource::Scim) })
            .await
            .unwrap();
        store.add_member(org, &finance.id, &user.id).await.unwrap();
    }
}

fn populated(url: &str) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = Store::connect(url).await.expect("create the store");
        populate(&store).await;
        store.close().await;
    });
}

fn assert_groups_expanded(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    let finance = block(&run.stdout, "group Finance");
    assert!(
        finance.contains("through this group, 3 user(s) gain in the organization: data.export"),
        "{finance}"
    );
    assert!(finance.contains("users: fay@globex.example, hal@globex.example"), "{finance}");
    assert!(
        finance.contains("inactive users (shown apart: they hold nothing now): gus@globex.example"),
        "{finance}"
    );
    assert!(!run.stdout.contains("Groups are not expanded"), "{}", run.stdout);
    assert!(!run.stdout.contains("\n  user fay@globex.example"), "shown under the group: {}", run.stdout);
    assert!(run.stdout.contains("group Engineering is not in the store"), "{}", run.stdout);
}

#[test]
fn with_a_standalone_data_directory_groups_are_expanded_into_their_members() {
    let data = tempfile::tempdir().unwrap();
    let database = data.path().join("portcullis.db");
    populated(&format!("sqlite://{}?mode=rwc", database.display()));
    let run = diff("group-mapping-added", &["--store", data.path().to_str().unwrap()]);
    assert_groups_expanded(&run);

    let json = diff("group-mapping-added", &["--store", data.path().to_str().unwrap(), "--output", "json"]);
    let review: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let users: Vec<(String, bool)> = review["organizations"][0]["principals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["principal"]["kind"] == "user")
        .map(|p| (p["principal"]["name"].as_str().unwrap().to_owned(), p["inactive"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        users,
        [
            ("fay@globex.example".into(), false),
            ("gus@globex.example".into(), true),
            ("hal@globex.example".into(), false)
        ]
    );
}

#[test]
fn with_a_postgresql_store_groups_are_expanded_into_their_members() {
    let url = postgres::Postgres::shared().create_database();
    populated(&url);
    let run = diff("group-mapping-added", &["--store", &url]);
    assert_groups_expanded(&run);
}

#[test]
fn a_store_that_cannot_be_read_is_an_error_never_a_diff_without_groups() {
    let empty_dir = tempfile::tempdir().unwrap();
    let run = diff("group-mapping-added", &["--store", empty_dir.path().to_str().unwrap()]);
    assert_eq!((run.code, run.stdout.as_str()), (2, ""), "{}", run.stderr);
    assert!(run.stderr.contains("without portcullis.db: not a standalone data directory"), "{}", run.stderr);

    let missing = empty_dir.path().join("missing.db");
    let run = diff("group-mapping-added", &["--store", &format!("sqlite://{}", missing.display())]);
    assert_eq!((run.code, run.stdout.as_str()), (2, ""), "{}", run.stderr);
    assert!(run.stderr.contains("could not connect to the SQLite store"), "{}", run.stderr);
    assert!(!missing.exists(), "the review creates nothing");

    // A database that is not a Portcullis store is left as it is.
    let foreign = empty_dir.path().join("foreign.db");
    std::fs::write(&foreign, b"").unwrap();
    let run = diff("group-mapping-added", &["--store", &format!("sqlite://{}", foreign.display())]);
    assert_eq!((run.code, run.stdout.as_str()), (2, ""), "{}", run.stderr);
    assert!(run.stderr.contains("has no Portcullis schema"), "{}", run.stderr);
    assert_eq!(std::fs::metadata(&foreign).unwrap().len(), 0, "nothing was migrated into it");
}
