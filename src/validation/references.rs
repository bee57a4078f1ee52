//! Cross-resource checks: the facts the API server's CEL rules cannot see
//! because they span several objects (a role that does not exist, a permission
//! outside the catalog, an undeclared workspace, an inclusion cycle...).
//!
//! ```text
//!   Snapshot (all resources, any source)
//!      └─ per namespace: Organization ── catalog, workspaces; accessRequests → RoleNotFound, UnknownPermission
//!            ├─ Role            → UnknownPermission, RoleNotFound, InclusionCycle
//!            ├─ RoleAssignment  → RoleNotFound, WorkspaceNotFound, ClientNotFound
//!            └─ IdentityProvider→ RoleNotFound, WorkspaceNotFound, PrivilegedGroupMapping
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kube::ResourceExt;

use crate::api::{
    AssignmentScope, GrantType, IdentityProvider, OAuthClient, Organization, PrincipalKind, ProvisioningMode,
    Role, RoleAssignment, RoleScope,
};
use crate::authz::role_graph::{self, RoleDefinition, RoleExpansion};

/// How serious a finding is: errors fail `validate` and make a resource not Ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// Machine-readable cause, used as the condition reason in status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    OrganizationNotFound,
    DuplicateOrganization,
    DomainConflict,
    UnknownPermission,
    RoleNotFound,
    InclusionCycle,
    WorkspaceNotFound,
    WorkspaceRequired,
    ClientNotFound,
    /// Warnings from here on.
    OrganizationRoleInWorkspace,
    PrivilegedGroupMapping,
    ApprovalBypassed,
    ClientCannotUseGrant,
    Expired,
    DomainNotOwned,
    ProvisioningModeMismatch,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Which object a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// One problem found, with enough to point at the offending line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub reason: Reason,
    pub object: ObjectRef,
    /// Field path in the manifest (`["spec", "role"]`), to find its line.
    pub field: Vec<&'static str>,
    /// The offending value, when it helps to find the line.
    pub value: Option<String>,
    pub message: String,
}

/// Every Portcullis resource known, from any source (a folder, the API server).
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot<'a> {
    pub organizations: &'a [Organization],
    pub roles: &'a [Role],
    pub role_assignments: &'a [RoleAssignment],
    pub identity_providers: &'a [IdentityProvider],
    pub oauth_clients: &'a [OAuthClient],
}

/// Runs every check. Findings come out grouped by namespace, in a stable order.
pub fn check(snapshot: &Snapshot<'_>) -> Vec<Finding> {
    let mut findings = check_organizations(snapshot.organizations);
    let namespaces: BTreeSet<String> = snapshot
        .organizations
        .iter()
        .map(namespace_of)
        .chain(snapshot.roles.iter().map(namespace_of))
        .chain(snapshot.role_assignments.iter().map(namespace_of))
        .chain(snapshot.identity_providers.iter().map(namespace_of))
        .chain(snapshot.oauth_clients.iter().map(namespace_of))
        .collect();
    for namespace in namespaces {
        let tenant = Tenant::new(snapshot, &namespace);
        tenant.check(&mut findings);
    }
    findings
}

/// The namespace of an object; manifests without one land in `default`, as
/// with `kubectl apply`.
pub fn namespace_of<K: ResourceExt>(object: &K) -> String {
    object.namespace().unwrap_or_else(|| "default".to_owned())
}

impl ObjectRef {
    /// The reference of a typed object.
    pub fn of<K: ResourceExt<DynamicType = ()>>(object: &K) -> Self {
        ObjectRef {
            kind: K::kind(&()).into_owned(),
            namespace: namespace_of(object),
            name: object.name_any(),
        }
    }
}

