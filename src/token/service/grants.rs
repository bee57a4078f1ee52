//! What the token endpoint hands out and takes back, as the token service
//! decides it: authorization codes (single use), refresh-token families with
//! rotation and reuse detection (decided by [`crate::token::refresh::decide`]),
//! and access tokens revoked before they expire. The rows are the store's
//! ([`crate::store::grants`]); codes and refresh tokens are kept only as their
//! [`SecretHash`].
//!
//! ```text
//!  authorize ──issue_authorization_code──► store (hash, 60 s)
//!  token     ──redeem_authorization_code─► checks (client, expiry, redirect_uri, PKCE), then the
//!              store marks it used once and starts the refresh-token family
//!              (a second redemption: revokes the family and the access token it issued)
//!            ──find_refresh_grant────────► token + family + user (active?)
//!            ──rotate_refresh_token──────► refresh::decide ─► store rotation (compare-and-set)
//!              (exactly one of concurrent rotations wins; the others are reuse)
//! ```
//!
//! `organization` is always the organization's name (the issuer path).

use jiff::{SignedDuration, Timestamp};

use super::error::OAuthError;
use super::issue::{self, TokenUser};
use super::state::TokenServiceState;
use crate::audit::{Actor, ActorKind, AuditContext, AuditEntry, Source, Target};
use crate::secret::{SecretHash, SecretString};
pub use crate::store::grants::CodeGrant;
use crate::store::grants::{
    CodeUse, GrantUser, NewRefreshFamily, Rotation, RotationOutcome, StoredAuthorizationCode,
    StoredRefreshToken,
};
use crate::store::{AuditStore as _, GrantStore as _, NewCode};
use crate::token::pkce::{self, CodeChallenge};
use crate::token::refresh::{self, FamilyId, FamilyRecord, IssuedRefreshToken, RefreshDecision};

/// How long an authorization code can be redeemed (RFC 6749 §4.1.2: short).
pub const AUTHORIZATION_CODE_LIFETIME: SignedDuration = SignedDuration::from_secs(60);

/// Stores the code hashed (single use, 60 s lifetime) and returns the code to send.
pub async fn issue_authorization_code(
    state: &TokenServiceState,
    code: CodeGrant,
) -> Result<String, OAuthError> {
    let code = NewAuthorizationCode::new(state, code)?;
    state.store().insert_authorization_code(&code.stored()).await?;
    Ok(code.value.expose().to_owned())
}

/// A code made but not stored yet: the value to send, and what the store
/// keeps of it (for callers that store it with other writes).
pub struct NewAuthorizationCode {
    pub value: SecretString,
    hash: SecretHash,
    grant: CodeGrant,
    created_ms: i64,
    expires_ms: i64,
}

impl NewAuthorizationCode {
    /// A code for `grant` (its PKCE challenge checked), valid from now for
    /// [`AUTHORIZATION_CODE_LIFETIME`].
    pub fn new(state: &TokenServiceState, grant: CodeGrant) -> Result<Self, OAuthError> {
        if let Some(challenge) = &grant.code_challenge {
            CodeChallenge::parse(challenge)?;
        }
        let value = SecretString::generate();
        let now = state.now();
        let expires = now.checked_add(AUTHORIZATION_CODE_LIFETIME).map_err(OAuthError::server)?;
        Ok(Self {
            hash: value.hash(),
            value,
            grant,
            created_ms: now.as_millisecond(),
            expires_ms: expires.as_millisecond(),
        })
    }

    /// The row to store: the hash, never the code.
    pub fn stored(&self) -> NewCode<'_> {
        NewCode {
            hash: &self.hash,
            grant: &self.grant,
            created_ms: self.created_ms,
            expires_ms: self.expires_ms,
        }
    }
}

/// Revokes every refresh token issued to sessions of this session id (end-session).
pub async fn revoke_session_grants(
    state: &TokenServiceState,
    organization: &str,
    session_id: &str,
) -> Result<(), OAuthError> {
    Ok(state.store().revoke_session_grants(organization, session_id, state.now().as_millisecond()).await?)
}

