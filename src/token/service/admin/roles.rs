//! Roles and role assignments over the admin API: read with `iam.view`;
//! written with `iam.manage-roles`, and only where the organization does not
//! keep them in Git.
//!
//! ```text
//!  spec.administration.roleSource: GitOps (default) ── PUT/DELETE ──► 409 managed-in-git
//!                                                       (manifest: namespace/kind/name to edit)
//!  spec.administration.roleSource: API ── PUT/DELETE ──► store, owner 'api' ──► access index
//!        a name a manifest holds ──────────────────────► 409 managed-in-git (the sync would undo it)
//! ```
//!
//! A body is the kind's own `spec` (the CRD's), checked against the same
//! generated schema and CEL rules the API server enforces, then against the
//! organization (declared workspaces, existing roles). The version is the
//! stored generation: `ETag`, and `If-Match` to replace.

use std::marker::PhantomData;
use std::sync::LazyLock;

use aide::transform::TransformOperation;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::body::{JsonBody, Versioned, if_match};
use super::openapi::{problems, replaced_or_created};
use super::users::if_match_header;
use super::{AdminCaller, AdminError, IamManageRoles};
use crate::api::{AssignmentScope, Role, RoleAssignment, RoleAssignmentSpec, RoleSource, RoleSpec};
use crate::resources::records::ToRecord;
use crate::store::{
    AdminStore as _, ApiWrite, DesiredRecord, DesiredStateStore as _, ObjectMeta, Owner, RoleRecord,
};
use crate::token::service::check::IamView;
use crate::token::service::state::{OrganizationView, TokenServiceState};
use crate::validation::schema::SchemaRules;

/// The CRDs' rules, compiled once.
static SCHEMA: LazyLock<SchemaRules> = LazyLock::new(SchemaRules::new);

/// A kind the admin API reads and (under `roleSource: API`) writes.
pub trait AdminKind: ToRecord + Send + Sync + 'static {
    type Spec: DeserializeOwned + serde::Serialize + JsonSchema + Send;
    /// The list's body: `roleSource` and the collection under its own name.
    type List: Serialize + JsonSchema + Send;
    fn list(role_source: &'static str, items: Vec<RecordView<Self::Spec>>) -> Self::List;
    /// `role`, `role assignment`: what the document calls one.
    const NOUN: &'static str;
    fn object(name: &str, spec: Self::Spec) -> Self;
    fn spec_of(&self) -> &Self::Spec;
    /// Checks against the organization that the schema cannot make.
    fn check_references(
        spec: &Self::Spec,
        org: &OrganizationView,
        roles: &[RoleRecord],
    ) -> Result<(), AdminError>;
}

impl AdminKind for Role {
    type Spec = RoleSpec;
    type List = RoleList;
    const NOUN: &'static str = "role";

    fn list(role_source: &'static str, roles: Vec<RecordView<RoleSpec>>) -> RoleList {
        RoleList { role_source, roles }
    }

    fn object(name: &str, spec: RoleSpec) -> Self {
        Role::new(name, spec)
    }

    fn spec_of(&self) -> &RoleSpec {
        &self.spec
    }

    fn check_references(
        spec: &RoleSpec,
        _: &OrganizationView,
        roles: &[RoleRecord],
    ) -> Result<(), AdminError> {
        for (n, included) in spec.included_roles.iter().enumerate() {
            if !roles.iter().any(|r| r.meta.name == *included) {
                return Err(AdminError::invalid_field(
                    &format!("spec.includedRoles[{n}]"),
                    format!("no role {included} in this organization"),
                ));
            }
        }
        Ok(())
    }
}

impl AdminKind for RoleAssignment {
    type Spec = RoleAssignmentSpec;
    type List = RoleAssignmentList;
    const NOUN: &'static str = "role assignment";

    fn list(
        role_source: &'static str,
        role_assignments: Vec<RecordView<RoleAssignmentSpec>>,
    ) -> RoleAssignmentList {
        RoleAssignmentList { role_source, role_assignments }
    }

    fn object(name: &str, spec: RoleAssignmentSpec) -> Self {
        RoleAssignment::new(name, spec)
    }

    fn spec_of(&self) -> &RoleAssignmentSpec {
        &self.spec
    }

    fn check_references(
        spec: &RoleAssignmentSpec,
        org: &OrganizationView,
        roles: &[RoleRecord],
    ) -> Result<(), AdminError> {
        if !roles.iter().any(|r| r.meta.name == spec.role) {
            return Err(AdminError::invalid_field(
                "spec.role",
                format!("no role {} in this organization", spec.role),
            ));
        }
        if spec.scope == AssignmentScope::Workspace
            && let Some(workspace) = &spec.workspace
            && !org.spec.workspaces.iter().any(|w| w.name == *workspace)
        {
            return Err(AdminError::invalid_field(
                "spec.workspace",
                format!("the organization declares no workspace {workspace}"),
            ));
        }
        Ok(())
    }
}

