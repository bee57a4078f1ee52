//! The comparable tenant in casbin-rs, as RBAC with domains.
//!
//! - Domains are workspaces; an organization-wide link is in domain `*`, and
//!   the role manager's domain matching function (`keyMatch`) makes a `*`
//!   link hold in every domain. A check at organization level asks domain
//!   `org`, which only `*` matches.
//! - `g, user, group, *`: membership, in every domain.
//! - `g, user-or-group, role, domain`: an assignment.
//! - `g, role, included-role, *`: role inclusion.
//! - `p, role, grant`: one line per grant of a role, kept as written
//!   (`journeys.view`, `journeys.*`, `*`) and matched with `keyMatch`.
//!
//! Roles are tenant-wide in Portcullis, so `p` has no domain: the domain is
//! carried by the `g` link alone. The matcher tests the cheap permission
//! match first so the role graph is searched only for policies that could
//! grant the permission.

use std::collections::BTreeSet;

use casbin::function_map::key_match;
use casbin::prelude::*;

use super::tenant::{Holder, Tenant};

const MODEL: &str = r#"
[request_definition]
r = sub, dom, act

[policy_definition]
p = sub, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = keyMatch(r.act, p.act) && g(r.sub, p.sub, r.dom)
"#;

/// Organization-wide links.
const EVERY_DOMAIN: &str = "*";
/// The domain a check at organization level asks for.
const ORGANIZATION: &str = "org";

pub struct Request {
    pub subject: String,
    pub domain: String,
    pub action: String,
}

pub fn build(tenant: &Tenant) -> Enforcer {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a tokio runtime");
    runtime.block_on(async {
        let model = DefaultModel::from_str(MODEL).await.expect("the casbin model parses");
        let mut enforcer = Enforcer::new(model, MemoryAdapter::default()).await.expect("a casbin enforcer");
        // Before any link is added, so `*` links are copied into each domain.
        enforcer.get_role_manager().write().matching_fn(None, Some(key_match));

        let policies: Vec<Vec<String>> = tenant
            .roles
            .iter()
            .flat_map(|role| role.grants.iter().map(|grant| vec![role.name.clone(), grant.clone()]))
            .collect();
        let policy_count = policies.len();
        enforcer.add_policies(policies).await.expect("casbin accepts the role policies");

        // A set: casbin refuses a batch that repeats a rule.
        let mut links: BTreeSet<Vec<String>> = BTreeSet::new();
        for role in &tenant.roles {
            for &included in &role.includes {
                links.insert(vec![
                    role.name.clone(),
                    tenant.roles[included].name.clone(),
                    EVERY_DOMAIN.into(),
                ]);
            }
        }
        for group in &tenant.groups {
            for &member in &group.members {
                links.insert(vec![
                    tenant.users[member].name.clone(),
                    group.name.clone(),
                    EVERY_DOMAIN.into(),
                ]);
            }
        }
        for assignment in &tenant.assignments {
            assert!(assignment.expires_at.is_none(), "casbin is given the comparable tenant only");
            let holder = match assignment.holder {
                Holder::User(u) => tenant.users[u].name.clone(),
                Holder::Group(g) => tenant.groups[g].name.clone(),
            };
            let domain = match assignment.workspace {
                Some(w) => tenant.workspaces[w].clone(),
                None => EVERY_DOMAIN.to_owned(),
            };
            links.insert(vec![holder, tenant.roles[assignment.role].name.clone(), domain]);
        }
        eprintln!("casbin: {policy_count} policy lines, {} role links", links.len());
        enforcer.add_grouping_policies(links.into_iter().collect()).await.expect("casbin accepts the links");
        enforcer
    })
}

pub fn requests(tenant: &Tenant) -> Vec<Request> {
    assert!(tenant.users.iter().all(|u| u.active), "casbin is given the comparable tenant only");
    tenant
        .queries
        .iter()
        .map(|q| Request {
            subject: tenant.users[q.user].name.clone(),
            domain: match q.workspace {
                Some(w) => tenant.workspaces[w].clone(),
                None => ORGANIZATION.to_owned(),
            },
            action: tenant.catalog[q.permission].clone(),
        })
        .collect()
}

#[inline]
pub fn check(enforcer: &Enforcer, request: &Request) -> bool {
    enforcer
        .enforce((request.subject.as_str(), request.domain.as_str(), request.action.as_str()))
        .expect("casbin evaluates the matcher")
}