/// The sign-in a code or a refresh-token family carries forward.
#[derive(Clone, Debug)]
pub struct SignIn {
    pub user_id: String,
    pub scope: String,
    pub auth_time: Timestamp,
    pub amr: Vec<String>,
    pub session_id: Option<String>,
}

/// A code redemption as the token endpoint presents it.
pub struct CodeRedemption<'a> {
    pub organization: &'a str,
    pub client_id: &'a str,
    pub code: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
    /// The client must use PKCE (public, or `requirePkce`).
    pub pkce_required: bool,
    /// The `jti` of the access token about to be issued.
    pub access_jti: &'a str,
    pub access_expires: Timestamp,
    /// A refresh-token family to start, when the client gets refresh tokens.
    pub family: Option<(&'a FamilyRecord, &'a IssuedRefreshToken)>,
}

/// A redeemed code: the sign-in it carried and the nonce for the ID token.
#[derive(Clone, Debug)]
pub struct RedeemedCode {
    pub sign_in: SignIn,
    pub nonce: Option<String>,
}

/// RFC 6749 §4.1.3 and RFC 7636 §4.6, once: the code is checked, then marked
/// used and the refresh-token family stored in one transaction. A code that
/// was already used is refused, and what its first redemption issued is
/// revoked (RFC 6749 §4.1.2).
pub async fn redeem_authorization_code(
    state: &TokenServiceState,
    redemption: CodeRedemption<'_>,
) -> Result<RedeemedCode, OAuthError> {
    let code_hash = SecretHash::of(redemption.code);
    let now = state.now();
    // Read again when a concurrent redemption wins: it is used then.
    loop {
        let Some(code) = state.store().find_authorization_code(&code_hash).await? else {
            return Err(OAuthError::invalid_grant("The authorization code is invalid."));
        };
        // Another organization's or another client's code: not ours to burn.
        if code.grant.organization != redemption.organization || code.grant.client_id != redemption.client_id
        {
            return Err(OAuthError::invalid_grant("The authorization code is invalid."));
        }
        if code.used_ms.is_some() {
            tracing::warn!(
                organization = redemption.organization,
                "authorization code used twice; revoking what it issued (audited)"
            );
            state.store().revoke_code_issuance(&code, now.as_millisecond()).await?;
            return Err(OAuthError::invalid_grant("The authorization code was already used."));
        }
        check_code(&code, &redemption, now)?;
        let sign_in = sign_in_of(&code)?;
        let family = redemption.family.map(|(family, first)| NewRefreshFamily {
            family_id: family.family_id.as_str().to_owned(),
            organization: redemption.organization.to_owned(),
            client_id: redemption.client_id.to_owned(),
            user_id: sign_in.user_id.clone(),
            scope: sign_in.scope.clone(),
            auth_time_ms: sign_in.auth_time.as_millisecond(),
            amr: sign_in.amr.clone(),
            session_id: sign_in.session_id.clone(),
            counter: i64::from(family.counter),
            expires_ms: family.expires_at.as_millisecond(),
            first_token_hash: first.hash,
            created_ms: now.as_millisecond(),
        });
        let code_use = CodeUse {
            used_ms: now.as_millisecond(),
            access_jti: redemption.access_jti,
            access_exp_ms: redemption.access_expires.as_millisecond(),
        };
        if state.store().redeem_authorization_code(&code_hash, code_use, family.as_ref()).await? {
            return Ok(RedeemedCode { sign_in, nonce: code.grant.nonce });
        }
    }
}

/// Whether an unused code of this client may be redeemed by this request.
fn check_code(
    code: &StoredAuthorizationCode,
    redemption: &CodeRedemption<'_>,
    now: Timestamp,
) -> Result<(), OAuthError> {
    if now.as_millisecond() >= code.expires_ms {
        return Err(OAuthError::invalid_grant("The authorization code has expired."));
    }
    // RFC 6749 §4.1.3: the same redirect_uri as in the authorization request, exactly.
    if redemption.redirect_uri != Some(code.grant.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant("redirect_uri does not match the authorization request."));
    }
    let challenge = code
        .grant
        .code_challenge
        .as_deref()
        .map(CodeChallenge::parse)
        .transpose()
        .map_err(|_| OAuthError::internal("a stored code challenge is malformed"))?;
    if redemption.pkce_required && challenge.is_none() {
        return Err(OAuthError::invalid_grant("This client must use PKCE; the code was issued without it."));
    }
    pkce::verify(challenge.as_ref(), redemption.code_verifier)?;
    Ok(())
}

