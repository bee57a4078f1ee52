//! The store, on both backends: every case below runs on SQLite (in memory)
//! and on a real PostgreSQL server started by the harness
//! (`support/postgres.rs`), with a fresh database per case.

#[path = "support/postgres.rs"]
mod postgres;

use std::sync::Arc;
use std::time::Duration;

use portcullis::authz::{Principal, Scope};
use portcullis::secret::SecretString;
use portcullis::store::*;

const ORG: &str = "acme";
/// How long any awaited event may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(15);

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::sqlite_store().await).await;
                }
            )*
        }
        mod postgresql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::postgres_store().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    upsert_is_idempotent,
    stale_generation_is_ignored,
    same_generation_with_another_spec_applies,
    delete_leaves_a_tombstone,
    stale_delete_keeps_the_newer_object,
    recreated_object_replaces_the_old_uid,
    second_organization_in_a_namespace_is_refused,
    every_desired_kind_round_trips,
    signing_keys_round_trip,
    sealed_signing_keys_are_stored_announced_and_kept_by_public_updates,
    rotated_keys_are_served_from_the_store_and_a_foreign_key_encryption_key_changes_nothing,
    users_crud_and_case_insensitive_names,
    user_updates_check_the_version,
    secrets_never_show_in_debug_output,
    mfa_enrolments,
    groups_and_memberships,
    replacing_members_is_all_or_nothing,
    every_commit_is_announced_once_and_rollbacks_never,
    changes_since_catches_up_from_the_log,
    follower_reflects_assignment_changes,
    follower_follows_groups_users_and_roles,
    follower_snapshots_are_never_half_a_transaction,
    follower_keeps_following_while_readers_hold_old_snapshots,
    an_issuer_name_held_by_two_namespaces_serves_neither,
    sso_requests_are_taken_once_by_their_browser_and_expire,
    saml_assertions_are_accepted_once_onto_their_pending_sign_in,
    jit_users_and_provider_groups_feed_the_index_through_group_mappings,
    sso_outcomes_are_counted_per_provider,
    access_directory_lists_groups_members_and_inactive_users,
    throttle_counts_attempts_as_they_begin_even_when_they_begin_together,
    throttle_takes_counts_back_clears_accounts_and_forgets_idle_counters,
    posture_counts_people_factors_and_grants,
);

async fn sqlite_store() -> Store {
    Store::connect("sqlite::memory:").await.expect("open an in-memory SQLite store")
}

async fn postgres_store() -> Store {
    postgres_store_and_url().await.0
}

async fn postgres_store_and_url() -> (Store, String) {
    let url = tokio::task::spawn_blocking(|| postgres::Postgres::shared().create_database())
        .await
        .expect("create a database");
    (Store::connect(&url).await.expect("connect to the test PostgreSQL"), url)
}

// === Builders. ===

fn meta(uid: &str, name: &str, generation: i64) -> ObjectMeta {
    ObjectMeta::new(uid, ORG, name, generation)
}

fn organization(uid: &str, catalog: &[&str]) -> OrganizationRecord {
    let catalog: Vec<String> = catalog.iter().map(|p| p.to_string()).collect();
    OrganizationRecord {
        meta: meta(uid, "acme", 1),
        display_name: "Acme".into(),
        spec_json: serde_json::json!({ "displayName": "Acme", "permissions": catalog }).to_string(),
        catalog,
        workspaces: vec!["eu".into(), "us".into()],
    }
}

fn role(uid: &str, name: &str, generation: i64, permissions: &[&str]) -> RoleRecord {
    let permissions: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
    RoleRecord {
        meta: meta(uid, name, generation),
        scope: RoleScope::Organization,
        spec_json: serde_json::json!({ "permissions": permissions }).to_string(),
        permissions,
        included_roles: Vec::new(),
    }
}

fn assignment(uid: &str, name: &str, kind: PrincipalKind, principal: &str, role: &str) -> AssignmentRecord {
    AssignmentRecord {
        meta: meta(uid, name, 1),
        principal_kind: kind,
        principal_name: principal.into(),
        role: role.into(),
        workspace: None,
        expires_at_ms: None,
        spec_json: serde_json::json!({ "principal": principal, "kind": format!("{kind:?}"), "role": role })
            .to_string(),
    }
}

fn applied(outcome: ApplyOutcome) -> i64 {
    match outcome {
        ApplyOutcome::Applied { seq } => seq,
        other => panic!("expected the write to apply, got {other:?}"),
    }
}

async fn next_notice(subscription: &mut ChangeSubscription) -> Arc<ChangeNotice> {
    match tokio::time::timeout(DEADLINE, subscription.recv()).await {
        Ok(Some(ChangeEvent::Committed(notice))) => notice,
        Ok(other) => panic!("expected a change notice, got {other:?}"),
        Err(_) => panic!("no change notice within {DEADLINE:?}"),
    }
}

async fn next_seq(subscription: &mut ChangeSubscription) -> i64 {
    next_notice(subscription).await.seq
}

async fn snapshot_at(follower: &IndexFollower, seq: i64) -> Arc<IndexSnapshot> {
    let mut snapshots = follower.subscribe();
    let seen = tokio::time::timeout(DEADLINE, snapshots.wait_for(|s| s.seq >= seq))
        .await
        .unwrap_or_else(|_| panic!("the follower did not reach change {seq} within {DEADLINE:?}"))
        .expect("the follower is running");
    Arc::clone(&seen)
}

fn allows(snapshot: &Arc<IndexSnapshot>, user: &str, permission: &str) -> bool {
    let principal = Principal::user(user);
    snapshot.index.check(&principal, permission, &Scope::Organization, 0).is_allowed()
}

// === Desired state. ===

async fn upsert_is_idempotent(store: Store) {
    let viewer = role("uid-viewer", "viewer", 1, &["journeys.read"]);
    applied(store.apply(&viewer).await.unwrap());
    assert_eq!(store.apply(&viewer).await.unwrap(), ApplyOutcome::Unchanged);
    assert_eq!(store.get::<RoleRecord>(ORG, "viewer").await.unwrap(), Some(viewer.clone()));
    assert_eq!(store.list::<RoleRecord>(ORG).await.unwrap(), vec![viewer]);
}

async fn stale_generation_is_ignored(store: Store) {
    let newer = role("uid-editor", "editor", 3, &["journeys.read", "journeys.publish"]);
    applied(store.apply(&newer).await.unwrap());
    let older = role("uid-editor", "editor", 2, &["journeys.read"]);
    assert_eq!(store.apply(&older).await.unwrap(), ApplyOutcome::Stale { stored_generation: 3 });
    assert_eq!(store.get::<RoleRecord>(ORG, "editor").await.unwrap(), Some(newer));
}

async fn same_generation_with_another_spec_applies(store: Store) {
    // Writers without generations (standalone mode) keep generation 1.
    applied(store.apply(&role("uid-r", "r", 1, &["journeys.read"])).await.unwrap());
    let changed = role("uid-r", "r", 1, &["journeys.publish"]);
    applied(store.apply(&changed).await.unwrap());
    assert_eq!(store.get::<RoleRecord>(ORG, "r").await.unwrap(), Some(changed));
}

async fn delete_leaves_a_tombstone(store: Store) {
    let viewer = role("uid-viewer", "viewer", 1, &["journeys.read"]);
    applied(store.apply(&viewer).await.unwrap());
    assert!(matches!(
        store.delete::<RoleRecord>(&meta("uid-viewer", "viewer", 2)).await.unwrap(),
        DeleteOutcome::Deleted { .. }
    ));
    assert_eq!(store.get::<RoleRecord>(ORG, "viewer").await.unwrap(), None);

    // A replayed write from before the delete does not bring it back.
    assert_eq!(store.apply(&viewer).await.unwrap(), ApplyOutcome::Deleted { deleted_generation: 2 });
    assert_eq!(store.get::<RoleRecord>(ORG, "viewer").await.unwrap(), None);

    // A delete of something never stored still blocks its late creation.
    assert_eq!(
        store.delete::<RoleRecord>(&meta("uid-ghost", "ghost", 1)).await.unwrap(),
        DeleteOutcome::Absent
    );
    assert_eq!(
        store.apply(&role("uid-ghost", "ghost", 1, &["journeys.read"])).await.unwrap(),
        ApplyOutcome::Deleted { deleted_generation: 1 }
    );
    // Deleting twice is fine.
    assert_eq!(
        store.delete::<RoleRecord>(&meta("uid-viewer", "viewer", 2)).await.unwrap(),
        DeleteOutcome::Absent
    );
    // Purged tombstones are forgotten.
    assert_eq!(store.purge_tombstones(i64::MAX).await.unwrap(), 2);
}

async fn stale_delete_keeps_the_newer_object(store: Store) {
    let current = role("uid-r", "r", 5, &["journeys.read"]);
    applied(store.apply(&current).await.unwrap());
    assert_eq!(
        store.delete::<RoleRecord>(&meta("uid-r", "r", 4)).await.unwrap(),
        DeleteOutcome::Stale { stored_generation: 5 }
    );
    assert_eq!(store.get::<RoleRecord>(ORG, "r").await.unwrap(), Some(current));
}

