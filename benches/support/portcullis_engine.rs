//! The tenant loaded into Portcullis' own [`AccessIndex`], the way the
//! store feeds it: catalog, roles, users, group members, then assignments.

use portcullis::authz::{self, AccessIndex, Principal, Scope};

use super::tenant::{Holder, NOW, Query, Tenant};

/// A query with its arguments built once, as a caller holding a
/// `Principal` and a `Scope` already would.
pub struct Request {
    pub principal: Principal,
    pub permission: String,
    pub scope: Scope,
}

pub fn build(tenant: &Tenant) -> AccessIndex {
    let mut index = AccessIndex::new();
    index.set_catalog(tenant.catalog.iter().cloned());
    index.reset_roles(tenant.roles.iter().map(|role| (role.name.clone(), tenant.role_definition(role))));
    for user in &tenant.users {
        index.apply_user(&user.name, user.active);
    }
    for group in &tenant.groups {
        index.set_group_members(&group.name, group.members.iter().map(|&u| tenant.users[u].name.clone()));
    }
    for assignment in &tenant.assignments {
        index.apply_assignment(authz::Assignment {
            id: assignment.id.clone(),
            principal: match assignment.holder {
                Holder::User(u) => Principal::user(&tenant.users[u].name),
                Holder::Group(g) => Principal::group(&tenant.groups[g].name),
            },
            role: tenant.roles[assignment.role].name.clone(),
            scope: scope(tenant, assignment.workspace),
            expires_at: assignment.expires_at,
            approved_request: false,
        });
    }
    index
}

pub fn scope(tenant: &Tenant, workspace: Option<usize>) -> Scope {
    match workspace {
        Some(w) => Scope::Workspace(tenant.workspaces[w].clone()),
        None => Scope::Organization,
    }
}

pub fn requests(tenant: &Tenant) -> Vec<Request> {
    tenant
        .queries
        .iter()
        .map(|q: &Query| Request {
            principal: Principal::user(&tenant.users[q.user].name),
            permission: tenant.catalog[q.permission].clone(),
            scope: scope(tenant, q.workspace),
        })
        .collect()
}

#[inline]
pub fn check(index: &AccessIndex, request: &Request) -> bool {
    index.check(&request.principal, &request.permission, &request.scope, NOW).is_allowed()
}
