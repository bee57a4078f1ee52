//! Shared by the benchmarks: the synthetic tenant, the three engines loaded
//! with it, and the check that they agree before anything is timed.
//!
//! ```text
//!   Tenant::generate(shape) ──► full tenant ──► Portcullis (inactive users, expiry)
//!             │                                       │
//!             └─ .comparable() ──► Portcullis ── casbin ── Cedar
//!                                  └──── same decisions asserted ────┘
//! ```

pub mod casbin_engine;
pub mod cedar_engine;
pub mod portcullis_engine;
pub mod tenant;

use std::collections::BTreeMap;
use std::time::Instant;

use portcullis::authz::{self, AccessIndex, Principal, Scope};

use tenant::{Holder, NOW, Tenant, TenantShape};

/// Whether the binary was started by `cargo bench` (time for real) rather
/// than by `cargo test` (a quick smoke run on a
/// small tenant). The same rule as criterion's: `--bench` and no `--test`.
pub fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

pub fn shape() -> TenantShape {
    if benchmarking() { TenantShape::LARGE } else { TenantShape::SMOKE }
}

/// Every engine loaded, with each query prepared in the engine's own terms.
pub struct Engines {
    /// The tenant with every semantic Portcullis has.
    pub full: Tenant,
    pub portcullis_full: AccessIndex,
    pub portcullis_full_requests: Vec<portcullis_engine::Request>,
    /// What the full tenant answers, query by query.
    pub full_expected: Vec<bool>,

    /// The tenant all three engines can express (see [`Tenant::comparable`]).
    pub comparable: Tenant,
    pub portcullis: AccessIndex,
    pub portcullis_requests: Vec<portcullis_engine::Request>,
    pub casbin: casbin::Enforcer,
    pub casbin_requests: Vec<casbin_engine::Request>,
    pub cedar: cedar_engine::Engine,
    pub cedar_requests: Vec<cedar_engine::Request>,
    /// What all three answer on the comparable tenant, query by query.
    pub expected: Vec<bool>,
}

/// Generates the tenant, loads it into every engine and panics unless they
/// all agree with a brute-force reading of the tenant on every query.
pub fn load(shape: TenantShape) -> Engines {
    let full = Tenant::generate(shape);
    let comparable = full.comparable();
    describe(&full);

    let portcullis_full = timed("portcullis index (full tenant)", || portcullis_engine::build(&full));
    let portcullis = timed("portcullis index (comparable tenant)", || portcullis_engine::build(&comparable));
    let casbin = timed("casbin enforcer", || casbin_engine::build(&comparable));
    let cedar = timed("cedar entities and policies", || cedar_engine::build(&comparable));

    let engines = Engines {
        portcullis_full_requests: portcullis_engine::requests(&full),
        full_expected: reference_decisions(&full),
        portcullis_requests: portcullis_engine::requests(&comparable),
        casbin_requests: casbin_engine::requests(&comparable),
        cedar_requests: cedar_engine::requests(&comparable),
        expected: reference_decisions(&comparable),
        full,
        portcullis_full,
        comparable,
        portcullis,
        casbin,
        cedar,
    };
    engines.assert_agreement();
    engines
}

impl Engines {
    pub fn assert_agreement(&self) {
        let started = Instant::now();
        let answers: [(&str, &Tenant, &[bool], Vec<bool>); 4] = [
            (
                "portcullis (full tenant)",
                &self.full,
                &self.full_expected,
                self.portcullis_full_requests
                    .iter()
                    .map(|r| portcullis_engine::check(&self.portcullis_full, r))
                    .collect(),
            ),
            (
                "portcullis",
                &self.comparable,
                &self.expected,
                self.portcullis_requests
                    .iter()
                    .map(|r| portcullis_engine::check(&self.portcullis, r))
                    .collect(),
            ),
            (
                "casbin",
                &self.comparable,
                &self.expected,
                self.casbin_requests.iter().map(|r| casbin_engine::check(&self.casbin, r)).collect(),
            ),
            (
                "cedar",
                &self.comparable,
                &self.expected,
                self.cedar_requests.iter().map(|r| cedar_engine::check(&self.cedar, r)).collect(),
            ),
        ];
        for (engine, tenant, expected, got) in answers {
            let wrong: Vec<usize> = (0..expected.len()).filter(|&i| expected[i] != got[i]).collect();
            if let Some(&first) = wrong.first() {
                let q = tenant.queries[first];
                panic!(
                    "{engine} disagrees with the reference on {} of {} queries; first: {} {} in {:?} \
                     (reference says {})",
                    wrong.len(),
                    expected.len(),
                    tenant.users[q.user].name,
                    tenant.catalog[q.permission],
                    q.workspace.map(|w| &tenant.workspaces[w]),
                    expected[first]
                );
            }
        }
        let allowed = |d: &[bool]| 100.0 * d.iter().filter(|&&a| a).count() as f64 / d.len() as f64;
        eprintln!(
            "agreement: all engines give the reference's decision on all {} queries \
             ({:.1}% allowed on the comparable tenant, {:.1}% on the full one; checked in {:.1?})",
            self.expected.len(),
            allowed(&self.expected),
            allowed(&self.full_expected),
            started.elapsed()
        );
    }