async fn recreated_object_replaces_the_old_uid(store: Store) {
    applied(store.apply(&role("uid-old", "viewer", 7, &["journeys.read"])).await.unwrap());
    let mut changes = store.subscribe().await.unwrap();
    let recreated = role("uid-new", "viewer", 1, &["journeys.read", "journeys.publish"]);
    applied(store.apply(&recreated).await.unwrap());
    assert_eq!(store.get::<RoleRecord>(ORG, "viewer").await.unwrap(), Some(recreated));
    assert_eq!(store.list_uids::<RoleRecord>(ORG).await.unwrap(), vec!["uid-new".to_owned()]);
    // Both are announced in one notice; the old uid is tombstoned.
    let notice = next_notice(&mut changes).await;
    let uids: Vec<&str> = notice
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Resource { uid, .. } => Some(uid.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(uids, ["uid-old", "uid-new"]);
    assert_eq!(
        store.apply(&role("uid-old", "viewer", 7, &["journeys.read"])).await.unwrap(),
        ApplyOutcome::Deleted { deleted_generation: 7 }
    );
}

async fn second_organization_in_a_namespace_is_refused(store: Store) {
    applied(store.apply(&organization("uid-org", &["journeys.read"])).await.unwrap());
    let mut other = organization("uid-other", &["journeys.read"]);
    other.meta.name = "acme-two".into();
    let error = store.apply(&other).await.unwrap_err();
    assert!(
        matches!(error, StoreError::OrganizationConflict { ref existing, .. } if existing == "acme"),
        "{error}"
    );
    assert_eq!(store.list::<OrganizationRecord>(ORG).await.unwrap().len(), 1);
}

async fn every_desired_kind_round_trips(store: Store) {
    let org = organization("uid-org", &["journeys.read", "journeys.publish"]);
    applied(store.apply(&org).await.unwrap());
    assert_eq!(store.get::<OrganizationRecord>(ORG, "acme").await.unwrap(), Some(org));

    let mut composite = role("uid-admin", "admin", 1, &["journeys.*"]);
    composite.scope = RoleScope::Workspace;
    composite.included_roles = vec!["viewer".into()];
    applied(store.apply(&composite).await.unwrap());
    assert_eq!(store.get_by_uid::<RoleRecord>("uid-admin").await.unwrap(), Some(composite));

    let mut grant = assignment("uid-ra", "ra", PrincipalKind::Group, "Editors", "admin");
    grant.workspace = Some("eu".into());
    grant.expires_at_ms = Some(1_900_000_000_123);
    applied(store.apply(&grant).await.unwrap());
    assert_eq!(store.get::<AssignmentRecord>(ORG, "ra").await.unwrap(), Some(grant));

    let idp = IdentityProviderRecord {
        meta: meta("uid-idp", "okta", 1),
        protocol: "oidc".into(),
        stage: "Testing".into(),
        email_domains: vec!["acme.com".into()],
        scim_enabled: true,
        spec_json: r#"{"type":"oidc"}"#.into(),
    };
    applied(store.apply(&idp).await.unwrap());
    assert_eq!(store.get::<IdentityProviderRecord>(ORG, "okta").await.unwrap(), Some(idp));

    let client = OAuthClientRecord {
        meta: meta("uid-client", "portal", 1),
        client_type: "confidential".into(),
        redirect_uris: vec!["https://portal.acme.com/callback".into()],
        spec_json: r#"{"type":"confidential"}"#.into(),
        secret_hash: None,
    };
    applied(store.apply(&client).await.unwrap());
    let hash = SecretString::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA");
    assert!(store.set_oauth_client_secret_hash(ORG, "portal", Some(&hash)).await.unwrap());
    assert!(!store.set_oauth_client_secret_hash(ORG, "nobody", Some(&hash)).await.unwrap());
    // A later spec write keeps the secret hash.
    let mut updated = client.clone();
    updated.meta.generation = 2;
    updated.redirect_uris.push("https://portal.acme.com/other".into());
    applied(store.apply(&updated).await.unwrap());
    let stored = store.get::<OAuthClientRecord>(ORG, "portal").await.unwrap().unwrap();
    assert_eq!(stored.redirect_uris, updated.redirect_uris);
    assert_eq!(stored.secret_hash, Some(hash));

    // Other namespaces are other organizations.
    assert!(store.list::<RoleRecord>("globex").await.unwrap().is_empty());
}

async fn signing_keys_round_trip(store: Store) {
    let mut key = SigningKeyRecord {
        organization: ORG.into(),
        kid: "k1".into(),
        algorithm: "ES256".into(),
        state: SigningKeyState::Next,
        public_jwk: r#"{"kty":"EC","crv":"P-256","x":"x","y":"y","kid":"k1"}"#.into(),
        created_ms: 1_000,
        activates_ms: Some(2_000),
        retires_ms: None,
    };
    store.put_signing_key(&key).await.unwrap();
    key.state = SigningKeyState::Active;
    store.put_signing_key(&key).await.unwrap();
    assert_eq!(store.list_signing_keys(ORG).await.unwrap(), vec![key]);
    assert!(store.delete_signing_key(ORG, "k1").await.unwrap());
    assert!(!store.delete_signing_key(ORG, "k1").await.unwrap());
    assert!(store.list_signing_keys(ORG).await.unwrap().is_empty());
}

async fn sealed_signing_keys_are_stored_announced_and_kept_by_public_updates(store: Store) {
    let mut changes = store.subscribe().await.unwrap();
    let mut key = SigningKeyRecord {
        organization: ORG.into(),
        kid: "k1".into(),
        algorithm: "ES256".into(),
        state: SigningKeyState::Active,
        public_jwk: r#"{"kty":"EC","kid":"k1"}"#.into(),
        created_ms: 1_000,
        activates_ms: Some(1_000),
        retires_ms: None,
    };
    store.put_sealed_signing_key(&key, "v1.abc.sealed-one").await.unwrap();
    let notice = next_notice(&mut changes).await;
    assert_eq!(notice.changes, [Change::SigningKey { organization: ORG.into(), kid: "k1".into() }]);
    let stored = store.sealed_signing_keys(ORG).await.unwrap();
    assert_eq!(
        stored,
        vec![SealedSigningKey { record: key.clone(), sealed: Some("v1.abc.sealed-one".into()) }]
    );

    // A public-only write (an earlier operator) keeps the sealed half.
    key.state = SigningKeyState::Retiring;
    store.put_signing_key(&key).await.unwrap();
    let stored = store.sealed_signing_keys(ORG).await.unwrap();
    assert_eq!(
        (stored[0].record.state, stored[0].sealed.as_deref()),
        (SigningKeyState::Retiring, Some("v1.abc.sealed-one"))
    );
    // A row written public-only has no sealed half.
    store
        .put_signing_key(&SigningKeyRecord { kid: "k0".into(), created_ms: 500, ..key.clone() })
        .await
        .unwrap();
    let stored = store.sealed_signing_keys(ORG).await.unwrap();
    assert_eq!(
        stored.iter().map(|k| (k.record.kid.as_str(), k.sealed.is_some())).collect::<Vec<_>>(),
        [("k0", false), ("k1", true)]
    );
    assert!(store.sealed_signing_keys("globex").await.unwrap().is_empty());
    assert!(store.delete_signing_key(ORG, "k1").await.unwrap());
    assert_eq!(store.sealed_signing_keys(ORG).await.unwrap().len(), 1);
}

async fn rotated_keys_are_served_from_the_store_and_a_foreign_key_encryption_key_changes_nothing(
    store: Store,
) {
    use portcullis::resources::signing_keys::{self, KeysProblem};
    use portcullis::sealing::{KeyEncryptionKey, KeyRing};
    use portcullis::token::keys::{Algorithm, RotationPolicy};

    let ring =
        || KeyRing::from(KeyEncryptionKey::from_text(&KeyEncryptionKey::generate_text().unwrap()).unwrap());
    let kek_text = KeyEncryptionKey::generate_text().unwrap();
    let kek = KeyRing::from(KeyEncryptionKey::from_text(&kek_text).unwrap());
    let policy = RotationPolicy::new(
        Algorithm::ES256,
        jiff::SignedDuration::from_hours(720),
        jiff::SignedDuration::from_hours(24),
    )
    .unwrap();
    let now = jiff::Timestamp::now();
    let first = signing_keys::rotate(&store, &kek, ORG, &Default::default(), &policy, now).await.unwrap();
    let kid = first.created.clone().expect("a new organization gets a key");
    // Another replica, with the same key-encryption key, serves the same keys.
    let served = signing_keys::serving_key_set(&store, &kek, ORG, None).await.unwrap();
    assert_eq!(served.jwks(), first.keys.jwks());
    assert_eq!(served.signing_key().map(|k| k.kid()), Some(kid.as_str()));
    // Nothing in the store is the private key in the clear.
    let row = &store.sealed_signing_keys(ORG).await.unwrap()[0];
    let pem = first.keys.keys()[0].to_pkcs8_pem();
    assert!(!row.sealed.as_deref().unwrap_or_default().contains(pem.lines().nth(1).unwrap()));

    // Another key-encryption key opens nothing, and a pass with it changes nothing.
    let stranger = ring();
    assert!(signing_keys::serving_key_set(&store, &stranger, ORG, None).await.unwrap().keys().is_empty());
    let refused =
        signing_keys::rotate(&store, &stranger, ORG, &Default::default(), &policy, now).await.unwrap_err();
    assert!(matches!(refused, KeysProblem::Sealed { .. }), "{refused}");
    assert_eq!(store.sealed_signing_keys(ORG).await.unwrap().len(), 1, "no key deleted nor generated");

    // Keys of an earlier version's Secret are taken into an empty store.
    let exported = signing_keys::secret_data(&first.keys);
    let other_org = "globex";
    let imported = signing_keys::rotate(&store, &kek, other_org, &exported, &policy, now).await.unwrap();
    assert_eq!(imported.imported, vec![kid.clone()]);
    assert_eq!(imported.created, None);
    assert_eq!(
        signing_keys::serving_key_set(&store, &kek, other_org, None).await.unwrap().jwks(),
        first.keys.jwks()
    );

    // The key-encryption key rotated: a pass re-seals every key under the new
    // one. A replica that holds only the old one keeps the keys it opened
    // before (the same keys, in the same state) instead of losing them; a
    // fresh one without them opens nothing.
    let new_kek = KeyEncryptionKey::from_text(&KeyEncryptionKey::generate_text().unwrap()).unwrap();
    let new_id = new_kek.id().to_owned();
    let old_kek = KeyEncryptionKey::from_text(&kek_text).unwrap();
    let rotated = KeyRing::new(new_kek, vec![old_kek]);
    signing_keys::rotate(&store, &rotated, ORG, &Default::default(), &policy, now).await.unwrap();
    let rows = store.sealed_signing_keys(ORG).await.unwrap();
    assert!(rows.iter().all(|row| row.sealed.as_deref().unwrap().starts_with(&format!("v1.{new_id}."))));
    let held = signing_keys::serving_key_set(&store, &kek, ORG, Some(&served)).await.unwrap();
    assert_eq!(held.jwks(), first.keys.jwks());
    assert_eq!(held.signing_key().map(|k| k.kid()), Some(kid.as_str()));
    assert!(signing_keys::serving_key_set(&store, &kek, ORG, None).await.unwrap().keys().is_empty());
}

// === Identities. ===

fn new_user(name: &str) -> NewUser {
    NewUser {
        display_name: Some(format!("{name} Example")),
        emails: vec![Email::primary(format!("{name}@acme.com"))],
        ..NewUser::new(ORG, name, UserSource::Scim)
    }
}

async fn users_crud_and_case_insensitive_names(store: Store) {
    let alice = store.create_user(&new_user("Alice")).await.unwrap();
    assert_eq!(alice.user_name, "Alice");
    assert_eq!(alice.version, 1);
    assert_eq!(store.get_user(ORG, &alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.find_user_by_name(ORG, "aLiCe").await.unwrap(), Some(alice.clone()));
    assert_eq!(store.find_users_by_email(ORG, "ALICE@acme.com").await.unwrap(), vec![alice.clone()]);
    // Another organization does not see her, and may have its own Alice.
    assert_eq!(store.get_user("globex", &alice.id).await.unwrap(), None);
    store.create_user(&NewUser::new("globex", "alice", UserSource::Local)).await.unwrap();

    let error = store.create_user(&new_user("ALICE")).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::AlreadyExists { what: "userName", value, .. } if value == "ALICE"),
        "{error:?}"
    );
    assert!(error.is_conflict());

    let bob = store
        .create_user(&NewUser { external_id: Some("okta-00u1".into()), ..new_user("bob") })
        .await
        .unwrap();
    assert_eq!(
        store.find_user_by_external_id(ORG, "okta-00u1").await.unwrap().map(|u| u.id),
        Some(bob.id.clone())
    );
    assert_eq!(store.count_users(ORG).await.unwrap(), 2);
    let page: Vec<String> =
        store.list_users(ORG, 0, 10).await.unwrap().into_iter().map(|u| u.user_name).collect();
    assert_eq!(page, ["Alice", "bob"]);
    assert_eq!(store.list_users(ORG, 1, 10).await.unwrap().len(), 1);

    store.set_user_active(ORG, &bob.id, false).await.unwrap();
    store.record_login(ORG, &bob.id, 1_234).await.unwrap();
    let bob_now = store.get_user(ORG, &bob.id).await.unwrap().unwrap();
    assert!(!bob_now.active);
    assert_eq!(bob_now.last_login_ms, Some(1_234));

    assert!(store.delete_user(ORG, &bob.id).await.unwrap());
    assert!(!store.delete_user(ORG, &bob.id).await.unwrap());
    assert!(matches!(store.set_user_active(ORG, &bob.id, true).await, Err(StoreError::NotFound { .. })));
}

