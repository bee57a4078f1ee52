//! The comparable tenant in Cedar.
//!
//! Cedar evaluates every policy of the set on every request, so the cost of
//! a check grows with the number of policies: the encoding keeps one policy
//! per role and puts who holds it where in the entities, the usual Cedar
//! pattern of `principal in resource.<relation>` (as in TinyTodo's
//! `principal in resource.readers`).
//!
//! ```text
//! User ──in──► Group ──in──► Binding "role-017@ws-03"   (holders of role-017 in ws-03)
//!   └──────────in──────────► Binding "role-017@org"     (holders organization-wide)
//!
//! Workspace "ws-03" { role_017: [Binding "role-017@ws-03", Binding "role-017@org"], ... }
//! Organization     { role_017: [Binding "role-017@org"], ... }
//!
//! Action "journeys.view" ──in──► Action "role-017" ──in──► Action "role-042"
//!   (the permission is in each role     (role-042 includes role-017)
//!    whose grants cover it)
//!
//! permit(principal, action in Action::"role-017", resource)
//!   when { principal in resource.role_017 };          one per role
//! ```
//!
//! Wildcard grants are expanded against the catalog when the action groups
//! are built, since Cedar actions have no wildcards. A request is the user,
//! the permission's action, and the workspace (or the organization) as
//! resource, with an empty context.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet,
    RestrictedExpression,
};
use portcullis::authz::role_graph;

use super::tenant::{Holder, Tenant};

pub struct Engine {
    authorizer: Authorizer,
    policies: PolicySet,
    entities: Entities,
}

pub type Request = cedar_policy::Request;

fn uid(kind: &str, id: &str) -> EntityUid {
    let kind = EntityTypeName::from_str(kind).expect("a valid entity type name");
    EntityUid::from_type_name_and_id(kind, EntityId::new(id))
}

fn binding(tenant: &Tenant, role: usize, workspace: Option<usize>) -> EntityUid {
    let place = workspace.map_or("org", |w| tenant.workspaces[w].as_str());
    uid("Binding", &format!("{}@{place}", tenant.roles[role].name))
}

/// The attribute of a workspace or the organization naming a role's holders there.
fn attribute(role: &str) -> String {
    role.replace('-', "_")
}

const ORGANIZATION: &str = "acme";

pub fn build(tenant: &Tenant) -> Engine {
    let policies: String = tenant
        .roles
        .iter()
        .map(|role| {
            format!(
                "@id(\"{name}\")\npermit(principal, action in Action::\"{name}\", resource)\n  \
                 when {{ principal in resource.{attr} }};\n",
                name = role.name,
                attr = attribute(&role.name)
            )
        })
        .collect();
    let policies = PolicySet::from_str(&policies).expect("the role policies parse");

    let mut parents: HashMap<EntityUid, HashSet<EntityUid>> = HashMap::new();
    for (u, user) in tenant.users.iter().enumerate() {
        assert!(user.active, "cedar is given the comparable tenant only");
        let groups = user.groups.iter().map(|&g| uid("Group", &tenant.groups[g].name));
        parents.entry(user_uid(tenant, u)).or_default().extend(groups);
    }
    for group in &tenant.groups {
        parents.entry(uid("Group", &group.name)).or_default();
    }
    for assignment in &tenant.assignments {
        assert!(assignment.expires_at.is_none(), "cedar is given the comparable tenant only");
        let holder = match assignment.holder {
            Holder::User(u) => user_uid(tenant, u),
            Holder::Group(g) => uid("Group", &tenant.groups[g].name),
        };
        let binding = binding(tenant, assignment.role, assignment.workspace);
        parents.entry(binding.clone()).or_default();
        parents.entry(holder).or_default().insert(binding);
    }

    // Action groups: each permission is in the roles whose own grants cover
    // it; a role's group is in the groups of the roles that include it.
    let catalog: BTreeSet<String> = tenant.catalog.iter().cloned().collect();
    for role in &tenant.roles {
        let role_action = uid("Action", &role.name);
        parents.entry(role_action.clone()).or_default();
        for grant in &role.grants {
            for permission in role_graph::expand_grant(grant, &catalog) {
                parents.entry(uid("Action", permission)).or_default().insert(role_action.clone());
            }
        }
        for &included in &role.includes {
            parents
                .entry(uid("Action", &tenant.roles[included].name))
                .or_default()
                .insert(role_action.clone());
        }
    }
    for permission in &tenant.catalog {
        parents.entry(uid("Action", permission)).or_default();
    }

    let mut entities: Vec<Entity> =
        parents.into_iter().map(|(uid, parents)| Entity::new_no_attrs(uid, parents)).collect();
    let organization = uid("Organization", ORGANIZATION);
    let holders = |workspace: Option<usize>| -> HashMap<String, RestrictedExpression> {
        (0..tenant.roles.len())
            .map(|r| {
                let mut places = vec![RestrictedExpression::new_entity_uid(binding(tenant, r, None))];
                if workspace.is_some() {
                    places.push(RestrictedExpression::new_entity_uid(binding(tenant, r, workspace)));
                }
                (attribute(&tenant.roles[r].name), RestrictedExpression::new_set(places))
            })
            .collect()
    };
    for (w, workspace) in tenant.workspaces.iter().enumerate() {
        let parents = HashSet::from([organization.clone()]);
        let entity = Entity::new(uid("Workspace", workspace), holders(Some(w)), parents);
        entities.push(entity.expect("workspace attributes are literals"));
    }
    let entity = Entity::new(organization, holders(None), HashSet::new());
    entities.push(entity.expect("organization attributes are literals"));
    eprintln!("cedar: {} policies, {} entities", policies.policies().count(), entities.len());
    let entities = Entities::from_entities(entities, None).expect("the entities form a hierarchy");

    Engine { authorizer: Authorizer::new(), policies, entities }
}

fn user_uid(tenant: &Tenant, user: usize) -> EntityUid {
    uid("User", &tenant.users[user].name)
}

pub fn requests(tenant: &Tenant) -> Vec<Request> {
    tenant
        .queries
        .iter()
        .map(|q| {
            let resource = match q.workspace {
                Some(w) => uid("Workspace", &tenant.workspaces[w]),
                None => uid("Organization", ORGANIZATION),
            };
            let action = uid("Action", &tenant.catalog[q.permission]);
            Request::new(user_uid(tenant, q.user), action, resource, Context::empty(), None)
                .expect("a request without a schema is always valid")
        })
        .collect()
}

#[inline]
pub fn check(engine: &Engine, request: &Request) -> bool {
    let response = engine.authorizer.is_authorized(request, &engine.policies, &engine.entities);
    debug_assert!(response.diagnostics().errors().next().is_none(), "no policy errors");
    response.decision() == Decision::Allow
}
