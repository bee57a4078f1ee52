//! The audit trail in the store, on both backends (SQLite in memory and a
//! real PostgreSQL server, a fresh database per case): events commit with
//! the write they record and never without it, the sealer links them into
//! one chain per organization whatever the concurrency, readers filter and
//! page, retention keeps a verifiable suffix.

#[path = "support/postgres.rs"]
mod postgres;

use std::time::Duration;

use portcullis::audit::{Actor, ActorKind, AuditContext, AuditEntry, Outcome, Source, Target, verify_export};
use portcullis::store::*;

const ORG: &str = "acme";

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
    an_event_commits_with_its_write_and_names_who_and_where,
    a_refused_write_leaves_no_event,
    concurrent_writers_and_sealers_make_one_unbroken_chain,
    events_filter_and_page_newest_first,
    retention_deletes_the_oldest_and_the_rest_still_verifies,
    organizations_have_chains_of_their_own,
    retention_follows_the_spec_and_a_legal_hold_suspends_it,
);

async fn sqlite_store() -> Store {
    Store::connect("sqlite::memory:").await.expect("open an in-memory SQLite store")
}

async fn postgres_store() -> Store {
    let url = tokio::task::spawn_blocking(|| postgres::Postgres::shared().create_database())
        .await
        .expect("create a database");
    Store::connect(&url).await.expect("connect to the test PostgreSQL")
}

fn admin() -> AuditContext {
    AuditContext::new(
        Actor::user("u-admin", "root@acme.test", Some("console")),
        Source { address: Some("192.0.2.10".into()), user_agent: Some("integration-test".into()) },
    )
}

/// Every sealed line of the organization's chain, as an export writes them.
async fn export(store: &Store, organization: &str) -> Vec<String> {
    store.seal_audit(organization).await.expect("seal");
    let mut lines = Vec::new();
    let mut after = 0;
    loop {
        let links = store.audit_links(organization, after, 100).await.expect("read links");
        let Some(last) = links.last() else { return lines };
        after = last.seq;
        lines.extend(links.iter().map(|link| link.to_line()));
    }
}

async fn all_events(store: &Store, organization: &str) -> Vec<SealedAuditEvent> {
    store.seal_audit(organization).await.expect("seal");
    store.list_audit(organization, &AuditFilter::default(), None, 1000).await.expect("list")
}

async fn an_event_commits_with_its_write_and_names_who_and_where(store: Store) {
    let audited = store.with_audit(admin());
    let user = audited
        .create_user(&NewUser {
            emails: vec![Email::primary("ada@acme.test")],
            ..NewUser::new(ORG, "ada", UserSource::Local)
        })
        .await
        .unwrap();
    audited.set_user_active(ORG, &user.id, false).await.unwrap();

    let events = all_events(&store, ORG).await;
    let actions: Vec<&str> = events.iter().map(|e| e.event.action.as_str()).collect();
    assert_eq!(actions, ["user.deactivate", "user.create"], "newest first");
    let created = &events[1].event;
    assert_eq!(created.actor.kind, ActorKind::User);
    assert_eq!(created.actor.name.as_deref(), Some("root@acme.test"));
    assert_eq!(created.actor.client.as_deref(), Some("console"));
    assert_eq!(created.source.address.as_deref(), Some("192.0.2.10"));
    assert_eq!(created.source.user_agent.as_deref(), Some("integration-test"));
    assert_eq!(created.target.id.as_deref(), Some(user.id.as_str()));
    assert_eq!(created.target.name.as_deref(), Some("ada"));
    assert_eq!(created.outcome, Outcome::Success);
    assert_eq!(created.organization, ORG);

    // A handle without a context records Portcullis itself.
    store.delete_user(ORG, &user.id).await.unwrap();
    let events = all_events(&store, ORG).await;
    assert_eq!(events[0].event.action, "user.delete");
    assert_eq!(events[0].event.actor.kind, ActorKind::System);
}

async fn a_refused_write_leaves_no_event(store: Store) {
    let audited = store.with_audit(admin());
    audited.create_user(&NewUser::new(ORG, "ada", UserSource::Local)).await.unwrap();
    let error = audited.create_user(&NewUser::new(ORG, "ADA", UserSource::Local)).await.unwrap_err();
    assert!(matches!(error, StoreError::AlreadyExists { .. }), "{error}");
    assert!(audited.set_user_active(ORG, "no-such-user", false).await.is_err());
    let events = all_events(&store, ORG).await;
    assert_eq!(events.len(), 1, "only the write that committed is recorded: {events:?}");

    // An action that writes nothing else is recorded on its own.
    audited
        .append_audit(
            ORG,
            AuditEntry::failure("signIn.password", Target::new("user", None, Some("eve")), "WrongPassword"),
        )
        .await
        .unwrap();
    let events = all_events(&store, ORG).await;
    assert_eq!(events[0].event.reason.as_deref(), Some("WrongPassword"));
}