async fn user_updates_check_the_version(store: Store) {
    let alice = store.create_user(&new_user("alice")).await.unwrap();
    store.create_user(&new_user("bob")).await.unwrap();

    let mut update = UserUpdate::from(&alice);
    update.display_name = Some("Alice Liddell".into());
    update.emails = vec![Email::primary("alice@wonderland.example"), Email::primary("al@acme.com")];
    let updated = store.update_user(ORG, &alice.id, &update, Some(alice.version)).await.unwrap();
    assert_eq!(updated.version, alice.version + 1);
    assert_eq!(updated.display_name.as_deref(), Some("Alice Liddell"));
    assert_eq!(updated.emails.len(), 2);
    assert!(store.find_users_by_email(ORG, "alice@acme.com").await.unwrap().is_empty());

    // Writing with the version read before that update loses.
    let error = store.update_user(ORG, &alice.id, &update, Some(alice.version)).await.unwrap_err();
    assert!(matches!(error, StoreError::VersionMismatch { expected: 1, found: 2, .. }), "{error:?}");

    // Renaming onto a taken name is refused, whatever the case.
    update.user_name = "BOB".into();
    let error = store.update_user(ORG, &alice.id, &update, None).await.unwrap_err();
    assert!(matches!(error, StoreError::AlreadyExists { what: "userName", .. }), "{error:?}");
    let error = store.update_user(ORG, "no-such-id", &update, None).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound { what: "user", .. }), "{error:?}");
}

async fn secrets_never_show_in_debug_output(store: Store) {
    let secret = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$c2VjcmV0aGFzaA";
    let user = store
        .create_user(&NewUser { password_hash: Some(SecretString::new(secret)), ..new_user("carol") })
        .await
        .unwrap();
    assert_eq!(user.password_hash.as_ref().map(SecretString::expose), Some(secret));
    let printed = format!("{user:?}");
    assert!(!printed.contains("c2VjcmV0aGFzaA"), "{printed}");
    assert!(printed.contains("<redacted>"), "{printed}");

    let sealed = SecretString::new("sealed:totp-secret-ciphertext");
    let factor = store
        .add_mfa_enrolment(ORG, &user.id, Some("phone"), &MfaFactor::Totp { sealed_secret: sealed }, 5)
        .await
        .unwrap();
    assert!(!format!("{factor:?}").contains("ciphertext"));
    store.set_password_hash(ORG, &user.id, None).await.unwrap();
    assert_eq!(store.get_user(ORG, &user.id).await.unwrap().unwrap().password_hash, None);
}

async fn mfa_enrolments(store: Store) {
    let alice = store.create_user(&new_user("alice")).await.unwrap();
    let key =
        MfaFactor::WebAuthn { credential_id: "cred-1".into(), public_key: "pQECAyYg".into(), sign_count: 0 };
    let enrolment = store.add_mfa_enrolment(ORG, &alice.id, Some("YubiKey"), &key, 10).await.unwrap();
    let error = store.add_mfa_enrolment(ORG, &alice.id, None, &key, 11).await.unwrap_err();
    assert!(matches!(error, StoreError::AlreadyExists { what: "WebAuthn credential", .. }), "{error:?}");
    let error = store.add_mfa_enrolment(ORG, "nobody", None, &key, 11).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound { what: "user", .. }), "{error:?}");

    assert!(store.record_mfa_use(ORG, &enrolment.id, Some(7), 20).await.unwrap());
    let listed = store.list_mfa_enrolments(ORG, &alice.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_ms, Some(20));
    assert!(matches!(listed[0].factor, MfaFactor::WebAuthn { sign_count: 7, .. }));
    // Not reachable from another organization.
    assert!(!store.delete_mfa_enrolment("globex", &enrolment.id).await.unwrap());
    assert!(store.delete_mfa_enrolment(ORG, &enrolment.id).await.unwrap());
    assert!(store.list_mfa_enrolments(ORG, &alice.id).await.unwrap().is_empty());
}

fn new_group(name: &str) -> NewGroup {
    NewGroup {
        organization: ORG.into(),
        display_name: name.into(),
        source: GroupSource::Idp,
        external_id: None,
    }
}

async fn groups_and_memberships(store: Store) {
    let editors = store.create_group(&new_group("Editors")).await.unwrap();
    let error = store.create_group(&new_group("editors")).await.unwrap_err();
    assert!(matches!(error, StoreError::AlreadyExists { what: "group displayName", .. }), "{error:?}");
    let alice = store.create_user(&new_user("alice")).await.unwrap();
    let bob = store.create_user(&new_user("bob")).await.unwrap();

    assert!(store.add_member(ORG, &editors.id, &alice.id).await.unwrap());
    assert!(!store.add_member(ORG, &editors.id, &alice.id).await.unwrap(), "already a member");
    assert!(store.add_member(ORG, &editors.id, &bob.id).await.unwrap());
    let error = store.add_member(ORG, &editors.id, "nobody").await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound { what: "user", .. }), "{error:?}");
    // A user of another organization cannot join.
    let stranger = store.create_user(&NewUser::new("globex", "eve", UserSource::Local)).await.unwrap();
    assert!(store.add_member(ORG, &editors.id, &stranger.id).await.is_err());

    assert_eq!(store.count_members(ORG, &editors.id).await.unwrap(), 2);
    let members: Vec<String> =
        store.list_members(ORG, &editors.id, 0, 10).await.unwrap().into_iter().map(|m| m.user_name).collect();
    assert_eq!(members, ["alice", "bob"]);
    assert_eq!(store.groups_of_user(ORG, &alice.id).await.unwrap().len(), 1);
    // Membership changes move the group's ETag.
    assert!(store.get_group(ORG, &editors.id).await.unwrap().unwrap().version > editors.version);

    assert!(store.remove_member(ORG, &editors.id, &bob.id).await.unwrap());
    assert!(!store.remove_member(ORG, &editors.id, &bob.id).await.unwrap());

    // Deleting a user ends its memberships.
    store.delete_user(ORG, &alice.id).await.unwrap();
    assert_eq!(store.count_members(ORG, &editors.id).await.unwrap(), 0);

    let renamed = store.update_group(ORG, &editors.id, "Publishers", Some("okta-g1"), None).await.unwrap();
    assert_eq!(store.find_group_by_name(ORG, "publishers").await.unwrap(), Some(renamed.clone()));
    store.create_group(&new_group("Viewers")).await.unwrap();
    let error = store.update_group(ORG, &editors.id, "VIEWERS", None, None).await.unwrap_err();
    assert!(matches!(error, StoreError::AlreadyExists { .. }), "{error:?}");
    let error = store.update_group(ORG, &editors.id, "Other", None, Some(editors.version)).await.unwrap_err();
    assert!(matches!(error, StoreError::VersionMismatch { .. }), "{error:?}");
    assert_eq!(store.count_groups(ORG).await.unwrap(), 2);
    assert_eq!(store.list_groups(ORG, 0, 1).await.unwrap()[0].display_name, "Publishers");
    assert!(store.delete_group(ORG, &editors.id).await.unwrap());
    assert_eq!(store.get_group(ORG, &editors.id).await.unwrap(), None);
}