fn finding<K: ResourceExt<DynamicType = ()>>(
    severity: Severity,
    reason: Reason,
    object: &K,
    field: &[&'static str],
    value: Option<&str>,
    message: String,
) -> Finding {
    Finding {
        severity,
        reason,
        object: ObjectRef::of(object),
        field: field.to_vec(),
        value: value.map(str::to_owned),
        message,
    }
}

/// Organization names are issuer paths (`/o/{name}`) and email domains route
/// sign-in, so both must be unique across the whole installation.
fn check_organizations(organizations: &[Organization]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut by_name: BTreeMap<String, &Organization> = BTreeMap::new();
    let mut by_namespace: BTreeMap<String, &Organization> = BTreeMap::new();
    let mut by_domain: BTreeMap<&str, &Organization> = BTreeMap::new();
    for org in organizations {
        if let Some(first) = by_namespace.insert(namespace_of(org), org) {
            by_namespace.insert(namespace_of(org), first);
            out.push(finding(
                Severity::Error,
                Reason::DuplicateOrganization,
                org,
                &["metadata", "name"],
                None,
                format!(
                    "namespace {} already holds Organization {}: one Organization per namespace",
                    namespace_of(org),
                    first.name_any()
                ),
            ));
            continue;
        }
        if let Some(first) = by_name.insert(org.name_any(), org) {
            by_name.insert(org.name_any(), first);
            out.push(finding(
                Severity::Error,
                Reason::DuplicateOrganization,
                org,
                &["metadata", "name"],
                None,
                format!(
                    "Organization name {} is already used in namespace {}: names are issuer paths and must be unique",
                    org.name_any(),
                    namespace_of(first)
                ),
            ));
        }
        for domain in &org.spec.email_domains {
            if let Some(first) = by_domain.insert(domain, org) {
                by_domain.insert(domain, first);
                out.push(finding(
                    Severity::Error,
                    Reason::DomainConflict,
                    org,
                    &["spec", "emailDomains"],
                    Some(domain),
                    format!("email domain {domain} is already claimed by Organization {}", first.name_any()),
                ));
            }
        }
    }
    out
}

/// One namespace's resources and what follows from its Organization.
struct Tenant<'a> {
    organization: Option<&'a Organization>,
    roles: Vec<&'a Role>,
    /// The roles by name: every assignment looks its role up.
    roles_by_name: BTreeMap<String, &'a Role>,
    role_assignments: Vec<&'a RoleAssignment>,
    identity_providers: Vec<&'a IdentityProvider>,
    oauth_clients: Vec<&'a OAuthClient>,
    expansion: RoleExpansion,
}