async fn concurrent_writers_and_sealers_make_one_unbroken_chain(store: Store) {
    const WRITERS: usize = 8;
    const EACH: usize = 10;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.with_audit(admin());
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                store
                    .create_user(&NewUser::new(ORG, format!("user-{writer}-{n}"), UserSource::Local))
                    .await
                    .unwrap();
                // Sealers run while writers write (readers seal too).
                if n % 3 == 0 {
                    store.seal_audit(ORG).await.unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let lines = export(&store, ORG).await;
    assert_eq!(lines.len(), WRITERS * EACH);
    let report = verify_export(lines.join("\n").as_bytes(), None).expect("the chain verifies");
    assert!(report.complete_from_start());
    assert_eq!(report.last_seq, (WRITERS * EACH) as i64);
    let head = store.audit_head(ORG).await.unwrap().expect("a head");
    assert_eq!(
        (head.seq, head.hash.as_str(), head.first_seq),
        (report.last_seq, report.head.as_str(), Some(1))
    );
}

async fn events_filter_and_page_newest_first(store: Store) {
    let audited = store.with_audit(admin());
    let scim = store.with_audit(AuditContext::new(Actor::identity_provider("okta"), Source::default()));
    let ada = audited.create_user(&NewUser::new(ORG, "ada", UserSource::Local)).await.unwrap();
    let bob = scim.create_user(&NewUser::new(ORG, "bob", UserSource::Scim)).await.unwrap();
    let group = audited
        .create_group(&NewGroup {
            organization: ORG.into(),
            display_name: "Editors".into(),
            source: GroupSource::Internal,
            external_id: None,
        })
        .await
        .unwrap();
    audited.add_member(ORG, &group.id, &ada.id).await.unwrap();
    audited.set_user_active(ORG, &bob.id, false).await.unwrap();
    store.seal_audit(ORG).await.unwrap();

    let list = |filter: AuditFilter| {
        let store = store.clone();
        async move {
            let events = store.list_audit(ORG, &filter, None, 100).await.unwrap();
            events.into_iter().map(|e| e.event.action).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(AuditFilter { action: Some("user.*".into()), ..Default::default() }).await,
        ["user.deactivate", "user.create", "user.create"]
    );
    assert_eq!(list(AuditFilter { actor: Some("okta".into()), ..Default::default() }).await, ["user.create"]);
    assert_eq!(
        list(AuditFilter { target: Some("bob".into()), ..Default::default() }).await,
        ["user.deactivate", "user.create"]
    );
    assert_eq!(
        list(AuditFilter { action: Some("group.addMember".into()), ..Default::default() }).await,
        ["group.addMember"]
    );
    // `_` in a family is taken literally.
    assert!(list(AuditFilter { action: Some("use_.*".into()), ..Default::default() }).await.is_empty());

    // Pages: two at a time, each starting below the last seq seen.
    let first = store.list_audit(ORG, &AuditFilter::default(), None, 2).await.unwrap();
    let second = store.list_audit(ORG, &AuditFilter::default(), Some(first[1].seq), 2).await.unwrap();
    let third = store.list_audit(ORG, &AuditFilter::default(), Some(second[1].seq), 2).await.unwrap();
    let seqs: Vec<i64> = first.iter().chain(&second).chain(&third).map(|e| e.seq).collect();
    assert_eq!(seqs, [5, 4, 3, 2, 1]);
}

async fn retention_deletes_the_oldest_and_the_rest_still_verifies(store: Store) {
    let audited = store.with_audit(admin());
    for n in 0..3 {
        audited.create_user(&NewUser::new(ORG, format!("old-{n}"), UserSource::Local)).await.unwrap();
    }
    let old = all_events(&store, ORG).await;
    let last_old_ms = old.iter().map(|e| jiff::Timestamp::from_str_ms(&e.event.time)).max().unwrap();
    // The next events must happen in a later millisecond than the old ones.
    while now_ms() <= last_old_ms {
        tokio::task::yield_now().await;
    }
    let cutoff = now_ms();
    for n in 0..2 {
        audited.create_user(&NewUser::new(ORG, format!("new-{n}"), UserSource::Local)).await.unwrap();
    }
    store.seal_audit(ORG).await.unwrap();
    assert_eq!(store.prune_audit(ORG, cutoff).await.unwrap(), 3);
    let lines = export(&store, ORG).await;
    let report = verify_export(lines.join("\n").as_bytes(), None).expect("what is left verifies");
    assert_eq!((report.first_seq, report.last_seq, report.events), (4, 5, 2));
    assert!(!report.complete_from_start());
    assert_eq!(store.audit_head(ORG).await.unwrap().unwrap().first_seq, Some(4));
    // Nothing old enough: nothing goes.
    assert_eq!(store.prune_audit(ORG, cutoff).await.unwrap(), 0);
}

async fn organizations_have_chains_of_their_own(store: Store) {
    let audited = store.with_audit(admin());
    audited.create_user(&NewUser::new(ORG, "ada", UserSource::Local)).await.unwrap();
    audited.create_user(&NewUser::new("globex", "ada", UserSource::Local)).await.unwrap();
    audited.create_user(&NewUser::new(ORG, "bob", UserSource::Local)).await.unwrap();
    let acme = export(&store, ORG).await;
    let globex = export(&store, "globex").await;
    assert_eq!(verify_export(acme.join("\n").as_bytes(), None).unwrap().events, 2);
    let report = verify_export(globex.join("\n").as_bytes(), None).unwrap();
    assert_eq!((report.organization.as_str(), report.events), ("globex", 1));
    // A line of another organization's chain does not fit in this one.
    let mixed = [acme[0].clone(), globex[0].clone()];
    assert!(verify_export(mixed.join("\n").as_bytes(), None).is_err());
}

/// The sealer runs by itself after a commit: no reader has to seal first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sealer_seals_without_being_asked() {
    let store = sqlite_store().await;
    store.with_audit(admin()).create_user(&NewUser::new(ORG, "ada", UserSource::Local)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if store.audit_head(ORG).await.unwrap().is_some_and(|head| head.seq == 1) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the event was not sealed within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

trait FromStrMs {
    fn from_str_ms(text: &str) -> i64;
}

impl FromStrMs for jiff::Timestamp {
    fn from_str_ms(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().expect("an RFC 3339 time").as_millisecond()
    }
}

async fn retention_follows_the_spec_and_a_legal_hold_suspends_it(store: Store) {
    for (namespace, spec) in [
        (ORG, serde_json::json!({ "displayName": "Acme", "audit": { "retention": "1h" } })),
        (
            "globex",
            serde_json::json!({ "displayName": "Globex", "legalHold": true, "audit": { "retention": "1h" } }),
        ),
    ] {
        store
            .apply(&OrganizationRecord {
                meta: ObjectMeta::new(format!("uid-{namespace}"), namespace, namespace, 1),
                display_name: namespace.into(),
                catalog: Vec::new(),
                workspaces: Vec::new(),
                spec_json: spec.to_string(),
            })
            .await
            .unwrap();
    }
    let audited = store.with_audit(admin());
    for organization in [ORG, "globex"] {
        for n in 0..2 {
            audited
                .create_user(&NewUser::new(organization, format!("user-{n}"), UserSource::Local))
                .await
                .unwrap();
        }
        store.seal_audit(organization).await.unwrap();
    }
    // Nothing is an hour old yet.
    assert_eq!(store.apply_audit_retention(now_ms()).await.unwrap(), 0);

    // Two hours on: acme's events go; globex is under legal hold.
    let later = now_ms() + 2 * 3600 * 1000;
    assert_eq!(store.apply_audit_retention(later).await.unwrap(), 2);
    assert!(all_events(&store, ORG).await.is_empty());
    assert_eq!(all_events(&store, "globex").await.len(), 2);
    assert!(matches!(store.verify_audit(ORG).await.unwrap(), ChainCheck::Empty));

    // acme's chain goes on from where retention left it, and verifies.
    audited.create_user(&NewUser::new(ORG, "user-2", UserSource::Local)).await.unwrap();
    store.seal_audit(ORG).await.unwrap();
    match store.verify_audit(ORG).await.unwrap() {
        ChainCheck::Intact(report) => assert_eq!((report.first_seq, report.events), (3, 1)),
        other => panic!("{other:?}"),
    }
}