fn sign_in_of(code: &StoredAuthorizationCode) -> Result<SignIn, OAuthError> {
    let code = &code.grant;
    Ok(SignIn {
        user_id: code.user_id.clone(),
        scope: code.scope.clone(),
        auth_time: Timestamp::from_millisecond(code.auth_time_ms).map_err(OAuthError::server)?,
        amr: code.amr.clone(),
        session_id: code.session_id.clone(),
    })
}

/// A refresh-token family as stored, with the presented token's counter.
#[derive(Clone, Debug)]
pub struct PresentedRefreshToken {
    pub organization: String,
    pub client_id: String,
    pub family: FamilyRecord,
    pub presented_counter: u32,
    pub sign_in: SignIn,
}

/// A presented refresh token for the refresh grant: its family, and the
/// family's user as the tokens need it, `None` when the user is gone or
/// disabled (read in the same statement: no user read of its own).
#[derive(Clone, Debug)]
pub struct RefreshGrant {
    pub presented: PresentedRefreshToken,
    pub user: Option<TokenUser>,
}

/// Finds the family of a presented refresh token (introspection, revocation).
pub async fn find_refresh_token(
    state: &TokenServiceState,
    presented: &str,
) -> Result<Option<PresentedRefreshToken>, OAuthError> {
    let stored = state.store().find_refresh_token(&SecretHash::of(presented)).await?;
    stored.map(presented_refresh_token).transpose()
}

/// Finds the family of a presented refresh token and its user among the
/// users of `namespace` (the organization's).
pub async fn find_refresh_grant(
    state: &TokenServiceState,
    presented: &str,
    namespace: &str,
) -> Result<Option<RefreshGrant>, OAuthError> {
    let Some((stored, user)) =
        state.store().find_refresh_grant(&SecretHash::of(presented), namespace).await?
    else {
        return Ok(None);
    };
    let presented = presented_refresh_token(stored)?;
    let user = user.map(|user: GrantUser| TokenUser {
        id: presented.sign_in.user_id.clone(),
        name: issue::name_of(
            user.display_name.as_deref(),
            user.given_name.as_deref(),
            user.family_name.as_deref(),
        ),
        user_name: user.user_name,
        email: user.email,
    });
    Ok(Some(RefreshGrant { presented, user }))
}

fn presented_refresh_token(stored: StoredRefreshToken) -> Result<PresentedRefreshToken, OAuthError> {
    let counter =
        |value: i64| u32::try_from(value).map_err(|_| OAuthError::internal("refresh counter out of range"));
    let millis = |ms: i64| Timestamp::from_millisecond(ms).map_err(OAuthError::server);
    Ok(PresentedRefreshToken {
        family: FamilyRecord {
            family_id: FamilyId::from_stored(stored.family_id),
            counter: counter(stored.counter)?,
            revoked: stored.revoked_ms.is_some(),
            expires_at: millis(stored.expires_ms)?,
        },
        presented_counter: counter(stored.presented_counter)?,
        sign_in: SignIn {
            user_id: stored.user_id,
            scope: stored.scope,
            auth_time: millis(stored.auth_time_ms)?,
            amr: stored.amr,
            session_id: stored.session_id,
        },
        organization: stored.organization,
        client_id: stored.client_id,
    })
}