impl<'a> Tenant<'a> {
    fn new(snapshot: &Snapshot<'a>, namespace: &str) -> Self {
        fn in_ns<'a, K: ResourceExt>(items: &'a [K], namespace: &str) -> Vec<&'a K> {
            items.iter().filter(|o| namespace_of(*o) == namespace).collect()
        }
        let organization = in_ns(snapshot.organizations, namespace).into_iter().next();
        let roles = in_ns(snapshot.roles, namespace);
        let expansion = organization.map(|org| expand(org, &roles)).unwrap_or_default();
        let mut roles_by_name = BTreeMap::new();
        for role in &roles {
            roles_by_name.entry(role.name_any()).or_insert(*role);
        }
        Tenant {
            organization,
            roles,
            roles_by_name,
            role_assignments: in_ns(snapshot.role_assignments, namespace),
            identity_providers: in_ns(snapshot.identity_providers, namespace),
            oauth_clients: in_ns(snapshot.oauth_clients, namespace),
            expansion,
        }
    }

    fn check(&self, out: &mut Vec<Finding>) {
        let Some(org) = self.organization else {
            self.report_missing_organization(out);
            return;
        };
        self.check_roles(org, out);
        self.check_access_request_policy(org, out);
        self.check_role_assignments(org, out);
        self.check_identity_providers(org, out);
    }

    fn report_missing_organization(&self, out: &mut Vec<Finding>) {
        let message = |ns: String| format!("namespace {ns} has no Organization; its resources grant nothing");
        let mut push = |f: Finding| out.push(f);
        let e = Severity::Error;
        let r = Reason::OrganizationNotFound;
        let field: &[&str] = &["metadata", "namespace"];
        self.roles.iter().for_each(|o| push(finding(e, r, *o, field, None, message(namespace_of(*o)))));
        self.role_assignments
            .iter()
            .for_each(|o| push(finding(e, r, *o, field, None, message(namespace_of(*o)))));
        self.identity_providers
            .iter()
            .for_each(|o| push(finding(e, r, *o, field, None, message(namespace_of(*o)))));
        self.oauth_clients
            .iter()
            .for_each(|o| push(finding(e, r, *o, field, None, message(namespace_of(*o)))));
    }

    fn role(&self, name: &str) -> Option<&'a Role> {
        self.roles_by_name.get(name).copied()
    }

    fn check_roles(&self, org: &Organization, out: &mut Vec<Finding>) {
        let catalog = catalog_of(org);
        for role in &self.roles {
            let name = role.name_any();
            for grant in &role.spec.permissions {
                let matched = role_graph::expand_grant(grant, &catalog).next().is_some();
                if matched {
                    continue;
                }
                let (severity, message) = if grant.ends_with('*') {
                    (
                        Severity::Warning,
                        format!(
                            "{grant} matches no permission in the catalog of Organization {}",
                            org.name_any()
                        ),
                    )
                } else {
                    (
                        Severity::Error,
                        format!(
                            "permission {grant} is not in the catalog of Organization {}; it grants nothing",
                            org.name_any()
                        ),
                    )
                };
                out.push(finding(
                    severity,
                    Reason::UnknownPermission,
                    *role,
                    &["spec", "permissions"],
                    Some(grant),
                    message,
                ));
            }
            for (owner, missing) in &self.expansion.missing_includes {
                if *owner == name {
                    out.push(finding(
                        Severity::Error,
                        Reason::RoleNotFound,
                        *role,
                        &["spec", "includedRoles"],
                        Some(missing),
                        format!(
                            "included role {missing} does not exist in namespace {}",
                            namespace_of(*role)
                        ),
                    ));
                }
            }
            for cycle in self.expansion.cycles.iter().filter(|c| c.contains(&name)) {
                out.push(finding(
                    Severity::Error,
                    Reason::InclusionCycle,
                    *role,
                    &["spec", "includedRoles"],
                    None,
                    format!("role inclusion forms a cycle: {}", cycle.join(" -> ")),
                ));
            }
            let needs_approval: Vec<&String> = org
                .spec
                .approval_required
                .iter()
                .filter(|p| self.expansion.effective.get(&name).is_some_and(|eff| eff.contains(*p)))
                .collect();
            if !needs_approval.is_empty() {
                out.push(finding(
                    Severity::Warning,
                    Reason::ApprovalBypassed,
                    *role,
                    &["spec", "permissions"],
                    None,
                    format!(
                        "grants {}, which the organization requires an approved access request for: standing assignments of this role do not give it (withheld; only an approved access request's grant does)",
                        join(&needs_approval)
                    ),
                ));
            }
        }
    }

    /// `spec.accessRequests`: approvers and two-approver roles that exist,
    /// an approver permission of the catalog (else nobody could approve).
    fn check_access_request_policy(&self, org: &Organization, out: &mut Vec<Finding>) {
        let Some(policy) = &org.spec.access_requests else { return };
        let missing_role = |field: &[&'static str], role: &String| {
            finding(
                Severity::Error,
                Reason::RoleNotFound,
                org,
                field,
                Some(role),
                format!(
                    "spec.accessRequests names role {role}, which does not exist in namespace {}",
                    namespace_of(org)
                ),
            )
        };
        if let Some(role) = &policy.approvers.role
            && self.role(role).is_none()
        {
            out.push(missing_role(&["spec", "accessRequests", "approvers", "role"], role));
        }
        for role in policy.two_approvers_for.iter().filter(|r| self.role(r).is_none()) {
            out.push(missing_role(&["spec", "accessRequests", "twoApproversFor"], role));
        }
        if let Some(permission) = &policy.approvers.permission
            && !catalog_of(org).contains(permission)
        {
            out.push(finding(
                Severity::Error,
                Reason::UnknownPermission,
                org,
                &["spec", "accessRequests", "approvers", "permission"],
                Some(permission),
                format!(
                    "spec.accessRequests.approvers.permission {permission} is not in the catalog of Organization {}; nobody could approve",
                    org.name_any()
                ),
            ));
        }
    }

    fn check_role_assignments(&self, org: &Organization, out: &mut Vec<Finding>) {
        let now = jiff::Timestamp::now();
        for ra in &self.role_assignments {
            let spec = &ra.spec;
            match self.role(&spec.role) {
                None => out.push(finding(
                    Severity::Error,
                    Reason::RoleNotFound,
                    *ra,
                    &["spec", "role"],
                    Some(&spec.role),
                    format!("role {} does not exist in namespace {}", spec.role, namespace_of(*ra)),
                )),
                Some(role) => match (role.spec.scope, spec.scope) {
                    (RoleScope::Workspace, AssignmentScope::Organization) => out.push(finding(
                        Severity::Error,
                        Reason::WorkspaceRequired,
                        *ra,
                        &["spec", "role"],
                        Some(&spec.role),
                        format!("role {} is Workspace-scoped: set scope: Workspace and name a workspace", spec.role),
                    )),
                    (RoleScope::Organization, AssignmentScope::Workspace) => out.push(finding(
                        Severity::Warning,
                        Reason::OrganizationRoleInWorkspace,
                        *ra,
                        &["spec", "scope"],
                        None,
                        format!(
                            "role {} is Organization-scoped but granted in workspace {}; it applies there only",
                            spec.role,
                            spec.workspace.as_deref().unwrap_or_default()
                        ),
                    )),
                    _ => {}
                },
            }
            if let Some(workspace) = &spec.workspace {
                check_workspace(org, *ra, &["spec", "workspace"], workspace, out);
            }
            if spec.principal.kind == PrincipalKind::Client {
                let name = &spec.principal.name;
                match self.oauth_clients.iter().find(|c| c.name_any() == *name) {
                    None => out.push(finding(
                        Severity::Error,
                        Reason::ClientNotFound,
                        *ra,
                        &["spec", "principal", "name"],
                        Some(name),
                        format!("principal Client {name} names no OAuthClient in namespace {}", namespace_of(*ra)),
                    )),
                    Some(client) if !client.spec.grant_types.contains(&GrantType::ClientCredentials) => {
                        out.push(finding(
                            Severity::Warning,
                            Reason::ClientCannotUseGrant,
                            *ra,
                            &["spec", "principal", "name"],
                            Some(name),
                            format!("OAuthClient {name} does not use client_credentials, so this grant never reaches a token"),
                        ))
                    }
                    Some(_) => {}
                }
            }
            if let Some(expiry) = spec.expires_at.filter(|at| *at <= now) {
                out.push(finding(
                    Severity::Warning,
                    Reason::Expired,
                    *ra,
                    &["spec", "expiresAt"],
                    None,
                    format!("expired at {expiry}; it grants nothing"),
                ));
            }
        }
    }

    fn check_identity_providers(&self, org: &Organization, out: &mut Vec<Finding>) {
        let mut domain_owner: BTreeMap<&str, &IdentityProvider> = BTreeMap::new();
        for idp in &self.identity_providers {
            let spec = &idp.spec;
            for domain in &spec.email_domains {
                if let Some(first) = domain_owner.insert(domain, *idp) {
                    domain_owner.insert(domain, first);
                    out.push(finding(
                        Severity::Error,
                        Reason::DomainConflict,
                        *idp,
                        &["spec", "emailDomains"],
                        Some(domain),
                        format!(
                            "email domain {domain} is already routed to IdentityProvider {}",
                            first.name_any()
                        ),
                    ));
                }
                if !org.spec.email_domains.contains(domain) {
                    out.push(finding(
                        Severity::Warning,
                        Reason::DomainNotOwned,
                        *idp,
                        &["spec", "emailDomains"],
                        Some(domain),
                        format!(
                            "email domain {domain} is not among Organization {}'s emailDomains",
                            org.name_any()
                        ),
                    ));
                }
            }
            let mode = org.spec.provisioning.mode;
            if spec.scim.enabled && mode != ProvisioningMode::Scim {
                out.push(finding(
                    Severity::Warning,
                    Reason::ProvisioningModeMismatch,
                    *idp,
                    &["spec", "scim", "enabled"],
                    None,
                    format!("SCIM is enabled but Organization {} has provisioning mode {mode:?}; SCIM writes will be refused", org.name_any()),
                ));
            }
            if spec.jit.enabled && mode != ProvisioningMode::Jit {
                out.push(finding(
                    Severity::Warning,
                    Reason::ProvisioningModeMismatch,
                    *idp,
                    &["spec", "jit", "enabled"],
                    None,
                    format!("JIT is enabled but Organization {} has provisioning mode {mode:?}; no user will be created at sign-in", org.name_any()),
                ));
            }
            for mapping in &spec.group_mappings {
                let Some(role) = self.role(&mapping.role) else {
                    out.push(finding(
                        Severity::Error,
                        Reason::RoleNotFound,
                        *idp,
                        &["spec", "groupMappings", "role"],
                        Some(&mapping.role),
                        format!(
                            "group {} maps to role {}, which does not exist",
                            mapping.group, mapping.role
                        ),
                    ));
                    continue;
                };
                if let Some(workspace) = &mapping.workspace {
                    check_workspace(org, *idp, &["spec", "groupMappings", "workspace"], workspace, out);
                    if role.spec.scope == RoleScope::Organization {
                        out.push(finding(
                            Severity::Warning,
                            Reason::OrganizationRoleInWorkspace,
                            *idp,
                            &["spec", "groupMappings", "workspace"],
                            Some(workspace),
                            format!(
                                "role {} is Organization-scoped but group {} receives it in workspace {workspace}; it applies there only",
                                mapping.role, mapping.group
                            ),
                        ));
                    }
                } else if role.spec.scope == RoleScope::Workspace {
                    out.push(finding(
                        Severity::Error,
                        Reason::WorkspaceRequired,
                        *idp,
                        &["spec", "groupMappings", "role"],
                        Some(&mapping.role),
                        format!(
                            "role {} is Workspace-scoped: the mapping of group {} must name a workspace",
                            mapping.role, mapping.group
                        ),
                    ));
                }
                if grants_privileged_access(org, role, &self.expansion) {
                    out.push(finding(
                        Severity::Warning,
                        Reason::PrivilegedGroupMapping,
                        *idp,
                        &["spec", "groupMappings", "role"],
                        Some(&mapping.role),
                        format!(
                            "role {} grants IAM administration or privileged permissions to IdP-managed group {}: whoever controls that group at the provider holds them",
                            mapping.role, mapping.group
                        ),
                    ));
                }
            }
        }
    }
}

