//! Each kind's record in the store: the plain projection the operator writes
//! on every pass and standalone mode writes for every manifest.

use crate::api::{
    ClientType, IdentityProvider, IdentityProviderType, OAuthClient, Organization, PrincipalKind, Role,
    RoleAssignment, RoleScope,
};
use crate::authz;
use crate::store::{
    self, AssignmentRecord, DesiredRecord, IdentityProviderRecord, OAuthClientRecord, ObjectMeta,
    OrganizationRecord, RoleRecord,
};

/// A kind whose objects are stored as desired state.
pub trait ToRecord {
    type Record: DesiredRecord;

    /// The record of this object; `meta` carries its uid and generation.
    fn to_record(&self, meta: ObjectMeta) -> Self::Record;
}

impl ToRecord for Organization {
    type Record = OrganizationRecord;

    fn to_record(&self, meta: ObjectMeta) -> OrganizationRecord {
        OrganizationRecord {
            meta,
            display_name: self.spec.display_name.clone(),
            catalog: self.spec.permissions.iter().map(|p| p.name.clone()).collect(),
            workspaces: self.spec.workspaces.iter().map(|w| w.name.clone()).collect(),
            spec_json: serde_json::to_string(&self.spec).unwrap_or_default(),
        }
    }
}

impl ToRecord for Role {
    type Record = RoleRecord;

    fn to_record(&self, meta: ObjectMeta) -> RoleRecord {
        RoleRecord {
            meta,
            scope: match self.spec.scope {
                RoleScope::Organization => store::RoleScope::Organization,
                RoleScope::Workspace => store::RoleScope::Workspace,
            },
            permissions: self.spec.permissions.clone(),
            included_roles: self.spec.included_roles.clone(),
            spec_json: serde_json::to_string(&self.spec).unwrap_or_default(),
        }
    }
}

impl ToRecord for RoleAssignment {
    type Record = AssignmentRecord;

    fn to_record(&self, meta: ObjectMeta) -> AssignmentRecord {
        AssignmentRecord {
            meta,
            principal_kind: match self.spec.principal.kind {
                PrincipalKind::User => authz::PrincipalKind::User,
                PrincipalKind::Group => authz::PrincipalKind::Group,
                PrincipalKind::Client => authz::PrincipalKind::Client,
            },
            principal_name: self.spec.principal.name.clone(),
            role: self.spec.role.clone(),
            workspace: self.spec.workspace.clone(),
            expires_at_ms: self.spec.expires_at.map(|t| t.as_millisecond()),
            spec_json: serde_json::to_string(&self.spec).unwrap_or_default(),
        }
    }
}

impl ToRecord for OAuthClient {
    type Record = OAuthClientRecord;

    /// The secret hash is written apart, once the secret is known.
    fn to_record(&self, meta: ObjectMeta) -> OAuthClientRecord {
        OAuthClientRecord {
            meta,
            client_type: match self.spec.client_type {
                ClientType::Confidential => "confidential",
                ClientType::Public => "public",
            }
            .to_owned(),
            redirect_uris: self.spec.redirect_uris.iter().map(|u| u.0.clone()).collect(),
            spec_json: serde_json::to_string(&self.spec).unwrap_or_default(),
            secret_hash: None,
        }
    }
}

impl ToRecord for IdentityProvider {
    type Record = IdentityProviderRecord;

    fn to_record(&self, meta: ObjectMeta) -> IdentityProviderRecord {
        IdentityProviderRecord {
            meta,
            protocol: match self.spec.protocol {
                IdentityProviderType::Oidc => "oidc",
                IdentityProviderType::Saml => "saml",
            }
            .to_owned(),
            stage: format!("{:?}", self.spec.rollout.stage),
            email_domains: self.spec.email_domains.clone(),
            scim_enabled: self.spec.scim.enabled,
            spec_json: serde_json::to_string(&self.spec).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_organization_record_carries_catalog_and_workspaces() {
        let spec = serde_json::from_value(serde_json::json!({
            "displayName": "Acme",
            "permissions": [{"name": "journeys.view"}, {"name": "journeys.edit"}],
            "workspaces": [{"name": "emea"}],
        }))
        .unwrap();
        let record = Organization::new("acme", spec).to_record(ObjectMeta::new("u", "acme", "acme", 4));
        assert_eq!(record.catalog, ["journeys.view", "journeys.edit"]);
        assert_eq!(record.workspaces, ["emea"]);
        assert!(record.spec_json.contains("\"displayName\":\"Acme\""));
    }
}