/// RFC 6749 §6 with RFC 9700 §4.14.2 rotation: the presented token's
/// successor, or `invalid_grant` (and, for a replayed token, the whole family
/// revoked and audited).
pub async fn rotate_refresh_token(
    state: &TokenServiceState,
    presented: &PresentedRefreshToken,
) -> Result<IssuedRefreshToken, OAuthError> {
    let now = state.now();
    let family_id = &presented.family.family_id;
    match refresh::decide(&presented.family, presented.presented_counter, now) {
        RefreshDecision::Rotate { next_counter } => {
            let successor = refresh::successor(family_id, next_counter, &mut rand::rng());
            let rotation = Rotation {
                family_id: family_id.as_str().to_owned(),
                presented_counter: i64::from(presented.presented_counter),
                successor_hash: successor.hash,
                now_ms: now.as_millisecond(),
            };
            match state.store().rotate_refresh_token(rotation).await? {
                RotationOutcome::Rotated => Ok(successor),
                // Another request rotated this token first. A client racing
                // itself cannot be told from a thief racing the client (on
                // PostgreSQL a loser may even read the new counter): fail
                // closed, as reuse; the rotation revoked the whole family.
                RotationOutcome::Lost => {
                    audit_lost_race(state, presented).await?;
                    Err(OAuthError::invalid_grant("The refresh token was already used."))
                }
            }
        }
        RefreshDecision::ReuseDetected { revoke_family } => {
            tracing::warn!(
                organization = %presented.organization,
                client_id = %presented.client_id,
                family = %family_id.as_str(),
                "refresh token reused; revoking its whole family"
            );
            // The revocation and its audit event commit together.
            state
                .store()
                .with_audit(presenter(presented))
                .revoke_refresh_family(revoke_family.as_str(), "reuse", now.as_millisecond())
                .await?;
            Err(OAuthError::invalid_grant("The refresh token was already used."))
        }
        RefreshDecision::Expired => Err(OAuthError::invalid_grant("The refresh token has expired.")),
        RefreshDecision::Revoked => Err(OAuthError::invalid_grant("The refresh token was revoked.")),
    }
}

/// Who presented a refresh token: its client, for its user.
fn presenter(presented: &PresentedRefreshToken) -> AuditContext {
    let actor = Actor {
        kind: ActorKind::Client,
        subject: Some(presented.sign_in.user_id.clone()),
        client: Some(presented.client_id.clone()),
        ..Actor::default()
    };
    AuditContext::new(actor, Source::default())
}

/// A rotation that lost a race revoked the family in the group commit that
/// decided it; what that means is recorded here.
async fn audit_lost_race(
    state: &TokenServiceState,
    presented: &PresentedRefreshToken,
) -> Result<(), OAuthError> {
    tracing::warn!(
        organization = %presented.organization,
        client_id = %presented.client_id,
        family = %presented.family.family_id.as_str(),
        "refresh token rotated twice at once; its whole family was revoked"
    );
    let org = state.require_organization(&presented.organization).await?;
    let entry = AuditEntry::failure(
        "refreshToken.reuseDetected",
        Target::new("refreshTokenFamily", Some(presented.family.family_id.as_str()), None),
        "concurrent_rotation",
    )
    .with_details(serde_json::json!({ "client": presented.client_id, "user": presented.sign_in.user_id }));
    state.store().with_audit(presenter(presented)).append_audit(&org.namespace, entry).await?;
    Ok(())
}

/// Revokes a family (RFC 7009 for refresh tokens, logout, admin).
pub async fn revoke_family(
    state: &TokenServiceState,
    family_id: &FamilyId,
    reason: &str,
) -> Result<(), OAuthError> {
    Ok(state.store().revoke_refresh_family(family_id.as_str(), reason, state.now().as_millisecond()).await?)
}

/// Revokes one access token by its `jti` until it would have expired anyway.
pub async fn revoke_access_token(
    state: &TokenServiceState,
    organization: &str,
    jti: &str,
    expires_at: Timestamp,
) -> Result<(), OAuthError> {
    Ok(state.store().revoke_access_token(organization, jti, expires_at.as_millisecond()).await?)
}

/// Whether an access token was revoked before its expiry.
pub async fn is_access_token_revoked(
    state: &TokenServiceState,
    organization: &str,
    jti: &str,
) -> Result<bool, OAuthError> {
    Ok(state.store().is_access_token_revoked(organization, jti).await?)
}