/// `{name}` of a role or assignment route.
#[derive(Deserialize, JsonSchema)]
pub struct NamePath {
    name: String,
}

/// A write's body: the kind's spec.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "{S}Body")]
pub struct SpecBody<S> {
    spec: S,
}

/// Every role, with the organization's `roleSource`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleList {
    /// `GitOps` (written only by manifests) or `API`.
    #[schemars(extend("enum" = ["GitOps", "API"]))]
    pub role_source: &'static str,
    pub roles: Vec<RecordView<RoleSpec>>,
}

/// Every role assignment, with the organization's `roleSource`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentList {
    /// `GitOps` (written only by manifests) or `API`.
    #[schemars(extend("enum" = ["GitOps", "API"]))]
    pub role_source: &'static str,
    pub role_assignments: Vec<RecordView<RoleAssignmentSpec>>,
}

/// A role or role assignment as stored, and who owns it.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "{S}Record")]
pub struct RecordView<S: JsonSchema> {
    /// `Role` or `RoleAssignment`.
    #[schemars(extend("enum" = ["Role", "RoleAssignment"]))]
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// `manifest` (kept in Git) or `api` (written here).
    #[schemars(extend("enum" = ["manifest", "api"]))]
    pub owner: &'static str,
    /// The stored generation (also the `ETag`).
    pub version: i64,
    /// The spec as stored: the kind's CRD spec.
    #[schemars(with = "S")]
    pub spec: Value,
    #[serde(skip)]
    spec_type: PhantomData<fn() -> S>,
}

/// `GET {issuer}/api/v1/{roles|roleAssignments}`: every one, by name, with
/// who owns it (`manifest` or `api`) and the organization's `roleSource`.
pub async fn list<K: AdminKind>(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamView>,
) -> Result<Json<K::List>, AdminError> {
    let org = state.require_organization(&caller.authorized.organization).await?;
    let records = state.store().list::<K::Record>(&org.namespace).await?;
    let owners = state.store().owners::<K::Record>(&org.namespace).await?;
    let items = records
        .iter()
        .map(|record| {
            let owner =
                owners.iter().find(|(name, _)| *name == record.meta().name).map_or(Owner::Manifest, |o| o.1);
            record_view(record, owner)
        })
        .collect();
    Ok(Json(K::list(role_source(&org), items)))
}

pub fn list_docs<K: AdminKind>(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary(&format!("List every {} and who owns it", K::NOUN))
}

/// `GET {issuer}/api/v1/{roles|roleAssignments}/{name}`.
pub async fn get<K: AdminKind>(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamView>,
    Path(path): Path<NamePath>,
) -> Result<Versioned<RecordView<K::Spec>>, AdminError> {
    let org = state.require_organization(&caller.authorized.organization).await?;
    let record = state
        .store()
        .get::<K::Record>(&org.namespace, &path.name)
        .await?
        .ok_or_else(|| not_found::<K>(&path.name))?;
    let owners = state.store().owners::<K::Record>(&org.namespace).await?;
    let owner = owners.iter().find(|(name, _)| *name == path.name).map_or(Owner::Manifest, |o| o.1);
    Ok(Versioned::ok(record.meta().generation, record_view(&record, owner)))
}

pub fn get_docs<K: AdminKind>(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary(&format!("A {}", K::NOUN))
}

/// `PUT {issuer}/api/v1/{roles|roleAssignments}/{name}` with `{"spec": …}`:
/// creates it (no `If-Match`) or replaces it (`If-Match` its `ETag`).
pub async fn put<K: AdminKind>(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManageRoles>,
    Path(path): Path<NamePath>,
    headers: HeaderMap,
    body: JsonBody<SpecBody<K::Spec>>,
) -> Result<Versioned<RecordView<K::Spec>>, AdminError> {
    let expected = if_match(&headers)?;
    if !is_object_name(&path.name) {
        return Err(AdminError::invalid_field(
            "metadata.name",
            "must be a Kubernetes object name (lowercase letters, digits, '-' and '.', at most 253)",
        ));
    }
    let body = body.read()?;
    let org = state.require_organization(&caller.authorized.organization).await?;
    refuse_under_gitops::<K>(&org, &path.name)?;
    let object = K::object(&path.name, body.spec);
    let manifest = json!({
        "apiVersion": "iam.portcullis.dev/v1alpha1",
        "kind": kind_name::<K>(),
        "metadata": { "name": path.name, "namespace": org.namespace },
        "spec": serde_json::to_value(object.spec_of()).unwrap_or_default(),
    });
    if let Some(violation) = SCHEMA.check(kind_name::<K>(), &manifest).into_iter().next() {
        return Err(AdminError::invalid_field(&violation.field_path, violation.message));
    }
    let roles = state.store().list::<RoleRecord>(&org.namespace).await?;
    K::check_references(object.spec_of(), &org, &roles)?;
    let record =
        object.to_record(ObjectMeta::new(String::new(), org.namespace.clone(), path.name.clone(), 0));
    let store = state.store().with_audit(caller.audit_context());
    match store.put_api_record(record, expected).await? {
        ApiWrite::Written(record) => {
            let status = if expected.is_some() { StatusCode::OK } else { StatusCode::CREATED };
            let body = record_view(&record, Owner::Api);
            Ok(Versioned { status, version: record.meta().generation, body, location: None })
        }
        ApiWrite::OwnedByManifest => Err(managed_in_git::<K>(&org, &path.name)),
        ApiWrite::OwnedByAccessRequest => Err(granted_by_access_request(&path.name)),
        ApiWrite::VersionMismatch { .. } if expected.is_none() => Err(AdminError::Conflict(format!(
            "A {} named {} already exists: send If-Match with its ETag to replace it.",
            kind_name::<K>(),
            path.name
        ))),
        ApiWrite::VersionMismatch { .. } => Err(AdminError::PreconditionFailed {
            kind: kind_name::<K>(),
            id: path.name,
            expected: expected.unwrap_or_default().to_string(),
        }),
        ApiWrite::Absent => Err(not_found::<K>(&path.name)),
    }
}

