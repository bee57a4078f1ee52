//! The access request store on both backends (SQLite in memory, and a real
//! PostgreSQL server from `support/postgres.rs`): two approvers approving
//! at once grant exactly once, the same approver counts once, the grant is
//! a RoleAssignment row with its expiry that the sweep removes, and every
//! step queues one notification that a worker claims once.

#[path = "support/postgres.rs"]
mod postgres;

use portcullis::authz::{Principal, PrincipalKind};
use portcullis::store::access_requests::*;
use portcullis::store::*;

const ORG: &str = "acme";

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let store = portcullis::store::Store::connect("sqlite::memory:").await.expect("an in-memory SQLite store");
                    super::$case(store).await;
                }
            )*
        }
        mod postgresql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let url = tokio::task::spawn_blocking(|| super::postgres::Postgres::shared().create_database())
                        .await
                        .expect("create a database");
                    super::$case(portcullis::store::Store::connect(&url).await.expect("connect to the test PostgreSQL")).await;
                }
            )*
        }
    };
}

on_both_backends!(
    concurrent_approvals_grant_exactly_once_and_one_approver_counts_once,
    the_sweep_ends_expired_grants_and_each_step_queues_one_notification,
    filing_under_an_id_twice_or_at_once_files_one_request,
);

fn new_request(approvals_needed: i64, duration_ms: i64) -> NewAccessRequest {
    NewAccessRequest {
        organization: ORG.into(),
        requester: Principal::user("Requester@acme.test"),
        requested_by: "requester@acme.test".into(),
        role: "compliance-officer".into(),
        workspace: Some("emea-marketing".into()),
        duration_ms,
        justification: "consent export".into(),
        approvals_needed,
    }
}

async fn grants(store: &Store) -> Vec<AssignmentRecord> {
    store.list::<AssignmentRecord>(ORG).await.expect("list assignments")
}

async fn concurrent_approvals_grant_exactly_once_and_one_approver_counts_once(store: Store) {
    let request = store.create_access_request(&new_request(2, 7_200_000)).await.expect("create");
    assert_eq!(request.status, AccessRequestStatus::Pending);
    let again = store.create_access_request(&new_request(2, 7_200_000)).await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists { .. })),
        "one pending per role and scope: {again:?}"
    );

    let first = store.approve_access_request(ORG, &request.id, &Principal::user("a"), None).await.unwrap();
    assert!(matches!(first, ApprovalOutcome::Recorded(_)), "{first:?}");
    // The same approver, named with other case, counts once.
    let twice = store.approve_access_request(ORG, &request.id, &Principal::user("A"), None).await.unwrap();
    assert!(matches!(twice, ApprovalOutcome::AlreadyApproved(_)), "{twice:?}");
    assert!(grants(&store).await.is_empty());

    // Two more approvers at once: exactly one of them grants.
    let (b, c) = (Principal::user("b"), Principal::user("c"));
    let (b, c) = tokio::join!(
        store.approve_access_request(ORG, &request.id, &b, Some("ok")),
        store.approve_access_request(ORG, &request.id, &c, None),
    );
    let outcomes = [b.unwrap(), c.unwrap()];
    let granted = outcomes.iter().filter(|o| matches!(o, ApprovalOutcome::Granted(_))).count();
    let late = outcomes.iter().filter(|o| matches!(o, ApprovalOutcome::NotPending(_))).count();
    assert_eq!((granted, late), (1, 1), "{outcomes:?}");

    let stored = store.get_access_request(ORG, &request.id).await.unwrap().unwrap();
    assert_eq!(stored.status, AccessRequestStatus::Approved);
    assert_eq!(stored.approvals.len(), 2, "{stored:?}");
    let grants = grants(&store).await;
    assert_eq!(grants.len(), 1, "{grants:?}");
    let grant = &grants[0];
    assert_eq!((grant.principal_kind, grant.role.as_str()), (PrincipalKind::User, "compliance-officer"));
    assert_eq!(grant.workspace.as_deref(), Some("emea-marketing"));
    assert_eq!(grant.expires_at_ms, stored.expires_ms);
    let owners = store.owners::<AssignmentRecord>(ORG).await.unwrap();
    assert_eq!(owners, [(grant.meta.name.clone(), Owner::AccessRequest)]);
}