async fn replacing_members_is_all_or_nothing(store: Store) {
    let group = store.create_group(&new_group("Everyone")).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..1_200 {
        ids.push(store.create_user(&new_user(&format!("user{i:04}"))).await.unwrap().id);
    }
    store.replace_members(ORG, &group.id, &ids).await.unwrap();
    assert_eq!(store.count_members(ORG, &group.id).await.unwrap(), 1_200);

    let mut with_unknown = ids[..10].to_vec();
    with_unknown.push("not-a-user".into());
    let error = store.replace_members(ORG, &group.id, &with_unknown).await.unwrap_err();
    assert!(matches!(&error, StoreError::NotFound { id, .. } if id == "not-a-user"), "{error:?}");
    assert_eq!(store.count_members(ORG, &group.id).await.unwrap(), 1_200, "rolled back");

    store.replace_members(ORG, &group.id, &ids[..3]).await.unwrap();
    assert_eq!(store.count_members(ORG, &group.id).await.unwrap(), 3);
}

// === Change notification. ===

async fn every_commit_is_announced_once_and_rollbacks_never(store: Store) {
    let mut changes = store.subscribe().await.unwrap();

    let seq = applied(store.apply(&role("uid-viewer", "viewer", 1, &["journeys.read"])).await.unwrap());
    let notice = next_notice(&mut changes).await;
    assert_eq!(notice.seq, seq);
    assert_eq!(notice.organization, ORG);
    assert_eq!(
        notice.changes,
        [Change::Resource {
            kind: ResourceKind::Role,
            namespace: ORG.into(),
            name: "viewer".into(),
            uid: "uid-viewer".into()
        }]
    );

    // Positions increase (on PostgreSQL they are transaction ids: not consecutive).
    let alice = store.create_user(&new_user("alice")).await.unwrap();
    let notice = next_notice(&mut changes).await;
    assert!(notice.seq > seq);
    let seq = notice.seq;
    assert_eq!(notice.changes, [Change::User { organization: ORG.into(), id: alice.id.clone() }]);

    // Nothing is announced for writes that change nothing or roll back …
    store.apply(&role("uid-viewer", "viewer", 1, &["journeys.read"])).await.unwrap();
    store.create_user(&new_user("ALICE")).await.unwrap_err();
    let group = store.create_group(&new_group("Editors")).await.unwrap();
    store.replace_members(ORG, &group.id, &[alice.id.clone(), "nobody".into()]).await.unwrap_err();
    // … so the next notice is the group's, right after alice's.
    let notice = next_notice(&mut changes).await;
    assert!(notice.seq > seq);
    assert_eq!(notice.changes, [Change::Group { organization: ORG.into(), id: group.id.clone() }]);

    store.add_member(ORG, &group.id, &alice.id).await.unwrap();
    let notice = next_notice(&mut changes).await;
    assert_eq!(
        notice.changes,
        [Change::Membership {
            organization: ORG.into(),
            group_id: group.id.clone(),
            user_id: alice.id.clone()
        }]
    );
    assert_eq!(store.current_seq().await.unwrap(), notice.seq);
    assert!(changes.try_recv().is_none(), "one notice per commit");
}

async fn changes_since_catches_up_from_the_log(store: Store) {
    let a = applied(store.apply(&role("uid-a", "a", 1, &["journeys.read"])).await.unwrap());
    let mut other = role("uid-b", "b", 1, &["journeys.read"]);
    other.meta.namespace = "globex".into();
    let b = applied(store.apply(&other).await.unwrap());
    let c = applied(store.apply(&role("uid-c", "c", 1, &["journeys.read"])).await.unwrap());
    assert!(a < b && b < c, "positions increase: {a}, {b}, {c}");

    // On PostgreSQL the log is read below the oldest transaction running on
    // the server (other tests' too): await it passing ours.
    let horizon_passed = async {
        while store.horizon().await.unwrap() < c {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(DEADLINE, horizon_passed).await.expect("no transaction runs for ever");
    let all = store.changes_since(None, 0).await.unwrap();
    assert_eq!(all.iter().map(|n| n.seq).collect::<Vec<_>>(), [a, b, c]);
    let ours = store.changes_since(Some(ORG), a).await.unwrap();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].seq, c);
    assert_eq!(store.current_seq().await.unwrap(), c);
    assert_eq!(store.prune_change_log(i64::MAX).await.unwrap(), 3);
    assert!(store.changes_since(None, 0).await.unwrap().is_empty());
    assert_eq!(store.current_seq().await.unwrap(), c, "the position survives pruning");
}

// === The follower. ===

async fn seed_tenant(store: &Store) {
    applied(
        store
            .apply(&organization("uid-org", &["journeys.read", "journeys.publish", "users.invite"]))
            .await
            .unwrap(),
    );
    applied(store.apply(&role("uid-viewer", "viewer", 1, &["journeys.read"])).await.unwrap());
    applied(store.apply(&role("uid-publisher", "publisher", 1, &["journeys.publish"])).await.unwrap());
}

async fn follower_reflects_assignment_changes(store: Store) {
    seed_tenant(&store).await;
    let alice = store.create_user(&new_user("Alice")).await.unwrap();
    let follower = IndexFollower::start(store.clone(), ORG).await.unwrap();
    assert!(!allows(&follower.current(), "alice", "journeys.publish"));

    // The assignment names her with other case: names are case-insensitive.
    let grant = assignment("uid-ra", "alice-publishes", PrincipalKind::User, "ALICE", "publisher");
    let seq = applied(store.apply(&grant).await.unwrap());
    let snapshot = snapshot_at(&follower, seq).await;
    assert!(allows(&snapshot, "alice", "journeys.publish"));
    assert!(!allows(&snapshot, "alice", "users.invite"));

    let DeleteOutcome::Deleted { seq } = store.delete::<AssignmentRecord>(&grant.meta).await.unwrap() else {
        panic!("the assignment was stored")
    };
    assert!(!allows(&snapshot_at(&follower, seq).await, "alice", "journeys.publish"));
    assert_eq!(store.get_user(ORG, &alice.id).await.unwrap().map(|u| u.user_name).as_deref(), Some("Alice"));
}

async fn follower_follows_groups_users_and_roles(store: Store) {
    seed_tenant(&store).await;
    let alice = store.create_user(&new_user("alice")).await.unwrap();
    let editors = store.create_group(&new_group("Editors")).await.unwrap();
    let seq = applied(
        store
            .apply(&assignment("uid-ra", "editors-publish", PrincipalKind::Group, "editors", "publisher"))
            .await
            .unwrap(),
    );
    let follower = IndexFollower::start(store.clone(), ORG).await.unwrap();
    assert!(!allows(&snapshot_at(&follower, seq).await, "alice", "journeys.publish"));

    let mut changes = store.subscribe().await.unwrap();

    store.add_member(ORG, &editors.id, &alice.id).await.unwrap();
    assert!(allows(&snapshot_at(&follower, next_seq(&mut changes).await).await, "alice", "journeys.publish"));

    // Role change: the group's grant now gives more.
    applied(
        store
            .apply(&role("uid-publisher", "publisher", 2, &["journeys.publish", "users.invite"]))
            .await
            .unwrap(),
    );
    assert!(allows(&snapshot_at(&follower, next_seq(&mut changes).await).await, "alice", "users.invite"));

    // Deactivation wins over group grants.
    store.set_user_active(ORG, &alice.id, false).await.unwrap();
    assert!(!allows(
        &snapshot_at(&follower, next_seq(&mut changes).await).await,
        "alice",
        "journeys.publish"
    ));
    store.set_user_active(ORG, &alice.id, true).await.unwrap();
    assert!(allows(&snapshot_at(&follower, next_seq(&mut changes).await).await, "alice", "journeys.publish"));

    // Renaming the group away from the assignment's name takes the grant away.
    store.update_group(ORG, &editors.id, "Writers", None, None).await.unwrap();
    assert!(!allows(
        &snapshot_at(&follower, next_seq(&mut changes).await).await,
        "alice",
        "journeys.publish"
    ));
    store.update_group(ORG, &editors.id, "EDITORS", None, None).await.unwrap();
    assert!(allows(&snapshot_at(&follower, next_seq(&mut changes).await).await, "alice", "journeys.publish"));

    // Renaming the user keeps her memberships under the new name.
    let mut update = UserUpdate::from(&alice);
    update.user_name = "alice.liddell".into();
    store.update_user(ORG, &alice.id, &update, None).await.unwrap();
    let snapshot = snapshot_at(&follower, next_seq(&mut changes).await).await;
    assert!(allows(&snapshot, "alice.liddell", "journeys.publish"));
    assert!(!allows(&snapshot, "alice", "journeys.publish"));

    // Replacing the members wholesale, then deleting the group.
    store.replace_members(ORG, &editors.id, &[]).await.unwrap();
    assert!(!allows(
        &snapshot_at(&follower, next_seq(&mut changes).await).await,
        "alice.liddell",
        "journeys.publish"
    ));
    store.replace_members(ORG, &editors.id, std::slice::from_ref(&alice.id)).await.unwrap();
    assert!(allows(
        &snapshot_at(&follower, next_seq(&mut changes).await).await,
        "alice.liddell",
        "journeys.publish"
    ));
    store.delete_group(ORG, &editors.id).await.unwrap();
    assert!(!allows(
        &snapshot_at(&follower, next_seq(&mut changes).await).await,
        "alice.liddell",
        "journeys.publish"
    ));

    // The catalog comes from the Organization: a permission it drops grants nothing.
    applied(
        store
            .apply(&assignment("uid-ra2", "alice-view", PrincipalKind::User, "alice.liddell", "viewer"))
            .await
            .unwrap(),
    );
    assert!(allows(
        &snapshot_at(&follower, next_seq(&mut changes).await).await,
        "alice.liddell",
        "journeys.read"
    ));
    let mut smaller = organization("uid-org", &["journeys.publish"]);
    smaller.meta.generation = 2;
    applied(store.apply(&smaller).await.unwrap());
    assert!(!allows(
        &snapshot_at(&follower, next_seq(&mut changes).await).await,
        "alice.liddell",
        "journeys.read"
    ));
}