pub fn put_docs<K: AdminKind>(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary(&format!("Create or replace a {} (roleSource: API)", K::NOUN))
        .description("Creates it without `If-Match`, replaces it with `If-Match` its `ETag`.")
        .with(replaced_or_created)
        .with(if_match_header)
        .with(|op| problems(op, &[409, 412]))
}

/// `DELETE {issuer}/api/v1/{roles|roleAssignments}/{name}`. 204.
pub async fn delete<K: AdminKind>(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamManageRoles>,
    Path(path): Path<NamePath>,
) -> Result<StatusCode, AdminError> {
    let org = state.require_organization(&caller.authorized.organization).await?;
    refuse_under_gitops::<K>(&org, &path.name)?;
    let store = state.store().with_audit(caller.audit_context());
    match store.delete_api_record::<K::Record>(&org.namespace, &path.name).await? {
        ApiWrite::Written(()) => Ok(StatusCode::NO_CONTENT),
        ApiWrite::OwnedByManifest => Err(managed_in_git::<K>(&org, &path.name)),
        ApiWrite::OwnedByAccessRequest => Err(granted_by_access_request(&path.name)),
        ApiWrite::Absent | ApiWrite::VersionMismatch { .. } => Err(not_found::<K>(&path.name)),
    }
}

pub fn delete_docs<K: AdminKind>(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary(&format!("Delete a {} (roleSource: API)", K::NOUN))
        .response_with::<204, (), _>(|r| r.description("Deleted."))
        .with(|op| problems(op, &[409]))
}

/// A DNS subdomain (RFC 1123), as Kubernetes names objects.
fn is_object_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 253
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn role_source(org: &OrganizationView) -> &'static str {
    match org.spec.administration.role_source {
        RoleSource::GitOps => "GitOps",
        RoleSource::Api => "API",
    }
}

fn refuse_under_gitops<K: AdminKind>(org: &OrganizationView, name: &str) -> Result<(), AdminError> {
    match org.spec.administration.role_source {
        RoleSource::GitOps => Err(managed_in_git::<K>(org, name)),
        RoleSource::Api => Ok(()),
    }
}

fn managed_in_git<K: AdminKind>(org: &OrganizationView, name: &str) -> AdminError {
    AdminError::ManagedInGit {
        namespace: org.namespace.clone(),
        kind: kind_name::<K>(),
        name: name.to_owned(),
    }
}

fn kind_name<K: AdminKind>() -> &'static str {
    <K::Record as DesiredRecord>::KIND.as_str()
}

fn not_found<K: AdminKind>(name: &str) -> AdminError {
    AdminError::NotFound { kind: kind_name::<K>(), id: name.to_owned() }
}

fn record_view<R: DesiredRecord, S: JsonSchema>(record: &R, owner: Owner) -> RecordView<S> {
    let meta = record.meta();
    RecordView {
        kind: R::KIND.as_str(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        owner: owner.as_str(),
        version: meta.generation,
        spec: serde_json::from_str(record.spec_json()).unwrap_or(Value::Null),
        spec_type: PhantomData,
    }
}

/// 409 for a RoleAssignment an approved access request made: it ends with
/// the request (revoke it), not by an edit.
fn granted_by_access_request(name: &str) -> AdminError {
    AdminError::Refused {
        status: axum::http::StatusCode::CONFLICT,
        code: "granted-by-access-request",
        detail: format!(
            "The role assignment {name} is the grant of an approved access request: revoke the request \
             (POST /api/v1/access-requests/{{id}}/revoke) to end it."
        ),
    }
}
