//! The first administrator of each organization, so that someone can sign
//! in to a fresh standalone server.
//!
//! The administrator is the person the manifests already make one: the
//! first user (by RoleAssignment name) assigned, at organization scope, a
//! role that grants `iam.manage`. If that user does not exist in the store
//! yet, it is created as a local user with a generated password and, where
//! the organization's MFA policy accepts TOTP, a TOTP enrolment; both are
//! shown once, on the run that made them. An organization whose manifests
//! name no administrator gets none.

use kube::ResourceExt;

use crate::api::{AssignmentScope, MfaMethod, MfaRequirement, Organization, PrincipalKind};
use crate::manifests::{ManifestSet, Resource};
use crate::secret::SecretString;
use crate::store::{Email, MfaFactor, NewUser, Store, StoreError, UserSource, UserStore as _};
use crate::token::service::login::LoginState;
use crate::token::totp;
use crate::validation::{self, namespace_of};

/// The permission that makes a user an administrator here.
pub const ADMINISTRATION: &str = "iam.manage";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    #[error("hashing the administrator's password: {0}")]
    Password(String),
    #[error("making the administrator's TOTP secret: {0}")]
    Totp(String),
}

/// An organization's administrator. `Debug` never shows the secrets.
pub struct Administrator {
    pub organization: String,
    pub user_name: String,
    /// Set only on the run that created the user.
    pub first_sign_in: Option<FirstSignIn>,
}

/// What the created administrator signs in with.
pub struct FirstSignIn {
    pub password: String,
    /// `otpauth://` URI for an authenticator app, when TOTP was enrolled.
    pub totp_uri: Option<String>,
}

impl std::fmt::Debug for Administrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Administrator")
            .field("organization", &self.organization)
            .field("user_name", &self.user_name)
            .field("created", &self.first_sign_in.is_some())
            .finish()
    }
}

/// The administrator of every Organization in the folder, created where missing.
pub async fn ensure_administrators(
    set: &ManifestSet,
    store: &Store,
    login: &LoginState,
    now: jiff::Timestamp,
) -> Result<Vec<Administrator>, BootstrapError> {
    let mut administrators = Vec::new();
    for manifest in &set.manifests {
        let Resource::Organization(org) = &manifest.resource else { continue };
        let Some(user_name) = administrator_of(set, org) else { continue };
        let namespace = namespace_of(org);
        let first_sign_in = match store.find_user_by_name(&namespace, &user_name).await? {
            Some(_) => None,
            None => Some(create(store, login, org, &namespace, &user_name, now).await?),
        };
        administrators.push(Administrator { organization: org.name_any(), user_name, first_sign_in });
    }
    Ok(administrators)
}

/// The first user assigned, organization-wide, a role granting [`ADMINISTRATION`].
fn administrator_of(set: &ManifestSet, org: &Organization) -> Option<String> {
    let namespace = namespace_of(org);
    let roles: Vec<_> = set
        .manifests
        .iter()
        .filter_map(|m| match &m.resource {
            Resource::Role(role) if namespace_of(role) == namespace => Some(role),
            _ => None,
        })
        .collect();
    let expansion = validation::expand(org, &roles);
    let mut candidates: Vec<(String, String)> = set
        .manifests
        .iter()
        .filter_map(|m| match &m.resource {
            Resource::RoleAssignment(ra)
                if namespace_of(ra) == namespace
                    && ra.spec.principal.kind == PrincipalKind::User
                    && ra.spec.scope == AssignmentScope::Organization
                    && ra.spec.expires_at.is_none()
                    && expansion.effective.get(&ra.spec.role).is_some_and(|p| p.contains(ADMINISTRATION)) =>
            {
                Some((ra.name_any(), ra.spec.principal.name.clone()))
            }
            _ => None,
        })
        .collect();
    candidates.sort();
    candidates.into_iter().next().map(|(_, user)| user)
}