fn check_workspace<K: ResourceExt<DynamicType = ()>>(
    org: &Organization,
    object: &K,
    field: &[&'static str],
    workspace: &str,
    out: &mut Vec<Finding>,
) {
    if !org.spec.workspaces.iter().any(|w| w.name == workspace) {
        out.push(finding(
            Severity::Error,
            Reason::WorkspaceNotFound,
            object,
            field,
            Some(workspace),
            format!("workspace {workspace} is not declared by Organization {}", org.name_any()),
        ));
    }
}

/// A role is privileged when it names `*` or `iam.*`, or when any `iam.`
/// permission or any permission the catalog marks `privileged` reaches it
/// (directly or through included roles).
fn grants_privileged_access(org: &Organization, role: &Role, expansion: &RoleExpansion) -> bool {
    let privileged: BTreeSet<&str> =
        org.spec.permissions.iter().filter(|p| p.privileged).map(|p| p.name.as_str()).collect();
    role.spec.permissions.iter().any(|g| g == "*" || g == "iam.*")
        || expansion
            .effective
            .get(&role.name_any())
            .is_some_and(|eff| eff.iter().any(|p| p.starts_with("iam.") || privileged.contains(p.as_str())))
}

/// The organization's permission catalog.
pub fn catalog_of(org: &Organization) -> BTreeSet<String> {
    org.spec.permissions.iter().map(|p| p.name.clone()).collect()
}

/// Expands the roles of one organization with the shared role graph.
pub fn expand(org: &Organization, roles: &[&Role]) -> RoleExpansion {
    let definitions = roles
        .iter()
        .map(|r| {
            let definition = RoleDefinition {
                grants: r.spec.permissions.clone(),
                included_roles: r.spec.included_roles.clone(),
            };
            (r.name_any(), definition)
        })
        .collect();
    role_graph::expand_roles(&catalog_of(org), &definitions)
}

fn join(items: &[&String]) -> String {
    items.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}