async fn follower_snapshots_are_never_half_a_transaction(store: Store) {
    // Recreating an assignment under the same name with another role is one
    // transaction with two changes (old uid gone, new uid there). Every
    // snapshot a reader sees has exactly one of the two roles' permissions.
    seed_tenant(&store).await;
    applied(
        store
            .apply(&assignment("uid-0", "alice-access", PrincipalKind::User, "alice", "viewer"))
            .await
            .unwrap(),
    );
    let follower = IndexFollower::start(store.clone(), ORG).await.unwrap();
    let mut snapshots = follower.subscribe();
    let checker = tokio::spawn(async move {
        let mut seen = 0;
        while snapshots.changed().await.is_ok() {
            let snapshot = Arc::clone(&snapshots.borrow_and_update());
            let read = allows(&snapshot, "alice", "journeys.read");
            let publish = allows(&snapshot, "alice", "journeys.publish");
            assert!(
                read != publish,
                "half a transaction at seq {}: read={read} publish={publish}",
                snapshot.seq
            );
            seen += 1;
        }
        seen
    });
    let mut last = 0;
    for i in 1..=40 {
        let role = if i % 2 == 0 { "viewer" } else { "publisher" };
        last = applied(
            store
                .apply(&assignment(&format!("uid-{i}"), "alice-access", PrincipalKind::User, "alice", role))
                .await
                .unwrap(),
        );
    }
    let snapshot = snapshot_at(&follower, last).await;
    assert!(allows(&snapshot, "alice", "journeys.read"));
    drop(snapshot);
    drop(follower);
    let seen = tokio::time::timeout(DEADLINE, checker).await.expect("checker ends").expect("checker passed");
    assert!(seen > 0);
}

async fn follower_keeps_following_while_readers_hold_old_snapshots(store: Store) {
    seed_tenant(&store).await;
    let follower = IndexFollower::start(store.clone(), ORG).await.unwrap();
    let before = follower.current();
    let mut held = vec![Arc::clone(&before)];
    let mut seq = 0;
    for i in 0..5 {
        seq = applied(
            store
                .apply(&assignment(
                    &format!("uid-{i}"),
                    &format!("ra-{i}"),
                    PrincipalKind::User,
                    &format!("u{i}"),
                    "viewer",
                ))
                .await
                .unwrap(),
        );
        // Readers that keep every snapshot force the follower to reload.
        held.push(snapshot_at(&follower, seq).await);
    }
    // What a reader holds never changes under it.
    assert!(!allows(&before, "u0", "journeys.read"));
    assert!(!allows(&held[1], "u1", "journeys.read"));
    let latest = snapshot_at(&follower, seq).await;
    assert!((0..5).all(|i| allows(&latest, &format!("u{i}"), "journeys.read")));
}

// === Backend-specific. ===

/// What `portcullis diff` reads to expand groups: every group of the
/// organization (an empty one too), its members with their status, and the
/// inactive users; another organization's are not included.
async fn access_directory_lists_groups_members_and_inactive_users(store: Store) {
    let editors = store.create_group(&new_group("Editors")).await.unwrap();
    store.create_group(&new_group("Auditors")).await.unwrap();
    let mut ids = Vec::new();
    for (name, active) in [("carol", true), ("alice", false), ("Bob", true), ("dave", false)] {
        ids.push(store.create_user(&NewUser { active, ..new_user(name) }).await.unwrap().id);
    }
    store.replace_members(ORG, &editors.id, &ids[..3]).await.unwrap();
    let other = NewGroup { organization: "globex".into(), ..new_group("Editors") };
    let other = store.create_group(&other).await.unwrap();
    let stranger = store.create_user(&NewUser::new("globex", "eve", UserSource::Scim)).await.unwrap();
    store.add_member("globex", &other.id, &stranger.id).await.unwrap();

    let directory = store.access_directory(ORG).await.unwrap();
    let member = |user_name: &str, active| DirectoryMember { user_name: user_name.into(), active };
    assert_eq!(
        directory,
        AccessDirectory {
            groups: vec![
                DirectoryGroup { display_name: "Auditors".into(), members: vec![] },
                DirectoryGroup {
                    display_name: "Editors".into(),
                    members: vec![member("alice", false), member("Bob", true), member("carol", true)],
                },
            ],
            inactive_users: vec!["alice".into(), "dave".into()],
        }
    );
    assert_eq!(store.access_directory("nowhere").await.unwrap(), AccessDirectory::default());
}

/// A read-only tool's connection changes nothing: an empty database is
/// refused as having no schema and left empty, a migrated one is read.
async fn connect_existing_never_migrates(url: &str, tables: impl AsyncFn() -> usize) {
    let error = Store::connect_existing(url).await.unwrap_err();
    assert!(matches!(error, StoreError::NoSchema { .. }), "{error:?}");
    assert_eq!(tables().await, 0, "nothing was created");
    Store::connect(url).await.unwrap().close().await;
    let store = Store::connect_existing(url).await.expect("a migrated store is read");
    assert_eq!(store.access_directory(ORG).await.unwrap(), AccessDirectory::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_connect_existing_never_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let url = format!("sqlite://{}", path.display());
    connect_existing_never_migrates(&url, async || std::fs::metadata(&path).unwrap().len() as usize).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connect_existing_never_migrates() {
    let url = tokio::task::spawn_blocking(|| postgres::Postgres::shared().create_database()).await.unwrap();
    let count = async || {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
                .fetch_one(&pool)
                .await
                .unwrap();
        pool.close().await;
        n as usize
    };
    connect_existing_never_migrates(&url, count).await;
}

/// A store that a newer version migrated (a migration this binary does not
/// know is recorded as applied) is still opened and served: a rollback, or
/// an old replica restarting during a rolling upgrade, keeps working.
async fn a_store_migrated_by_a_newer_version_is_still_served(url: &str, record_newer: impl AsyncFn()) {
    let store = Store::connect(url).await.unwrap();
    applied(store.apply(&role("uid-viewer", "viewer", 1, &["journeys.read"])).await.unwrap());
    store.close().await;
    record_newer().await;
    let reopened = Store::connect(url).await.expect("an older binary opens a newer schema");
    assert!(reopened.get::<RoleRecord>(ORG, "viewer").await.unwrap().is_some(), "and reads what was there");
}

/// The rule that makes the above safe (docs/upgrading.md): from version 17
/// on, a migration only adds. Removing or renaming what an older version
/// reads takes two releases: stop reading it, then drop it.
#[test]
fn migrations_only_add() {
    let forbidden = regex::Regex::new(
        r"(?i)\b(drop\s+(table|column)|rename\s|alter\s+column\s+\w+\s+(set\s+data\s+)?type)\b",
    )
    .unwrap();
    for backend in ["sqlite", "postgres"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let version: u32 = name.split('_').next().unwrap().parse().unwrap();
            if version < 17 {
                continue;
            }
            let sql = std::fs::read_to_string(&path).unwrap();
            let code: String =
                sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
            assert!(
                forbidden.find(&code).is_none(),
                "{backend}/{name} removes or renames: {:?}",
                forbidden.find(&code)
            );
        }
    }
}

const NEWER_MIGRATION: &str = "INSERT INTO _sqlx_migrations \
     (version, description, success, checksum, execution_time) VALUES (9999, 'from a newer version', TRUE, $1, 1)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_migrated_by_a_newer_version_is_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("portcullis.db").display());
    a_store_migrated_by_a_newer_version_is_still_served(&url, async || {
        let pool = pool_of(&url).await;
        sqlx::query(NEWER_MIGRATION).bind(vec![0u8; 48]).execute(&pool).await.unwrap();
        pool.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_migrated_by_a_newer_version_is_still_served() {
    let url = tokio::task::spawn_blocking(|| postgres::Postgres::shared().create_database()).await.unwrap();
    a_store_migrated_by_a_newer_version_is_still_served(&url, async || {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(NEWER_MIGRATION).bind(vec![0u8; 48]).execute(&pool).await.unwrap();
        pool.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_store_uses_wal_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("portcullis.db").display());
    let store = Store::connect(&url).await.unwrap();
    applied(store.apply(&role("uid-viewer", "viewer", 1, &["journeys.read"])).await.unwrap());
    store.close().await;
    drop(store);
    assert!(dir.path().join("portcullis.db-wal").exists() || dir.path().join("portcullis.db").exists());

    let reopened = Store::connect(&url).await.unwrap();
    assert!(reopened.get::<RoleRecord>(ORG, "viewer").await.unwrap().is_some());
    let mode =
        sqlx::query_scalar::<_, String>("PRAGMA journal_mode").fetch_one(&pool_of(&url).await).await.unwrap();
    assert_eq!(mode, "wal");
}

/// A commit only appends to the write-ahead log; the store's own task copies
/// the log into the database file (`src/store/checkpoint.rs`), so a copy of
/// the file alone, taken while the store runs, soon holds a committed write.
/// Without that task nothing would copy it before the log reached 1,000
/// pages, and then inside some request's commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_store_checkpoints_its_log_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.db");
    let store = Store::connect(&format!("sqlite://{}?mode=rwc", file.display())).await.unwrap();
    applied(store.apply(&role("uid-viewer", "viewer", 1, &["journeys.read"])).await.unwrap());
    let copy = dir.path().join("copy.db");
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        std::fs::copy(&file, &copy).unwrap();
        let pool = pool_of(&format!("sqlite://{}?mode=rw", copy.display())).await;
        // Before the first checkpoint the file may not even hold the tables.
        let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM roles WHERE name = 'viewer'")
            .fetch_one(&pool)
            .await
            .unwrap_or(0);
        pool.close().await;
        if roles == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "the database file never got the committed role");
        for leftover in ["copy.db-wal", "copy.db-shm"] {
            let _ = std::fs::remove_file(dir.path().join(leftover));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(store);
}

async fn pool_of(url: &str) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(url).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_urls_are_refused_without_echoing_them() {
    let error = Store::connect("mysql://root:hunter2@localhost/db").await.unwrap_err();
    assert!(matches!(error, StoreError::UnsupportedUrl { .. }));
    assert!(!error.to_string().contains("hunter2"));
}

/// The two migration sets define the same tables and columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_have_the_same_schema() {
    let sqlite = sqlite_columns().await;
    let url = tokio::task::spawn_blocking(|| postgres::Postgres::shared().create_database()).await.unwrap();
    Store::connect(&url).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%' ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut postgres: Vec<String> = rows.into_iter().map(|(t, c)| format!("{t}.{c}")).collect();
    postgres.sort();
    assert_eq!(sqlite, postgres);
}

async fn sqlite_columns() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("schema.db").display());
    Store::connect(&url).await.unwrap();
    let pool = pool_of(&url).await;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\' ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut columns: Vec<String> = rows.into_iter().map(|(t, c)| format!("{t}.{c}")).collect();
    columns.sort();
    columns
}