async fn create(
    store: &Store,
    login: &LoginState,
    org: &Organization,
    namespace: &str,
    user_name: &str,
    now: jiff::Timestamp,
) -> Result<FirstSignIn, BootstrapError> {
    let password = generate_password()?;
    let hash = login.hasher().hash(&password).await.map_err(|e| BootstrapError::Password(e.to_string()))?;
    let emails = if user_name.contains('@') { vec![Email::primary(user_name)] } else { Vec::new() };
    let user = store
        .create_user(&NewUser {
            emails,
            password_hash: Some(SecretString::new(hash)),
            ..NewUser::new(namespace, user_name, UserSource::Local)
        })
        .await?;
    let mfa = &org.spec.authentication.mfa;
    let totp_uri = if mfa.methods.contains(&MfaMethod::Totp) && mfa.required != MfaRequirement::Never {
        let secret = totp::generate_secret().map_err(|e| BootstrapError::Totp(e.to_string()))?;
        let sealed = login
            .totp_sealer()
            .seal(namespace, &user.id, &secret)
            .map_err(|e| BootstrapError::Totp(e.to_string()))?;
        let factor = MfaFactor::Totp { sealed_secret: SecretString::new(sealed) };
        store
            .add_mfa_enrolment(namespace, &user.id, Some("bootstrap"), &factor, now.as_millisecond())
            .await?;
        let issuer = format!("Portcullis {}", org.name_any());
        Some(totp::provisioning_uri(&issuer, user_name, &secret))
    } else {
        None
    };
    tracing::info!(organization = %org.name_any(), user = user_name, "bootstrap administrator created");
    Ok(FirstSignIn { password, totp_uri })
}

/// 144 random bits as 24 base64url characters: longer than any sane
/// `minLength` and typeable.
fn generate_password() -> Result<String, BootstrapError> {
    Ok(SecretString::generate_bytes(18).expose().to_owned())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn read(text: &str) -> ManifestSet {
        let mut set = ManifestSet::default();
        crate::manifests::read_str(Path::new("t.yaml"), text, &mut set);
        assert_eq!(set.problems, []);
        set
    }

    const TENANT: &str = "apiVersion: iam.portcullis.dev/v1alpha1\nkind: Organization\nmetadata: {name: acme, namespace: acme}\nspec:\n  displayName: Acme\n  permissions: [{name: iam.manage}, {name: iam.view}]\n---\napiVersion: iam.portcullis.dev/v1alpha1\nkind: Role\nmetadata: {name: admin, namespace: acme}\nspec: {scope: Organization, permissions: [iam.*]}\n---\napiVersion: iam.portcullis.dev/v1alpha1\nkind: Role\nmetadata: {name: viewer, namespace: acme}\nspec: {scope: Organization, permissions: [iam.view]}\n---\napiVersion: iam.portcullis.dev/v1alpha1\nkind: RoleAssignment\nmetadata: {name: b-viewer, namespace: acme}\nspec: {principal: {kind: User, name: viewer@acme.com}, role: viewer, scope: Organization}\n---\napiVersion: iam.portcullis.dev/v1alpha1\nkind: RoleAssignment\nmetadata: {name: z-admin, namespace: acme}\nspec: {principal: {kind: User, name: zoe@acme.com}, role: admin, scope: Organization}\n---\napiVersion: iam.portcullis.dev/v1alpha1\nkind: RoleAssignment\nmetadata: {name: c-admin-group, namespace: acme}\nspec: {principal: {kind: Group, name: Admins}, role: admin, scope: Organization}\n";

    fn org(set: &ManifestSet) -> &Organization {
        set.manifests
            .iter()
            .find_map(|m| match &m.resource {
                Resource::Organization(o) => Some(o),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn the_administrator_is_a_user_holding_iam_manage_organization_wide() {
        let set = read(TENANT);
        assert_eq!(administrator_of(&set, org(&set)).as_deref(), Some("zoe@acme.com"));
        let without = read(
            &TENANT
                .replace("role: admin, scope: Organization}\n---", "role: viewer, scope: Organization}\n---"),
        );
        assert_eq!(administrator_of(&without, org(&without)), None, "a group or a viewer is not one");
    }

    #[tokio::test]
    async fn the_administrator_is_created_once_with_a_password_and_totp() {
        let set = read(TENANT);
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let login = LoginState::default();
        let now = jiff::Timestamp::now();
        let first = ensure_administrators(&set, &store, &login, now).await.unwrap();
        let sign_in = first[0].first_sign_in.as_ref().expect("created on the first run");
        assert!(sign_in.password.len() >= 24);
        assert!(sign_in.totp_uri.as_deref().is_some_and(|u| u.starts_with("otpauth://totp/")));
        let user = store.find_user_by_name("acme", "zoe@acme.com").await.unwrap().unwrap();
        let hash = user.password_hash.as_ref().unwrap();
        assert!(login.hasher().verify(&sign_in.password, hash.expose()).await.unwrap());
        assert_eq!(store.list_mfa_enrolments("acme", &user.id).await.unwrap().len(), 1);
        let again = ensure_administrators(&set, &store, &login, now).await.unwrap();
        assert!(again[0].first_sign_in.is_none(), "never made (nor shown) twice");
        assert!(!format!("{:?}", first[0]).contains(&sign_in.password));
    }
}
