//! Store measurements on a real PostgreSQL server started by the harness
//! (`support/postgres.rs`): how long loading a large tenant's access index
//! takes, and how long one assignment change takes to reach a running
//! follower's index. Not tests: both are ignored and run on request, in
//! release, one at a time (see BENCHMARKS.md):
//!
//! ```text
//! cargo test --release --test store_benchmarks -- --ignored --nocapture
//! ```

#[path = "support/postgres.rs"]
mod postgres;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcullis::authz::{Principal, Scope};
use portcullis::store::*;

const ORG: &str = "bench";
/// How long any awaited event may take before the measurement fails.
const DEADLINE: Duration = Duration::from_secs(15);

const PERMISSION_DOMAINS: usize = 30;
const PERMISSION_ACTIONS: usize = 10;
const PERMISSIONS: usize = PERMISSION_DOMAINS * PERMISSION_ACTIONS;
const ROLES: usize = 200;
const USERS: i64 = 10_000;
const GROUPS: i64 = 500;
/// Each user is in this many groups: 30,000 memberships.
const GROUPS_PER_USER: i64 = 3;
const ASSIGNMENTS: i64 = 50_000;
const WORKSPACES: usize = 20;
const BUILD_RUNS: usize = 5;
const CHANGES: usize = 200;

// === The tenant. The SQL below builds the same names as these helpers. ===

fn permission(i: usize) -> String {
    let i = i % PERMISSIONS;
    format!("d{:02}.a{}", i / PERMISSION_ACTIONS, i % PERMISSION_ACTIONS)
}

fn role_name(r: usize) -> String {
    format!("role-{:03}", r % ROLES)
}

fn workspace(w: usize) -> String {
    format!("ws{:02}", w % WORKSPACES)
}

fn user_name(n: i64) -> String {
    format!("user-{:05}", n % USERS)
}

/// Role `r` grants two permissions; every tenth also a domain wildcard, and
/// every twenty-fifth (from the fifth) includes the role before it.
fn role(r: usize) -> RoleRecord {
    let mut permissions = vec![permission(r), permission(r * 7 + 3)];
    if r.is_multiple_of(10) {
        permissions.push(format!("d{:02}.*", (r / 10) % PERMISSION_DOMAINS));
    }
    let included_roles = if r % 25 == 5 { vec![role_name(r - 1)] } else { Vec::new() };
    RoleRecord {
        meta: ObjectMeta::new(format!("uid-role-{r}"), ORG, role_name(r), 1),
        scope: RoleScope::Workspace,
        spec_json: serde_json::json!({ "permissions": permissions, "includedRoles": included_roles })
            .to_string(),
        permissions,
        included_roles,
    }
}

