//! Each user's WebAuthn credentials as the sign-in pages use them: the
//! store's rows ([`crate::store::webauthn`]) with webauthn-rs' `Passkey`
//! read back.
//!
//! ```text
//!  enrolment ──insert──► row (credential_id unique per organization)
//!  sign-in   ──for_user / by_credential_id──► Passkey ─► webauthn-rs ─► record_use (counter, backup state)
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use webauthn_rs::prelude::{AuthenticationResult, Passkey};

pub(super) use crate::store::webauthn::CredentialKind;
use crate::store::webauthn::{CredentialUse, NewWebAuthnCredential, WebAuthnCredential};
use crate::store::{Store, WebAuthnCredentialStore as _};
use crate::token::service::error::OAuthError;

#[derive(Clone, Debug)]
pub(super) struct StoredCredential {
    pub id: String,
    pub user_id: String,
    pub kind: CredentialKind,
    pub name: String,
    pub passkey: Passkey,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
}

/// The credential id as stored: base64url, no padding.
pub(super) fn credential_key(credential_id: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(credential_id)
}

fn read(stored: WebAuthnCredential) -> Result<StoredCredential, OAuthError> {
    Ok(StoredCredential {
        passkey: serde_json::from_str(&stored.passkey).map_err(OAuthError::server)?,
        id: stored.id,
        user_id: stored.user_id,
        kind: stored.kind,
        name: stored.name,
        created_ms: stored.created_ms,
        last_used_ms: stored.last_used_ms,
    })
}

/// The user's credentials, oldest first.
pub(super) async fn for_user(
    store: &Store,
    organization: &str,
    user_id: &str,
) -> Result<Vec<StoredCredential>, OAuthError> {
    store.webauthn_credentials(organization, user_id).await?.into_iter().map(read).collect()
}

/// The credential of this organization with this id, whoever holds it.
pub(super) async fn by_credential_id(
    store: &Store,
    organization: &str,
    credential_id: &[u8],
) -> Result<Option<StoredCredential>, OAuthError> {
    let stored = store.webauthn_credential_by_id(organization, &credential_key(credential_id)).await?;
    stored.map(read).transpose()
}

/// Stores a credential; `false` if its id is enrolled in this organization already.
pub(super) async fn insert(
    store: &Store,
    organization: &str,
    user_id: &str,
    kind: CredentialKind,
    name: &str,
    passkey: &Passkey,
    now_ms: i64,
) -> Result<bool, OAuthError> {
    let json = serde_json::to_string(passkey).map_err(OAuthError::server)?;
    let credential = NewWebAuthnCredential {
        organization,
        user_id,
        credential_id: &credential_key(passkey.cred_id().as_ref()),
        kind,
        name,
        passkey: &json,
        created_ms: now_ms,
    };
    Ok(store.insert_webauthn_credential(&credential).await?)
}

/// After a good assertion: the new counter and backup state, and the time.
/// Written only if the stored counter is still below the new one, so two
/// racing uses of one counter value cannot both count.
pub(super) async fn record_use(
    store: &Store,
    credential: &StoredCredential,
    result: &AuthenticationResult,
    now_ms: i64,
) -> Result<bool, OAuthError> {
    let mut passkey = credential.passkey.clone();
    passkey.update_credential(result);
    let json = serde_json::to_string(&passkey).map_err(OAuthError::server)?;
    let used = CredentialUse {
        id: &credential.id,
        passkey: &json,
        counter: i64::from(result.counter()),
        backed_up: result.backup_state(),
        used_ms: now_ms,
    };
    Ok(store.record_webauthn_use(&used).await?)
}
