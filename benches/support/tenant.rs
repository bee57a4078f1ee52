//! A deterministic synthetic tenant, the same for every engine: catalog,
//! roles, users (a few inactive), groups with their members, assignments
//! (users and groups, organization-wide or in one workspace, a few expired)
//! and a set of queries to ask about it.
//!
//! Everything comes from one seeded generator, so two runs (and the three
//! engines) see exactly the same tenant and the same queries.

use std::collections::{BTreeMap, BTreeSet};

use portcullis::authz::role_graph::{self, RoleDefinition};

/// The instant every check is made at (unix seconds, 2026-01-01).
pub const NOW: i64 = 1_767_225_600;

const SEED: u64 = 0x5eed_2026_0001_cafe;

const DOMAINS: [&str; 5] = ["journeys", "audiences", "data", "billing", "members"];
const ACTIONS: [&str; 8] = ["view", "list", "create", "edit", "delete", "publish", "export", "manage"];

/// How big a tenant to make.
#[derive(Clone, Copy, Debug)]
pub struct TenantShape {
    pub users: usize,
    pub groups: usize,
    pub roles: usize,
    pub assignments: usize,
    pub workspaces: usize,
    pub queries: usize,
}

impl TenantShape {
    /// The tenant of the issue: 10,000 users, 500 groups, 200 roles, 50,000
    /// assignments, 20 workspaces, asked 10,000 questions.
    pub const LARGE: TenantShape = TenantShape {
        users: 10_000,
        groups: 500,
        roles: 200,
        assignments: 50_000,
        workspaces: 20,
        queries: 10_000,
    };

    /// The same proportions, small enough for `cargo test --benches` in debug.
    pub const SMOKE: TenantShape =
        TenantShape { users: 400, groups: 20, roles: 40, assignments: 2_000, workspaces: 5, queries: 400 };
}

/// Who an assignment names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Holder {
    User(usize),
    Group(usize),
}