/// Changes too large for one NOTIFY payload are announced without them (see
/// `changes::notice_payload`) and read back from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reads_large_notices_from_the_log() {
    let (store, url) = postgres_store_and_url().await;
    let mut changes = store.subscribe().await.unwrap();
    let many: Vec<Change> = (0..200)
        .map(|i| Change::User {
            organization: ORG.into(),
            id: format!("{i:04}-a-user-id-long-enough-to-add-up"),
        })
        .collect();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO change_log (seq, organization, committed_ms, changes) VALUES (1000, $1, 0, $2)")
        .bind(ORG)
        .bind(serde_json::to_string(&many).unwrap())
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("SELECT pg_notify('portcullis_changes', $1)")
        .bind(serde_json::json!({ "seq": 1000, "organization": ORG }).to_string())
        .execute(&pool)
        .await
        .unwrap();
    let notice = next_notice(&mut changes).await;
    assert_eq!(notice.seq, 1000);
    assert_eq!(notice.changes, many);
}

/// A dropped LISTEN connection is re-established; subscribers are told they
/// may have missed notices, and the follower catches up from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_follower_survives_a_dropped_listen_connection() {
    let (store, url) = postgres_store_and_url().await;
    seed_tenant(&store).await;
    let follower = IndexFollower::start(store.clone(), ORG).await.unwrap();
    let mut changes = store.subscribe().await.unwrap();

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(killed.len(), 1, "one LISTEN connection per store");
    match tokio::time::timeout(DEADLINE, changes.recv()).await {
        Ok(Some(ChangeEvent::Missed)) => {}
        other => panic!("expected the subscriber to be told it may have missed notices, got {other:?}"),
    }

    let seq = applied(
        store.apply(&assignment("uid-ra", "ra", PrincipalKind::User, "alice", "viewer")).await.unwrap(),
    );
    assert!(allows(&snapshot_at(&follower, seq).await, "alice", "journeys.read"));
}

/// The token service (`organization_by_name`) and the SCIM service
/// (`scim_token_owner`) resolve an issuer by one rule: a name claimed in two
/// namespaces is nobody's, rather than the first namespace's.
async fn an_issuer_name_held_by_two_namespaces_serves_neither(store: Store) {
    let in_namespace = |namespace: &str, uid: &str| OrganizationRecord {
        meta: ObjectMeta::new(uid, namespace, "acme", 1),
        ..organization(uid, &["journeys.view"])
    };
    let scim_provider = |namespace: &str, uid: &str| IdentityProviderRecord {
        meta: ObjectMeta::new(uid, namespace, "okta", 1),
        protocol: "oidc".into(),
        stage: "Enforced".into(),
        email_domains: vec!["acme.com".into()],
        scim_enabled: true,
        spec_json: "{}".into(),
    };
    let hash = portcullis::secret::SecretHash::of("scim-token").to_string();
    store.apply(&in_namespace("tenant-a", "org-a")).await.unwrap();
    store.apply(&scim_provider("tenant-a", "idp-a")).await.unwrap();
    assert!(store.set_scim_token_hash("tenant-a", "okta", Some(&hash)).await.unwrap());

    let found = store.organization_by_name("acme").await.unwrap().expect("one namespace holds acme");
    assert_eq!(found.meta.namespace, "tenant-a");
    let owner = store.scim_token_owner("acme", &hash).await.unwrap().expect("the token is okta's");
    assert_eq!(owner.namespace, "tenant-a");
    assert_eq!(store.organization_by_name("nobody").await.unwrap(), None);

    // Another tenant claims the same issuer name: both services now refuse it.
    store.apply(&in_namespace("tenant-b", "org-b")).await.unwrap();
    assert_eq!(store.organization_by_name("acme").await.unwrap(), None);
    assert_eq!(store.scim_token_owner("acme", &hash).await.unwrap(), None);
}

fn sso_request(id_hash: &str, now_ms: i64) -> SsoRequest {
    SsoRequest {
        id_hash: id_hash.into(),
        organization: ORG.into(),
        identity_provider: "okta".into(),
        pre_login_hash: "browser-hash".into(),
        saml_request_id: None,
        authorization_request: "[]".into(),
        invitation_hash: None,
        verified_identity: None,
        created_ms: now_ms,
        expires_ms: now_ms + 60_000,
    }
}

async fn sso_requests_are_taken_once_by_their_browser_and_expire(store: Store) {
    let now = 1_000_000;
    let owner = SsoOwner { identity_provider: "okta", pre_login_hash: "browser-hash" };
    store.create_sso_request(&sso_request("state-1", now)).await.unwrap();
    assert_eq!(
        store.find_sso_request(ORG, "state-1", now + 1).await.unwrap(),
        Some(sso_request("state-1", now))
    );
    assert_eq!(store.find_sso_request("globex", "state-1", now + 1).await.unwrap(), None, "another tenant's");
    // Another browser or another provider takes nothing, and leaves it to its own.
    let thief = SsoOwner { pre_login_hash: "another-browser", ..owner };
    assert_eq!(store.take_sso_request(ORG, "state-1", thief, now + 1).await.unwrap(), None);
    let other = SsoOwner { identity_provider: "entra", ..owner };
    assert_eq!(store.take_sso_request(ORG, "state-1", other, now + 1).await.unwrap(), None);
    assert!(store.take_sso_request(ORG, "state-1", owner, now + 1).await.unwrap().is_some());
    assert_eq!(store.take_sso_request(ORG, "state-1", owner, now + 2).await.unwrap(), None, "taken once");

    store.create_sso_request(&sso_request("state-2", now)).await.unwrap();
    assert_eq!(store.find_sso_request(ORG, "state-2", now + 60_001).await.unwrap(), None, "expired");
    assert_eq!(store.take_sso_request(ORG, "state-2", owner, now + 60_001).await.unwrap(), None, "expired");
}