    /// A new assignment for the `k`th change: a user, a role, and a
    /// workspace or (one in five) the organization.
    pub fn new_assignment(&self, k: usize) -> authz::Assignment {
        let tenant = &self.full;
        let user = &tenant.users[k.wrapping_mul(7919) % tenant.users.len()];
        let workspace = (!k.is_multiple_of(5)).then(|| k % tenant.workspaces.len());
        authz::Assignment {
            id: format!("bench-{k}"),
            principal: Principal::user(&user.name),
            role: tenant.roles[k % tenant.roles.len()].name.clone(),
            scope: portcullis_engine::scope(tenant, workspace),
            expires_at: None,
            approved_request: false,
        }
    }

    /// `count` (group, user) pairs where the user is not yet a member.
    pub fn new_memberships(&self, count: usize) -> Vec<(String, String)> {
        let tenant = &self.full;
        (0..count)
            .map(|k| {
                let user = &tenant.users[k.wrapping_mul(7919) % tenant.users.len()];
                let group = (0..tenant.groups.len())
                    .map(|i| (k * 31 + i) % tenant.groups.len())
                    .find(|g| user.groups.binary_search(g).is_err())
                    .expect("no user is in every group");
                (tenant.groups[group].name.clone(), user.name.clone())
            })
            .collect()
    }

    /// The (user, place) pairs of the queries, for `effective_permissions`.
    pub fn effective_permission_requests(&self) -> Vec<(Principal, Scope)> {
        self.portcullis_full_requests.iter().map(|r| (r.principal.clone(), r.scope.clone())).collect()
    }
}

/// The decisions read straight off the tenant, without any index: a user
/// who is active, holding (itself or through a group) an assignment in force
/// whose role gives the permission, organization-wide or in that workspace.
fn reference_decisions(tenant: &Tenant) -> Vec<bool> {
    let permissions = tenant.role_permissions();
    let mut by_holder: BTreeMap<Holder, Vec<&tenant::Assignment>> = BTreeMap::new();
    for assignment in &tenant.assignments {
        by_holder.entry(assignment.holder).or_default().push(assignment);
    }
    tenant
        .queries
        .iter()
        .map(|q| {
            let user = &tenant.users[q.user];
            let permission = &tenant.catalog[q.permission];
            let holders =
                std::iter::once(Holder::User(q.user)).chain(user.groups.iter().map(|&g| Holder::Group(g)));
            user.active
                && holders.flat_map(|h| by_holder.get(&h).into_iter().flatten()).any(|a| {
                    (a.workspace.is_none() || a.workspace == q.workspace)
                        && a.expires_at.is_none_or(|at| NOW < at)
                        && permissions[a.role].contains(permission)
                })
        })
        .collect()
}

fn describe(tenant: &Tenant) {
    let count = |f: &dyn Fn(&tenant::Assignment) -> bool| tenant.assignments.iter().filter(|a| f(a)).count();
    eprintln!(
        "tenant: {} users ({} inactive), {} groups ({} memberships), {} roles ({} with includes), \
         {} catalog permissions, {} workspaces",
        tenant.users.len(),
        tenant.users.iter().filter(|u| !u.active).count(),
        tenant.groups.len(),
        tenant.membership_count(),
        tenant.roles.len(),
        tenant.roles.iter().filter(|r| !r.includes.is_empty()).count(),
        tenant.catalog.len(),
        tenant.workspaces.len(),
    );
    eprintln!(
        "assignments: {} ({} to groups, {} organization-wide, {} expired, {} expiring later); {} queries",
        tenant.assignments.len(),
        count(&|a| matches!(a.holder, Holder::Group(_))),
        count(&|a| a.workspace.is_none()),
        count(&|a| a.expires_at.is_some_and(|at| at <= NOW)),
        count(&|a| a.expires_at.is_some_and(|at| at > NOW)),
        tenant.queries.len(),
    );
}

fn timed<T>(what: &str, build: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let built = build();
    eprintln!("built {what} in {:.2?}", started.elapsed());
    built
}