async fn the_sweep_ends_expired_grants_and_each_step_queues_one_notification(store: Store) {
    let request = store.create_access_request(&new_request(1, 1_000)).await.expect("create");
    let granted = store.approve_access_request(ORG, &request.id, &Principal::user("a"), None).await.unwrap();
    let ApprovalOutcome::Granted(granted) = granted else { panic!("{granted:?}") };
    let expires = granted.expires_ms.expect("an expiry");
    assert_eq!(store.next_access_request_expiry().await.unwrap(), Some(expires));

    // Nothing is due before the expiry; at it, the request ends and its grant goes.
    assert!(store.expire_access_requests(expires - 1).await.unwrap().is_empty());
    assert_eq!(grants(&store).await.len(), 1);
    let expired = store.expire_access_requests(expires).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].status, AccessRequestStatus::Expired);
    assert!(grants(&store).await.is_empty());
    assert!(store.expire_access_requests(expires + 1).await.unwrap().is_empty(), "ended once");
    assert_eq!(store.next_access_request_expiry().await.unwrap(), None);

    // requested, approved, expired: each queued once, claimed by one worker.
    let now = expires + 10;
    let (one, other) = tokio::join!(
        store.claim_access_request_notifications(now, now + 60_000, 10),
        store.claim_access_request_notifications(now, now + 60_000, 10),
    );
    let mut claimed: Vec<ClaimedNotification> = one.unwrap().into_iter().chain(other.unwrap()).collect();
    claimed.sort_by_key(|n| n.created_ms);
    let events: Vec<NotificationEvent> = claimed.iter().map(|n| n.event).collect();
    assert_eq!(events.len(), 3, "{claimed:?}");
    for event in [NotificationEvent::Requested, NotificationEvent::Approved, NotificationEvent::Expired] {
        assert!(events.contains(&event), "{events:?}");
    }
    // Leased: nobody claims them again until the lease ends or they are finished.
    assert!(store.claim_access_request_notifications(now + 1, now + 60_000, 10).await.unwrap().is_empty());
    let retry = NotificationOutcome::Retry { next_attempt_ms: now + 2_000, error: "503".into() };
    let partly = vec!["https://hooks.example/slack".to_owned()];
    store.finish_access_request_notification(&claimed[0].id, &partly, &retry, now).await.unwrap();
    for done in &claimed[1..] {
        store
            .finish_access_request_notification(&done.id, &[], &NotificationOutcome::Delivered, now)
            .await
            .unwrap();
    }
    assert!(
        store.claim_access_request_notifications(now + 1_999, now + 60_000, 10).await.unwrap().is_empty()
    );
    let again = store.claim_access_request_notifications(now + 2_000, now + 60_000, 10).await.unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!((again[0].attempts, again[0].delivered.clone()), (1, partly));
}

/// What the operator does for an AccessRequest object: file it under the
/// object's uid, however often and by however many operators at once.
async fn filing_under_an_id_twice_or_at_once_files_one_request(store: Store) {
    let uid = "6f1c2a52-0d0e-4d7e-9a51-3c1b0f3f2a10";
    let new = new_request(1, 3_600_000);
    let (a, b) = tokio::join!(store.file_access_request(uid, &new), store.file_access_request(uid, &new));
    let (a, b) = (a.expect("filed"), b.expect("filed"));
    assert_eq!((a.id.as_str(), b.id.as_str()), (uid, uid));
    let again = store.file_access_request(uid, &new).await.expect("found filed");
    assert_eq!(again, a, "a replay changes nothing");
    let all = AccessRequestFilter { limit: 10, ..AccessRequestFilter::default() };
    assert_eq!(store.list_access_requests(ORG, &all).await.unwrap().len(), 1);
    // One request, so one notification of it.
    let claimed = store.claim_access_request_notifications(i64::MAX / 2, i64::MAX / 2 + 1, 10).await.unwrap();
    assert_eq!(claimed.iter().filter(|n| n.request_id == uid).count(), 1, "{claimed:?}");

    // Another id for the same pending role and scope is the API's conflict.
    let other = store.file_access_request("another-uid", &new).await;
    assert!(matches!(other, Err(StoreError::AlreadyExists { .. })), "{other:?}");
}