async fn saml_assertions_are_accepted_once_onto_their_pending_sign_in(store: Store) {
    let now = 1_000_000;
    let mut request = sso_request("relay-1", now);
    request.saml_request_id = Some("id-request-1".into());
    store.create_sso_request(&request).await.unwrap();
    let seen = SeenAssertion {
        identity_provider: "okta",
        assertion_id: "id-assertion-1",
        expires_ms: now + 300_000,
    };
    let accepted = store.accept_saml_assertion(ORG, "relay-1", &seen, r#"{"subject":"bob"}"#).await.unwrap();
    assert_eq!(accepted, SamlAcceptance::Accepted);
    let pending = store.find_sso_request(ORG, "relay-1", now + 1).await.unwrap().unwrap();
    assert_eq!(pending.verified_identity.as_deref(), Some(r#"{"subject":"bob"}"#));
    // The same assertion again: a replay, whatever it is posted for.
    let again = store.accept_saml_assertion(ORG, "relay-1", &seen, "{}").await.unwrap();
    assert_eq!(again, SamlAcceptance::Replayed);
    // Another assertion for a sign-in already answered keeps the first identity.
    let second = SeenAssertion { assertion_id: "id-assertion-2", ..seen };
    let late = store.accept_saml_assertion(ORG, "relay-1", &second, "{}").await.unwrap();
    assert_eq!(late, SamlAcceptance::AlreadyAnswered);
    let pending = store.find_sso_request(ORG, "relay-1", now + 1).await.unwrap().unwrap();
    assert_eq!(pending.verified_identity.as_deref(), Some(r#"{"subject":"bob"}"#));
}

async fn jit_users_and_provider_groups_feed_the_index_through_group_mappings(store: Store) {
    seed_tenant(&store).await;
    let spec = serde_json::json!({
        "type": "OIDC",
        "oidc": { "issuer": "https://idp.example", "clientId": "c", "clientSecretRef": { "name": "s" } },
        "emailDomains": ["acme.test"],
        "groupMappings": [{ "group": "Engineering", "role": "publisher" }],
    });
    let provider = IdentityProviderRecord {
        meta: meta("uid-idp", "okta", 1),
        protocol: "oidc".into(),
        stage: "Optional".into(),
        email_domains: vec!["acme.test".into()],
        scim_enabled: false,
        spec_json: spec.to_string(),
    };
    applied(store.apply(&provider).await.unwrap());
    // A group managed here with a name the provider also sends is left alone.
    let local = store.create_group(&new_group("Everyone")).await.unwrap();
    let follower = IndexFollower::start(store.clone(), ORG).await.unwrap();

    let bob = store
        .create_jit_user(&NewUser::new(ORG, "bob@acme.test", UserSource::Jit), "okta", "sub-bob", 5)
        .await
        .unwrap();
    assert_eq!(store.linked_user(ORG, "okta", "sub-bob").await.unwrap().map(|u| u.id), Some(bob.id.clone()));
    assert_eq!(store.linked_user(ORG, "other", "sub-bob").await.unwrap(), None);

    let groups = ["Engineering".to_owned(), "Everyone".to_owned()];
    store.sync_upstream_groups(ORG, "okta", &bob.id, &groups, false).await.unwrap();
    let snapshot = snapshot_at(&follower, store.current_seq().await.unwrap()).await;
    assert!(allows(&snapshot, "bob@acme.test", "journeys.publish"), "Engineering → publisher");
    assert_eq!(
        store.count_members(ORG, &local.id).await.unwrap(),
        0,
        "the local group is not the provider's"
    );

    // Left Engineering upstream: the membership and the role go.
    store.sync_upstream_groups(ORG, "okta", &bob.id, &["Everyone".to_owned()], true).await.unwrap();
    let snapshot = snapshot_at(&follower, store.current_seq().await.unwrap()).await;
    assert!(!allows(&snapshot, "bob@acme.test", "journeys.publish"));

    // The mapping goes with the provider.
    store.sync_upstream_groups(ORG, "okta", &bob.id, &groups, true).await.unwrap();
    assert!(allows(
        &snapshot_at(&follower, store.current_seq().await.unwrap()).await,
        "bob@acme.test",
        "journeys.publish"
    ));
    let DeleteOutcome::Deleted { seq } =
        store.delete::<IdentityProviderRecord>(&provider.meta).await.unwrap()
    else {
        panic!("the provider was stored")
    };
    assert!(!allows(&snapshot_at(&follower, seq).await, "bob@acme.test", "journeys.publish"));
}

async fn sso_outcomes_are_counted_per_provider(store: Store) {
    let hour = 3_600_000;
    let now = 1_000 * hour;
    let outcome = |failure, at_ms, stage| SsoOutcome {
        organization: ORG,
        identity_provider: "okta",
        stage,
        failure,
        at_ms,
    };
    store.record_sso_outcome(&outcome(None, now - 30 * hour, "Testing")).await.unwrap();
    store.record_sso_outcome(&outcome(None, now - hour, "Testing")).await.unwrap();
    store
        .record_sso_outcome(&outcome(Some(("IdTokenInvalid", "nonce")), now - 10, "Optional"))
        .await
        .unwrap();
    store.record_sso_outcome(&outcome(None, now, "Optional")).await.unwrap();
    let health = store.sso_health(ORG, "okta", now).await.unwrap();
    assert_eq!((health.sign_ins_24h, health.failures_24h), (3, 1), "the one 30 hours ago is out");
    assert_eq!(health.stage.as_deref(), Some("Optional"));
    assert_eq!(health.successes_in_stage, 1, "counted again from the stage change");
    assert_eq!(health.last_error_reason.as_deref(), Some("IdTokenInvalid"));
    assert_eq!(health.last_success_ms, Some(now));
    assert_eq!(store.sso_health(ORG, "other", now).await.unwrap(), SsoHealth::default());
}

// === The sign-in throttle's counters. ===

fn throttle_rule(free_failures: u32) -> portcullis::token::throttle::ThrottleRule {
    portcullis::token::throttle::ThrottleRule {
        free_failures,
        base_lockout: Duration::from_secs(10),
        max_lockout: Duration::from_secs(60),
        forget_after: Duration::from_secs(600),
    }
}

fn counter<'a>(
    scope: ThrottleScope,
    subject: &str,
    rule: &'a portcullis::token::throttle::ThrottleRule,
) -> ThrottleCounter<'a> {
    ThrottleCounter { scope, organization: ORG, subject: subject.into(), rule }
}

fn at(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

/// Security review, finding 1, across replicas: twenty attempts at one
/// account begun at once (as from several processes: each its own
/// transaction) are checked and counted one after another, so exactly the
/// free ones and the one that starts the lockout get through.
async fn throttle_counts_attempts_as_they_begin_even_when_they_begin_together(store: Store) {
    use portcullis::token::throttle::ThrottleVerdict;
    let (account, source) = (throttle_rule(3), throttle_rule(100));
    let attempts = (0..20).map(|_| {
        let store = store.clone();
        let (account, source) = (account.clone(), source.clone());
        tokio::spawn(async move {
            let counters = [
                counter(ThrottleScope::Account, "alice", &account),
                counter(ThrottleScope::Source, "10.0.0.1", &source),
            ];
            store.begin_counted(&counters, at(0)).await.unwrap()
        })
    });
    let verdicts: Vec<ThrottleVerdict> =
        futures::future::join_all(attempts).await.into_iter().map(|v| v.unwrap()).collect();
    let allowed = verdicts.iter().filter(|v| **v == ThrottleVerdict::Allowed).count();
    assert_eq!(allowed, 4, "3 free failures and the one that starts the lockout: {verdicts:?}");
    let alice = counter(ThrottleScope::Account, "alice", &account);
    let from = counter(ThrottleScope::Source, "10.0.0.1", &source);
    assert_eq!(store.throttle_failures(&alice).await.unwrap(), 4, "throttled attempts count nothing");
    assert_eq!(store.throttle_failures(&from).await.unwrap(), 4);
    assert_eq!(
        store.begin_counted(std::slice::from_ref(&alice), at(1)).await.unwrap(),
        ThrottleVerdict::Throttled { retry_after: Duration::from_secs(9) },
    );
    let bob = counter(ThrottleScope::Account, "bob", &account);
    assert_eq!(
        store.begin_counted(&[bob, from.clone()], at(1)).await.unwrap(),
        ThrottleVerdict::Allowed,
        "another account from the same source"
    );
    assert_eq!(store.begin_counted(&[alice, from], at(10)).await.unwrap(), ThrottleVerdict::Allowed);
}

async fn throttle_takes_counts_back_clears_accounts_and_forgets_idle_counters(store: Store) {
    use portcullis::token::throttle::ThrottleVerdict;
    let (rule, lenient) = (throttle_rule(3), throttle_rule(100));
    let alice = counter(ThrottleScope::Account, "alice", &rule);
    let from = counter(ThrottleScope::Source, "10.0.0.1", &lenient);
    let both = [alice.clone(), from.clone()];
    for _ in 0..3 {
        assert_eq!(store.begin_counted(&both, at(0)).await.unwrap(), ThrottleVerdict::Allowed);
    }
    store.take_back(&both).await.unwrap();
    assert_eq!(store.throttle_failures(&alice).await.unwrap(), 2, "a refund");
    store.clear_and_take_back(&alice, std::slice::from_ref(&from)).await.unwrap();
    assert_eq!(store.throttle_failures(&alice).await.unwrap(), 0, "a success clears the account");
    assert_eq!(store.throttle_failures(&from).await.unwrap(), 1, "but not the source's earlier failures");
    // The same scope and subject in another organization is another counter.
    let elsewhere = ThrottleCounter { organization: "globex", ..alice.clone() };
    assert_eq!(store.throttle_failures(&elsewhere).await.unwrap(), 0);
    // Idle past forget_after: starts again, and the housekeeping may delete it.
    for _ in 0..4 {
        store.begin_counted(std::slice::from_ref(&alice), at(0)).await.unwrap();
    }
    assert!(matches!(
        store.begin_counted(std::slice::from_ref(&alice), at(5)).await.unwrap(),
        ThrottleVerdict::Throttled { .. }
    ));
    assert_eq!(
        store.begin_counted(std::slice::from_ref(&alice), at(700)).await.unwrap(),
        ThrottleVerdict::Allowed
    );
    assert_eq!(store.throttle_failures(&alice).await.unwrap(), 1, "forgotten, then counted once");
    let purged = store.purge_expired(at(10_000).as_millisecond(), 100).await.unwrap();
    assert_eq!(purged.throttle_counters, 2, "{purged:?}");
    assert_eq!(store.throttle_failures(&alice).await.unwrap(), 0);
}

/// A process older than migration 22 would number its changes from the old
/// counter, below every position readers of this version look at: its
/// write fails, saying why, instead of being lost to the followers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_an_older_process_taking_positions_from_the_old_counter() {
    let (_store, url) = postgres_store_and_url().await;
    let old_writer = sqlx::PgPool::connect(&url).await.unwrap();
    let refused = sqlx::query("UPDATE change_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq")
        .fetch_one(&old_writer)
        .await
        .expect_err("the old counter is retired");
    assert!(refused.to_string().contains("this process is older than the store; upgrade it"), "{refused}");
}

/// An upgrade through migration 22 of a store whose old counter had gone far
/// past the server's transaction ids (a busy store's history): positions of
/// changes made after the upgrade still rise above every old one, so a
/// reader resuming from the last old position and a follower started after
/// the upgrade both see them. With positions taken from bare transaction
/// ids they would land below, unseen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upgrade_through_the_change_feed_migration_keeps_positions_rising() {
    const OLD_LAST: i64 = 5_000_000;
    let url = tokio::task::spawn_blocking(|| postgres::Postgres::shared().create_database())
        .await
        .expect("create a database");
    // The schema as version 21 left it, from the migration files themselves.
    let before = tempfile::tempdir().unwrap();
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        let version: u32 = path.file_name().unwrap().to_str().unwrap()[..4].parse().unwrap();
        if version <= 21 {
            std::fs::copy(&path, before.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let old = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(before.path()).await.unwrap().run(&old).await.expect("migrations 1 to 21");
    sqlx::query("UPDATE change_counter SET seq = $1").bind(OLD_LAST).execute(&old).await.unwrap();
    sqlx::query("INSERT INTO change_log (seq, organization, committed_ms, changes) VALUES ($1, $2, 0, '[]')")
        .bind(OLD_LAST)
        .bind(ORG)
        .execute(&old)
        .await
        .expect("the old version's last change");
    old.close().await;

    let store = Store::connect(&url).await.expect("the upgrade to this version");
    seed_tenant(&store).await;
    // Changes are read only below the server's oldest running transaction,
    // and other tests share this server: awaited, with a deadline.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let changes = loop {
        let changes = store.changes_since(Some(ORG), OLD_LAST).await.unwrap();
        if !changes.is_empty() {
            break changes;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the setup's changes come after the old last one: none within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(changes.iter().all(|notice| notice.seq > OLD_LAST), "every new position is above the old ones");

    let follower = IndexFollower::start(store.clone(), ORG).await.unwrap();
    let grant = assignment("uid-late", "late", PrincipalKind::User, "late-user", "viewer");
    let seq = applied(store.apply(&grant).await.unwrap());
    assert!(seq > OLD_LAST, "position {seq}");
    assert!(allows(&snapshot_at(&follower, seq).await, "late-user", "journeys.read"));
}

/// The change feed's promise under concurrent writers on PostgreSQL: a
/// reader that has read up to a position never later finds a commit below
/// it. Each writer here (one user made active) takes its position and then
/// waits a random while before committing (a trigger on `change_log`
/// sleeps), so commits land out of position order, as on a loaded server;
/// with positions from a plain sequence the follower and the log reader
/// below would skip some writers for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_followers_miss_no_change_when_commits_land_out_of_order() {
    const WRITERS: usize = 40;
    let (store, url) = postgres_store_and_url().await;
    seed_tenant(&store).await;
    let names: Vec<String> = (0..WRITERS).map(|i| format!("writer-{i:02}")).collect();
    let mut ids = Vec::new();
    for name in &names {
        let grant = assignment(&format!("uid-{name}"), name, PrincipalKind::User, name, "viewer");
        applied(store.apply(&grant).await.unwrap());
        ids.push(store.create_user(&NewUser { active: false, ..new_user(name) }).await.unwrap().id);
    }
    let follower = IndexFollower::start(store.clone(), ORG).await.unwrap();
    assert!(!allows(&follower.current(), "writer-00", "journeys.read"), "inactive users get nothing");

    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION delay_commit() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_sleep(random() * 0.05); RETURN NULL; END $$; \
         CREATE TRIGGER change_log_delay_commit AFTER INSERT ON change_log \
         FOR EACH ROW EXECUTE FUNCTION delay_commit();",
    )
    .execute(&admin)
    .await
    .unwrap();

    // A reader of the log that resumes where its last read ended, all along,
    // counting the changes after the setup.
    let after = store.horizon().await.unwrap();
    let setup = store.current_seq().await.unwrap();
    let reader = tokio::spawn({
        let store = store.clone();
        async move {
            let mut after = after;
            let mut seen = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            while seen.len() < WRITERS {
                tick.tick().await;
                for notice in store.changes_since(Some(ORG), after).await.unwrap() {
                    after = notice.seq;
                    if notice.seq <= setup {
                        continue;
                    }
                    seen.extend(notice.changes.into_iter().filter_map(|change| match change {
                        Change::User { id, .. } => Some(id),
                        _ => None,
                    }));
                }
            }
            seen
        }
    });

    let writers: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move { store.set_user_active(ORG, &id, true).await.unwrap() })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }

    let mut seen = tokio::time::timeout(DEADLINE, reader)
        .await
        .expect("the log reader saw every writer's change in time")
        .unwrap();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids, "the log reader saw each change exactly once");

    let snapshot = snapshot_at(&follower, store.current_seq().await.unwrap()).await;
    let missing: Vec<&String> =
        names.iter().filter(|name| !allows(&snapshot, name, "journeys.read")).collect();
    assert!(missing.is_empty(), "the follower's index lacks {missing:?}");
    admin.close().await;
}