/// A user assignment (`i % 10 != 0`) the way the seed writes it.
fn seeded_user_assignment(i: i64, generation: i64, role: usize) -> AssignmentRecord {
    let uid = format!("ra-{i}");
    AssignmentRecord {
        meta: ObjectMeta::new(uid.clone(), ORG, uid, generation),
        principal_kind: PrincipalKind::User,
        principal_name: user_name(i),
        role: role_name(role),
        workspace: (i % 97 != 0).then(|| workspace(i as usize)),
        expires_at_ms: None,
        spec_json: serde_json::json!({ "i": i, "generation": generation, "role": role_name(role) })
            .to_string(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// Seeds the large tenant: the organization and roles through the store,
/// the bulk (users, groups, memberships, assignments) with set-based SQL
/// on a connection of our own. Returns the store.
async fn seed_large_tenant() -> Store {
    let url = tokio::task::spawn_blocking(|| postgres::Postgres::shared().create_database())
        .await
        .expect("create a database");
    let store = Store::connect(&url).await.expect("connect to the test PostgreSQL");
    let started = Instant::now();

    let catalog: Vec<String> = (0..PERMISSIONS).map(permission).collect();
    let workspaces: Vec<String> = (0..WORKSPACES).map(workspace).collect();
    let organization = OrganizationRecord {
        meta: ObjectMeta::new("uid-org", ORG, ORG, 1),
        display_name: "Bench".into(),
        spec_json: serde_json::json!({ "permissions": catalog, "workspaces": workspaces }).to_string(),
        catalog,
        workspaces,
    };
    store.apply(&organization).await.expect("store the organization");
    for r in 0..ROLES {
        store.apply(&role(r)).await.expect("store a role");
    }

    let pool = sqlx::PgPool::connect(&url).await.expect("connect for seeding");
    let now = now_ms();
    let seed = |table: &'static str, result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>| {
        result.unwrap_or_else(|e| panic!("seed {table}: {e}"));
    };
    seed(
        "users",
        sqlx::query(
            "INSERT INTO users (id, organization, user_name, user_name_key, display_name, given_name, \
             family_name, external_id, active, source, password_hash, last_login_ms, created_ms, updated_ms, \
             version) \
             SELECT 'u-' || n, $1, 'User-' || lpad(n::text, 5, '0'), 'user-' || lpad(n::text, 5, '0'), \
             'User ' || n, NULL, NULL, 'ext-' || n, true, 'scim', NULL, NULL, $2, $2, 1 \
             FROM generate_series(0, $3 - 1) AS n",
        )
        .bind(ORG)
        .bind(now)
        .bind(USERS)
        .execute(&pool)
        .await,
    );
    seed(
        "groups",
        sqlx::query(
            "INSERT INTO groups (id, organization, display_name, display_name_key, source, external_id, \
             created_ms, updated_ms, version) \
             SELECT 'g-' || g, $1, 'Group-' || lpad(g::text, 3, '0'), 'group-' || lpad(g::text, 3, '0'), \
             'internal', NULL, $2, $2, 1 \
             FROM generate_series(0, $3 - 1) AS g",
        )
        .bind(ORG)
        .bind(now)
        .bind(GROUPS)
        .execute(&pool)
        .await,
    );
    // User n is in groups (3n + 167k) mod 500, k = 0, 1, 2: three distinct groups.
    seed(
        "memberships",
        sqlx::query(
            "INSERT INTO memberships (group_id, user_id) \
             SELECT 'g-' || ((3 * n + 167 * k) % $2), 'u-' || n \
             FROM generate_series(0, $1 - 1) AS n, generate_series(0, $3 - 1) AS k",
        )
        .bind(USERS)
        .bind(GROUPS)
        .bind(GROUPS_PER_USER)
        .execute(&pool)
        .await,
    );
    // Every tenth names a group (by its display name, other case); every 97th
    // is organization-wide; every 50th (from the 7th) expires tomorrow.
    seed(
        "role_assignments",
        sqlx::query(
            "INSERT INTO role_assignments (uid, namespace, name, generation, principal_kind, principal_name, \
             role, workspace, expires_at_ms, spec_json, updated_ms) \
             SELECT 'ra-' || i, $1, 'ra-' || i, 1, \
             CASE WHEN i % 10 = 0 THEN 'Group' ELSE 'User' END, \
             CASE WHEN i % 10 = 0 THEN 'Group-' || lpad((i % $4)::text, 3, '0') \
                  ELSE 'user-' || lpad((i % $3)::text, 5, '0') END, \
             'role-' || lpad((i % $5)::text, 3, '0'), \
             CASE WHEN i % 97 = 0 THEN NULL ELSE 'ws' || lpad((i % $6)::text, 2, '0') END, \
             CASE WHEN i % 50 = 7 THEN $2 + 86400000 ELSE NULL END, \
             json_build_object('i', i, 'generation', 1)::text, $2 \
             FROM generate_series(0, $7 - 1) AS i",
        )
        .bind(ORG)
        .bind(now)
        .bind(USERS)
        .bind(GROUPS)
        .bind(ROLES as i64)
        .bind(WORKSPACES as i64)
        .bind(ASSIGNMENTS)
        .execute(&pool)
        .await,
    );
    sqlx::query("ANALYZE").execute(&pool).await.expect("analyze");
    pool.close().await;
    println!(
        "seeded {ORG}: {PERMISSIONS} permissions, {ROLES} roles, {USERS} users, {GROUPS} groups, \
         {} memberships, {ASSIGNMENTS} assignments in {WORKSPACES} workspaces, in {:.1} s",
        USERS * GROUPS_PER_USER,
        started.elapsed().as_secs_f64()
    );
    store
}

// === Checks and figures. ===

fn now_s() -> i64 {
    now_ms() / 1000
}

fn allows(snapshot: &IndexSnapshot, user: &str, permission: &str, scope: &Scope) -> bool {
    let principal = Principal::user(user);
    snapshot.index.check(&principal, permission, scope, now_s()).is_allowed()
}

/// The index really holds the tenant: seeded grants are allowed, through
/// direct assignments, groups, wildcards and included roles; others are not.
fn assert_loaded(snapshot: &IndexSnapshot) {
    for i in [1_i64, 2, 3, 7, 123, 4_567, 49_999] {
        let r = (i as usize) % ROLES;
        let scope = Scope::Workspace(workspace(i as usize));
        assert!(allows(snapshot, &user_name(i), &permission(r), &scope), "ra-{i} is not in the index");
    }
    // Group-010 holds role-010 (wildcard d01.*) in ws10: any member may use d01.a5.
    let member = (0..USERS)
        .find(|n| (0..GROUPS_PER_USER).any(|k| (3 * n + 167 * k) % GROUPS == 10))
        .expect("group 10 has members");
    assert!(allows(snapshot, &user_name(member), "d01.a5", &Scope::Workspace(workspace(10))));
    // role-055 includes role-054: user 55 holds only role-055 (in ws15), and
    // role-054's first permission (d05.a4) only through the inclusion.
    assert!(allows(snapshot, &user_name(55), &permission(54), &Scope::Workspace(workspace(15))));
    assert!(!allows(snapshot, "nobody", &permission(1), &Scope::Workspace(workspace(1))));
    assert!(!allows(snapshot, &user_name(1), "not.in-catalog", &Scope::Workspace(workspace(1))));
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// The `q` quantile of sorted durations (nearest rank).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// One measurement at a time: both share the machine's two cores.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

// === The measurements. ===

#[test]
#[ignore = "a measurement, not a test: see BENCHMARKS.md"]
fn index_build_from_postgres() {
    let _turn = one_at_a_time();
    runtime().block_on(async {
        let store = seed_large_tenant().await;
        let mut times = Vec::with_capacity(BUILD_RUNS);
        for run in 1..=BUILD_RUNS {
            let started = Instant::now();
            let follower = IndexFollower::start(store.clone(), ORG).await.expect("start a follower");
            let took = started.elapsed();
            println!("index build {run}/{BUILD_RUNS}: {}", ms(took));
            assert_loaded(&follower.current());
            times.push(took);
            drop(follower);
        }
        times.sort();
        println!(
            "index build from PostgreSQL, {BUILD_RUNS} runs: median {}, min {}, max {} (target ≤ 2 s)",
            ms(quantile(&times, 0.5)),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    });
}

#[test]
#[ignore = "a measurement, not a test: see BENCHMARKS.md"]
fn assignment_change_visible_to_follower() {
    let _turn = one_at_a_time();
    runtime().block_on(async {
        let store = seed_large_tenant().await;
        let follower = IndexFollower::start(store.clone(), ORG).await.expect("start a follower");
        assert_loaded(&follower.current());

        let mut visible = Vec::with_capacity(CHANGES);
        let mut commits = Vec::with_capacity(CHANGES);
        for j in 0..CHANGES {
            // Even: a new assignment. Odd: a seeded one, its generation bumped
            // and its role changed.
            let (record, user, role) = if j.is_multiple_of(2) {
                let n = (j as i64 * 37 + 1) % USERS;
                let role = (j * 13) % ROLES;
                let uid = format!("bench-ra-{j}");
                let record = AssignmentRecord {
                    meta: ObjectMeta::new(uid.clone(), ORG, uid, 1),
                    principal_kind: PrincipalKind::User,
                    principal_name: user_name(n),
                    role: role_name(role),
                    workspace: Some(workspace(j)),
                    expires_at_ms: None,
                    spec_json: serde_json::json!({ "j": j }).to_string(),
                };
                (record, user_name(n), role)
            } else {
                let i = 1 + 10 * j as i64;
                let role = (i as usize + 1) % ROLES;
                (seeded_user_assignment(i, 2, role), user_name(i), role)
            };
            let scope = record.workspace.clone().map(Scope::Workspace).unwrap_or(Scope::Organization);

            let mut snapshots = follower.subscribe();
            let applying = Instant::now();
            let ApplyOutcome::Applied { seq } = store.apply(&record).await.expect("apply") else {
                panic!("change {j} did not apply")
            };
            let committed = Instant::now();
            let seen = tokio::time::timeout(DEADLINE, snapshots.wait_for(|s| s.seq >= seq))
                .await
                .unwrap_or_else(|_| panic!("change {j} (seq {seq}) not visible within {DEADLINE:?}"))
                .map(|snapshot| Arc::clone(&snapshot))
                .expect("the follower is running");
            let took = committed.elapsed();
            commits.push(committed - applying);
            visible.push(took);
            // Checked after timing; the snapshot is dropped before the next
            // change so that the follower can reuse its spare copy.
            assert!(allows(&seen, &user, &permission(role), &scope), "change {j} is not in the index");
            drop(seen);
        }

        visible.sort();
        commits.sort();
        println!(
            "assignment change visible to the follower after commit, {CHANGES} changes: \
             p50 {}, p90 {}, p99 {}, max {} (target ≤ 50 ms)",
            ms(quantile(&visible, 0.5)),
            ms(quantile(&visible, 0.9)),
            ms(quantile(&visible, 0.99)),
            ms(visible[visible.len() - 1])
        );
        println!(
            "apply() itself (begin to commit): p50 {}, p90 {}, max {}",
            ms(quantile(&commits, 0.5)),
            ms(quantile(&commits, 0.9)),
            ms(commits[commits.len() - 1])
        );
    });
}