#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub active: bool,
    /// Indices into [`Tenant::groups`], sorted.
    pub groups: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    /// Indices into [`Tenant::users`], sorted.
    pub members: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct Role {
    pub name: String,
    /// `domain.action`, `domain.*` or `*`, as in a Role resource.
    pub grants: Vec<String>,
    /// Indices into [`Tenant::roles`] of the roles it includes.
    pub includes: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct Assignment {
    pub id: String,
    pub holder: Holder,
    /// Index into [`Tenant::roles`].
    pub role: usize,
    /// Index into [`Tenant::workspaces`]; `None` for organization-wide.
    pub workspace: Option<usize>,
    pub expires_at: Option<i64>,
}

/// "May `user` use `permission` in `workspace` (or the organization)?"
#[derive(Clone, Copy, Debug)]
pub struct Query {
    pub user: usize,
    /// Index into [`Tenant::catalog`].
    pub permission: usize,
    pub workspace: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct Tenant {
    pub catalog: Vec<String>,
    pub roles: Vec<Role>,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub workspaces: Vec<String>,
    pub assignments: Vec<Assignment>,
    pub queries: Vec<Query>,
}

impl Tenant {
    pub fn generate(shape: TenantShape) -> Tenant {
        let mut rng = Rng::new(SEED);
        let catalog: Vec<String> =
            DOMAINS.iter().flat_map(|d| ACTIONS.iter().map(move |a| format!("{d}.{a}"))).collect();
        let workspaces: Vec<String> = (0..shape.workspaces).map(|w| format!("ws-{w:02}")).collect();
        let roles = generate_roles(&mut rng, shape.roles);

        // 3% of users are inactive; each user is in 2 to 5 groups.
        let mut users: Vec<User> = (0..shape.users)
            .map(|u| User { name: format!("user-{u:05}"), active: !rng.chance(3), groups: Vec::new() })
            .collect();
        let mut groups: Vec<Group> =
            (0..shape.groups).map(|g| Group { name: format!("group-{g:03}"), members: Vec::new() }).collect();
        for (u, user) in users.iter_mut().enumerate() {
            let wanted = (2 + rng.below(4)).min(shape.groups);
            let mut mine = BTreeSet::new();
            while mine.len() < wanted {
                mine.insert(rng.below(shape.groups));
            }
            for &g in &mine {
                groups[g].members.push(u);
            }
            user.groups = mine.into_iter().collect();
        }

        // 95% of assignments name a user, 5% a group; 20% are organization-wide;
        // 1% expired before NOW, 4% expire after it (and so still grant).
        let assignments: Vec<Assignment> = (0..shape.assignments)
            .map(|a| {
                let holder = if rng.chance(95) {
                    Holder::User(rng.below(shape.users))
                } else {
                    Holder::Group(rng.below(shape.groups))
                };
                let workspace = if rng.chance(20) { None } else { Some(rng.below(shape.workspaces)) };
                let expires_at = match rng.below(100) {
                    0 => Some(NOW - 1 - rng.below(86_400 * 90) as i64),
                    1..=4 => Some(NOW + 1 + rng.below(86_400 * 90) as i64),
                    _ => None,
                };
                Assignment {
                    id: format!("ra-{a:06}"),
                    holder,
                    role: rng.below(roles.len()),
                    workspace,
                    expires_at,
                }
            })
            .collect();

        let mut tenant =
            Tenant { catalog, roles, users, groups, workspaces, assignments, queries: Vec::new() };
        tenant.queries = generate_queries(&mut rng, &tenant, shape.queries);
        tenant
    }

    /// The part of the tenant all three engines can express: every user
    /// active, and no expiry (expired assignments dropped, the others kept
    /// as never expiring, which is what they are at [`NOW`]).
    pub fn comparable(&self) -> Tenant {
        let mut tenant = self.clone();
        for user in &mut tenant.users {
            user.active = true;
        }
        tenant.assignments.retain(|a| a.expires_at.is_none_or(|at| NOW < at));
        for assignment in &mut tenant.assignments {
            assignment.expires_at = None;
        }
        tenant
    }

    /// Catalog permissions each role gives, included roles expanded.
    pub fn role_permissions(&self) -> Vec<BTreeSet<String>> {
        let catalog: BTreeSet<String> = self.catalog.iter().cloned().collect();
        let definitions: BTreeMap<String, RoleDefinition> =
            self.roles.iter().map(|role| (role.name.clone(), self.role_definition(role))).collect();
        let expansion = role_graph::expand_roles(&catalog, &definitions);
        self.roles.iter().map(|role| expansion.effective[&role.name].clone()).collect()
    }

    pub fn role_definition(&self, role: &Role) -> RoleDefinition {
        RoleDefinition {
            grants: role.grants.clone(),
            included_roles: role.includes.iter().map(|&r| self.roles[r].name.clone()).collect(),
        }
    }

    pub fn membership_count(&self) -> usize {
        self.groups.iter().map(|g| g.members.len()).sum()
    }
}

/// 200 roles for a tenant of 5 domains: role 0 is the owner (`*`); a tenth
/// are domain administrators (`domain.*`); the rest grant 1 to 5 explicit
/// permissions, a quarter of them with one domain wildcard too. Roles past
/// the first 20 include one or two of those 20 in a quarter of cases, so
/// inclusion chains are one level deep and acyclic. Two roles carry a grant
/// that matches nothing in the catalog.
fn generate_roles(rng: &mut Rng, count: usize) -> Vec<Role> {
    let base = 20.min(count);
    (0..count)
        .map(|r| {
            let mut grants = BTreeSet::new();
            if r == 0 {
                grants.insert("*".to_owned());
            } else if rng.chance(10) {
                for _ in 0..1 + rng.below(2) {
                    grants.insert(format!("{}.*", DOMAINS[rng.below(DOMAINS.len())]));
                }
            } else {
                for _ in 0..1 + rng.below(5) {
                    grants.insert(format!(
                        "{}.{}",
                        DOMAINS[rng.below(DOMAINS.len())],
                        ACTIONS[rng.below(ACTIONS.len())]
                    ));
                }
                if rng.chance(25) {
                    grants.insert(format!("{}.*", DOMAINS[rng.below(DOMAINS.len())]));
                }
            }
            if r == 7 || r == 77 {
                grants.insert("legacy.view".to_owned());
            }
            let mut includes = BTreeSet::new();
            if r >= base && rng.chance(25) {
                for _ in 0..1 + rng.below(2) {
                    includes.insert(1 + rng.below(base - 1));
                }
            }
            Role {
                name: format!("role-{r:03}"),
                grants: grants.into_iter().collect(),
                includes: includes.into_iter().collect(),
            }
        })
        .collect()
}

/// Two queries in five follow an assignment that applies to the user (one
/// of its own or one of a group's) and ask for a permission of its role
/// where it applies, as a user doing their work would; the others ask for a
/// random permission in a random place. Inactive users and expired
/// assignments are asked about like any other.
fn generate_queries(rng: &mut Rng, tenant: &Tenant, count: usize) -> Vec<Query> {
    let permissions = tenant.role_permissions();
    let position: BTreeMap<&str, usize> =
        tenant.catalog.iter().enumerate().map(|(i, p)| (p.as_str(), i)).collect();
    let mut by_holder: BTreeMap<Holder, Vec<usize>> = BTreeMap::new();
    for (a, assignment) in tenant.assignments.iter().enumerate() {
        by_holder.entry(assignment.holder).or_default().push(a);
    }
    let random_place = |rng: &mut Rng, org_percent: u64| {
        if rng.chance(org_percent) { None } else { Some(rng.below(tenant.workspaces.len())) }
    };

    let mut queries = Vec::with_capacity(count);
    while queries.len() < count {
        let user = rng.below(tenant.users.len());
        if rng.chance(40) {
            let holders = std::iter::once(Holder::User(user))
                .chain(tenant.users[user].groups.iter().map(|&g| Holder::Group(g)));
            let applying: Vec<usize> =
                holders.flat_map(|h| by_holder.get(&h).into_iter().flatten()).copied().collect();
            if applying.is_empty() {
                continue;
            }
            let assignment = &tenant.assignments[applying[rng.below(applying.len())]];
            let granted: Vec<&String> = permissions[assignment.role].iter().collect();
            if granted.is_empty() {
                continue;
            }
            let permission = position[granted[rng.below(granted.len())].as_str()];
            let workspace = match assignment.workspace {
                Some(w) => Some(w),
                None => random_place(rng, 25),
            };
            queries.push(Query { user, permission, workspace });
        } else {
            let permission = rng.below(tenant.catalog.len());
            queries.push(Query { user, permission, workspace: random_place(rng, 15) });
        }
    }
    queries
}

/// SplitMix64: tiny, fast, and the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (the modulo bias is irrelevant at these sizes).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}