/// The posture's counts: users by factor, privileged holders (directly and
/// through a group, names matched without regard to case), stale and
/// inactive users holding grants, standing privileged grants; expired
/// assignments and other organizations count for nothing.
async fn posture_counts_people_factors_and_grants(store: Store) {
    let now = 1_800_000_000_000_i64;
    let day = 24 * 3600 * 1000_i64;
    let mut ids = std::collections::BTreeMap::new();
    for name in ["ada", "bob", "carol", "dan", "erin"] {
        ids.insert(name, store.create_user(&new_user(name)).await.unwrap().id);
    }
    let elsewhere = NewUser::new("globex", "zed", UserSource::Local);
    store.create_user(&elsewhere).await.unwrap();
    store.set_user_active(ORG, &ids["carol"], false).await.unwrap();
    let totp = MfaFactor::Totp { sealed_secret: SecretString::new("sealed") };
    store.add_mfa_enrolment(ORG, &ids["bob"], None, &totp, now).await.unwrap();
    let key = MfaFactor::WebAuthn { credential_id: "c".into(), public_key: "k".into(), sign_count: 0 };
    store.add_mfa_enrolment(ORG, &ids["dan"], None, &key, now).await.unwrap();
    store.add_mfa_enrolment(ORG, &ids["dan"], None, &totp, now).await.unwrap();
    for (name, last) in
        [("ada", now), ("bob", now - 60 * day), ("carol", now), ("dan", now), ("erin", now - 99 * day)]
    {
        store.record_login(ORG, &ids[name], last).await.unwrap();
    }
    let editors = store.create_group(&new_group("Editors")).await.unwrap();
    store.add_member(ORG, &editors.id, &ids["dan"]).await.unwrap();
    for record in [
        assignment("a1", "ada-admin", PrincipalKind::User, "ADA", "admin"),
        assignment("a2", "bob-viewer", PrincipalKind::User, "bob", "viewer"),
        assignment("a3", "carol-viewer", PrincipalKind::User, "carol", "viewer"),
        assignment("a4", "editors-admin", PrincipalKind::Group, "editors", "admin"),
        assignment("a5", "ops-admin", PrincipalKind::Client, "ops", "admin"),
        AssignmentRecord {
            expires_at_ms: Some(now - day),
            ..assignment("a6", "erin-admin-expired", PrincipalKind::User, "erin", "admin")
        },
    ] {
        store.apply(&record).await.unwrap();
    }
    let privileged = ["admin".to_owned()];
    let counts = store
        .posture_counts(&PostureQuery {
            organization: ORG,
            now_ms: now,
            stale_before_ms: now - 30 * day,
            privileged_roles: &privileged,
        })
        .await
        .unwrap();
    let expected = PostureCounts {
        users: 5,
        active_users: 4,
        mfa_users: 2,
        totp_users: 2,
        security_key_users: 1,
        passkey_users: 0,
        privileged_users: 2,
        privileged_mfa_users: 1,
        stale_users: 2,
        stale_users_with_grants: 1,
        inactive_users_with_grants: 1,
        // ada-admin, editors-admin, ops-admin; the expired one is not standing.
        standing_privileged_grants: 3,
        pending_access_requests: 0,
        scim: Vec::new(),
    };
    assert_eq!(counts, expected);
    let none = store
        .posture_counts(&PostureQuery {
            organization: ORG,
            now_ms: now,
            stale_before_ms: now - 30 * day,
            privileged_roles: &[],
        })
        .await
        .unwrap();
    assert_eq!((none.privileged_users, none.standing_privileged_grants), (0, 0));
}
