//! The audit trail in the store (migration 0016): events appended in the
//! transaction of the write they record, sealed into one hash chain per
//! organization by a sealer, read back by the admin API, exported, pruned.
//!
//! ```text
//!  write tx ──tx.audit(entry)──► INSERT audit_events (chain_seq NULL)   no shared row: writers never wait
//!        commit ──► wake the sealer
//!  sealer (one task per process; per organization, sealers exclude each other
//!          through its audit_chains row, which writers never touch)
//!        ──► unsealed events of the organization, by id ──► seq, prevHash, hash ──► head
//!  readers seal first, then read sealed events only: a page or an export is one chain
//! ```
//!
//! Why a sealer and not a hash computed by each writer: chaining at write
//! time needs the previous hash, so every writer of an organization would
//! lock the chain head from its append until its commit, and all of them
//! would queue behind the slowest transaction. Here a writer pays one INSERT
//! (the `≤ 1 ms` of the targets), and the chain's order is the order in which
//! the sealer found the events, fixed once sealed: an event whose transaction
//! commits late is simply sealed in a later batch.
//!
//! Who and where come from the [`AuditContext`] the store handle carries
//! ([`Store::with_audit`]); a handle without one records Portcullis itself
//! (`system`) as the actor.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};
use tokio::sync::Notify;

use super::error::query_error;
use super::scim_query::like_escape;
use super::{Backend, Result, Store, column, now_ms};
use crate::audit::{
    AuditContext, AuditEntry, AuditEvent, ChainLink, GENESIS_HASH, Outcome, Verifier, VerifyError,
    VerifyReport,
};

/// Events sealed per transaction.
const SEAL_BATCH: i64 = 500;
/// How often the sealer looks for events nobody woke it for (written by a
/// process that stopped before sealing, or left after a failed round).
const SEAL_SWEEP: Duration = Duration::from_secs(30);
/// Longest page a reader gets.
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// A sealed event with its place in the chain.
#[derive(Clone, Debug, PartialEq)]
pub struct SealedAuditEvent {
    pub seq: i64,
    pub hash: String,
    pub event: AuditEvent,
}

/// Which events a reader wants. Every field narrows; none given: all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// An action (`user.create`) or a family of them (`user.*`).
    pub action: Option<String>,
    /// The actor's subject, name, client or identity provider.
    pub actor: Option<String>,
    /// The target's id or name.
    pub target: Option<String>,
    pub outcome: Option<Outcome>,
    /// Unix ms, inclusive.
    pub since_ms: Option<i64>,
    /// Unix ms, exclusive.
    pub until_ms: Option<i64>,
}

/// The head of an organization's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
    /// The lowest seq still stored (older ones were pruned), if any is.
    pub first_seq: Option<i64>,
    /// The last link retention deleted (0 and the genesis hash if none):
    /// what the first stored event must follow.
    pub anchor_seq: i64,
    pub anchor_hash: String,
}

/// What checking an organization's stored chain found.
#[derive(Debug)]
pub enum ChainCheck {
    /// No event is stored (none happened, or all were pruned).
    Empty,
    /// Every stored event links to the one before it, up to the head.
    Intact(VerifyReport),
    /// The first stored event that does not follow; its `line` counts from
    /// the oldest stored event (seq `first_seq`), 1-based.
    Broken { first_seq: i64, finding: VerifyError },
}

/// The audit trail.
pub trait AuditStore {
    /// Records an action that writes nothing else (a refused sign-in, a
    /// denied request), in a transaction of its own.
    fn append_audit(&self, organization: &str, entry: AuditEntry) -> impl Future<Output = Result<()>> + Send;

    /// Seals the organization's unsealed events now; returns how many.
    fn seal_audit(&self, organization: &str) -> impl Future<Output = Result<u64>> + Send;

    /// Sealed events matching `filter`, newest first, with `seq < before_seq`
    /// when given: one page of at most `limit` ([`MAX_AUDIT_PAGE`]).
    fn list_audit(
        &self,
        organization: &str,
        filter: &AuditFilter,
        before_seq: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<SealedAuditEvent>>> + Send;

    /// Sealed links with `seq > after_seq`, oldest first: what an export
    /// writes, page by page.
    fn audit_links(
        &self,
        organization: &str,
        after_seq: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ChainLink>>> + Send;

    /// The last sealed link, if any event was ever sealed.
    fn audit_head(&self, organization: &str) -> impl Future<Output = Result<Option<AuditHead>>> + Send;

    /// Re-reads the organization's sealed events, oldest first, and checks
    /// each link and that the last one is the recorded head: an edited,
    /// removed or reordered row is found (a page at a time in memory).
    fn verify_audit(&self, organization: &str) -> impl Future<Output = Result<ChainCheck>> + Send;

    /// Applies every organization's retention (`spec.audit.retention`) at
    /// `now_ms`, except under `spec.legalHold`; returns how many events went.
    fn apply_audit_retention(&self, now_ms: i64) -> impl Future<Output = Result<u64>> + Send;

    /// Deletes sealed events that happened before `before_ms` (retention;
    /// the caller leaves an organization under legal hold alone). The chain
    /// still verifies from the first event kept. Returns how many went.
    fn prune_audit(&self, organization: &str, before_ms: i64) -> impl Future<Output = Result<u64>> + Send;
}

impl Store {
    /// This handle, recording `context` as who acts and from where in every
    /// audit event its writes append.
    pub fn with_audit(&self, context: AuditContext) -> Store {
        Store { inner: self.inner.clone(), audit: Some(Arc::new(context)) }
    }

    /// Who this handle's writes are recorded as.
    pub fn audit_context(&self) -> AuditContext {
        self.audit.as_deref().cloned().unwrap_or_else(|| AuditContext::system("portcullis"))
    }

    /// Starts the sealer if it is not running, and tells it there is work.
    pub(in crate::store) fn wake_sealer(&self) {
        let sealer = &self.inner.audit_sealer;
        sealer.work.notify_one();
        if sealer.started.set(()).is_ok() {
            let weak = self.downgrade();
            let work = sealer.work.clone();
            let mut shutdown = self.inner.shutdown.subscribe();
            tokio::spawn(async move {
                loop {
                    let Some(store) = weak.upgrade() else { return };
                    if let Err(error) = seal_everything(&store).await {
                        tracing::warn!(error = %crate::error_chain::ErrorChain(&error), "could not seal audit events; retrying");
                    }
                    drop(store);
                    tokio::select! {
                        _ = work.notified() => {}
                        _ = tokio::time::sleep(SEAL_SWEEP) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            });
        }
    }
}

/// The sealer's wake-up call, and whether it runs.
#[derive(Default)]
pub(in crate::store) struct Sealer {
    work: Arc<Notify>,
    started: std::sync::OnceLock<()>,
}

/// Appends the event of `entry` on `conn` (inside the caller's transaction).
pub(in crate::store) async fn append_in(
    conn: &mut AnyConnection,
    context: &AuditContext,
    organization: &str,
    entry: AuditEntry,
) -> Result<()> {
    let at = now_ms();
    let event = AuditEvent::new(organization, context, entry, at);
    sqlx::query(
        "INSERT INTO audit_events (organization, occurred_ms, action, outcome, actor_subject, actor_name, \
         actor_client, actor_idp, target_type, target_id, target_name, event_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(organization)
    .bind(at)
    .bind(event.action.as_str())
    .bind(event.outcome.as_str())
    .bind(event.actor.subject.clone())
    .bind(event.actor.name.clone())
    .bind(event.actor.client.clone())
    .bind(event.actor.identity_provider.clone())
    .bind(event.target.kind.as_str())
    .bind(event.target.id.clone())
    .bind(event.target.name.clone())
    .bind(event.to_json())
    .execute(conn)
    .await
    .map_err(query_error("append an audit event"))?;
    Ok(())
}

/// Seals every organization that has unsealed events.
async fn seal_everything(store: &Store) -> Result<()> {
    let rows = sqlx::query("SELECT DISTINCT organization FROM audit_events WHERE chain_seq IS NULL")
        .fetch_all(store.pool())
        .await
        .map_err(query_error("find unsealed audit events"))?;
    for row in &rows {
        let organization: String = column(row, "audit_events", "organization")?;
        store.seal_audit(&organization).await?;
    }
    Ok(())
}

/// One batch: links up to [`SEAL_BATCH`] unsealed events after the head.
async fn seal_batch(store: &Store, organization: &str) -> Result<u64> {
    let mut tx = store.begin_unlogged_write().await?;
    sqlx::query(
        "INSERT INTO audit_chains (organization, last_seq, last_hash, sealed_ms) VALUES ($1, 0, $2, $3) \
         ON CONFLICT (organization) DO NOTHING",
    )
    .bind(organization)
    .bind(GENESIS_HASH)
    .bind(now_ms())
    .execute(tx.conn())
    .await
    .map_err(query_error("start an audit chain"))?;
    // PostgreSQL: sealers of this organization take turns here (writers
    // never lock this row). SQLite: the writers' turn already excludes them.
    let lock = if store.backend() == Backend::Postgres { " FOR UPDATE" } else { "" };
    let head = sqlx::query(AssertSqlSafe(format!(
        "SELECT last_seq, last_hash FROM audit_chains WHERE organization = $1{lock}"
    )))
    .bind(organization)
    .fetch_one(tx.conn())
    .await
    .map_err(query_error("read an audit chain's head"))?;
    let (mut seq, mut hash): (i64, String) =
        (column(&head, "audit_chains", "last_seq")?, column(&head, "audit_chains", "last_hash")?);
    let rows = sqlx::query(
        "SELECT id, event_json FROM audit_events WHERE organization = $1 AND chain_seq IS NULL \
         ORDER BY id LIMIT $2",
    )
    .bind(organization)
    .bind(SEAL_BATCH)
    .fetch_all(tx.conn())
    .await
    .map_err(query_error("read unsealed audit events"))?;
    if rows.is_empty() {
        return Ok(0);
    }
    for row in &rows {
        let id: i64 = column(row, "audit_events", "id")?;
        let link = ChainLink::after(seq, &hash, column(row, "audit_events", "event_json")?);
        sqlx::query("UPDATE audit_events SET chain_seq = $1, prev_hash = $2, hash = $3 WHERE id = $4")
            .bind(link.seq)
            .bind(link.prev_hash.as_str())
            .bind(link.hash.as_str())
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(query_error("seal an audit event"))?;
        (seq, hash) = (link.seq, link.hash);
    }
    sqlx::query(
        "UPDATE audit_chains SET last_seq = $1, last_hash = $2, sealed_ms = $3 WHERE organization = $4",
    )
    .bind(seq)
    .bind(hash.as_str())
    .bind(now_ms())
    .bind(organization)
    .execute(tx.conn())
    .await
    .map_err(query_error("move an audit chain's head"))?;
    tx.commit().await?;
    Ok(u64::try_from(rows.len()).unwrap_or_default())
}

const SEALED_COLUMNS: &str = "chain_seq, prev_hash, hash, event_json";

fn sealed_from_row(row: &AnyRow) -> Result<SealedAuditEvent> {
    const T: &str = "audit_events";
    let text: String = column(row, T, "event_json")?;
    let event = serde_json::from_str(&text).map_err(|e| super::StoreError::Corrupt {
        table: T,
        column: "event_json",
        source: Box::new(e),
    })?;
    Ok(SealedAuditEvent { seq: column(row, T, "chain_seq")?, hash: column(row, T, "hash")?, event })
}

fn link_from_row(row: &AnyRow) -> Result<ChainLink> {
    const T: &str = "audit_events";
    Ok(ChainLink {
        seq: column(row, T, "chain_seq")?,
        prev_hash: column(row, T, "prev_hash")?,
        hash: column(row, T, "hash")?,
        event_json: column(row, T, "event_json")?,
    })
}

impl AuditStore for Store {
    async fn append_audit(&self, organization: &str, entry: AuditEntry) -> Result<()> {
        let mut tx = self.begin_unlogged_write().await?;
        append_in(tx.conn(), &self.audit_context(), organization, entry).await?;
        tx.commit().await?;
        self.wake_sealer();
        Ok(())
    }

    async fn seal_audit(&self, organization: &str) -> Result<u64> {
        let mut sealed = 0;
        loop {
            let batch = seal_batch(self, organization).await?;
            sealed += batch;
            if batch < u64::try_from(SEAL_BATCH).unwrap_or_default() {
                return Ok(sealed);
            }
        }
    }

    async fn list_audit(
        &self,
        organization: &str,
        filter: &AuditFilter,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<SealedAuditEvent>> {
        let mut conditions = vec!["organization = $1".to_owned(), "chain_seq IS NOT NULL".to_owned()];
        let mut binds: Vec<Bind> = vec![Bind::Text(organization.to_owned())];
        let next = |binds: &mut Vec<Bind>, value: Bind| {
            binds.push(value);
            format!("${}", binds.len())
        };
        if let Some(before) = before_seq {
            let p = next(&mut binds, Bind::Int(before));
            conditions.push(format!("chain_seq < {p}"));
        }
        if let Some(action) = &filter.action {
            match action.strip_suffix(".*") {
                Some(family) => {
                    let p = next(&mut binds, Bind::Text(format!("{}.%", like_escape(family))));
                    conditions.push(format!("action LIKE {p} ESCAPE '\\'"));
                }
                None => {
                    let p = next(&mut binds, Bind::Text(action.clone()));
                    conditions.push(format!("action = {p}"));
                }
            }
        }
        if let Some(actor) = &filter.actor {
            let p = next(&mut binds, Bind::Text(actor.clone()));
            conditions.push(format!(
                "(actor_subject = {p} OR actor_name = {p} OR actor_client = {p} OR actor_idp = {p})"
            ));
        }
        if let Some(target) = &filter.target {
            let p = next(&mut binds, Bind::Text(target.clone()));
            conditions.push(format!("(target_id = {p} OR target_name = {p})"));
        }
        if let Some(outcome) = filter.outcome {
            let p = next(&mut binds, Bind::Text(outcome.as_str().to_owned()));
            conditions.push(format!("outcome = {p}"));
        }
        if let Some(since) = filter.since_ms {
            let p = next(&mut binds, Bind::Int(since));
            conditions.push(format!("occurred_ms >= {p}"));
        }
        if let Some(until) = filter.until_ms {
            let p = next(&mut binds, Bind::Int(until));
            conditions.push(format!("occurred_ms < {p}"));
        }
        let p = next(&mut binds, Bind::Int(i64::from(limit.clamp(1, MAX_AUDIT_PAGE))));
        let sql = format!(
            "SELECT {SEALED_COLUMNS} FROM audit_events WHERE {} ORDER BY chain_seq DESC LIMIT {p}",
            conditions.join(" AND ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for bind in binds {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Int(n) => query.bind(n),
            };
        }
        let rows = query.fetch_all(self.pool()).await.map_err(query_error("list audit events"))?;
        rows.iter().map(sealed_from_row).collect()
    }

    async fn audit_links(&self, organization: &str, after_seq: i64, limit: u32) -> Result<Vec<ChainLink>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SEALED_COLUMNS} FROM audit_events WHERE organization = $1 AND chain_seq > $2 \
             ORDER BY chain_seq LIMIT $3"
        )))
        .bind(organization)
        .bind(after_seq)
        .bind(i64::from(limit.clamp(1, MAX_AUDIT_PAGE)))
        .fetch_all(self.pool())
        .await
        .map_err(query_error("read audit links"))?;
        rows.iter().map(link_from_row).collect()
    }

    async fn audit_head(&self, organization: &str) -> Result<Option<AuditHead>> {
        let mut tx = self.begin_read().await?;
        let head = sqlx::query(
            "SELECT last_seq, last_hash, pruned_seq, pruned_hash FROM audit_chains WHERE organization = $1",
        )
        .bind(organization)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error("read an audit chain's head"))?;
        let Some(head) = head else { return Ok(None) };
        let first = sqlx::query(
            "SELECT MIN(chain_seq) AS first_seq FROM audit_events WHERE organization = $1 AND chain_seq IS NOT NULL",
        )
        .bind(organization)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error("read an audit chain's start"))?;
        Ok(Some(AuditHead {
            seq: column(&head, "audit_chains", "last_seq")?,
            hash: column(&head, "audit_chains", "last_hash")?,
            first_seq: column(&first, "audit_events", "first_seq")?,
            anchor_seq: column(&head, "audit_chains", "pruned_seq")?,
            anchor_hash: column(&head, "audit_chains", "pruned_hash")?,
        }))
    }

    async fn verify_audit(&self, organization: &str) -> Result<ChainCheck> {
        // The head first: events sealed while we read are not ours to check.
        let Some(head) = self.audit_head(organization).await? else { return Ok(ChainCheck::Empty) };
        let Some(first_seq) = head.first_seq else { return Ok(ChainCheck::Empty) };
        let mut verifier = Verifier::anchored(head.anchor_seq, &head.anchor_hash);
        let mut after = 0;
        'pages: loop {
            let links = self.audit_links(organization, after, MAX_AUDIT_PAGE).await?;
            let Some(last) = links.last() else { break };
            after = last.seq;
            for link in links.iter().filter(|link| link.seq <= head.seq) {
                if let Err(finding) = verifier.push_line(&link.to_line()) {
                    return Ok(ChainCheck::Broken { first_seq, finding });
                }
            }
            if after >= head.seq {
                break 'pages;
            }
        }
        match verifier.finish(Some(&head.hash)) {
            Ok(report) => Ok(ChainCheck::Intact(report)),
            Err(finding) => Ok(ChainCheck::Broken { first_seq, finding }),
        }
    }

    async fn apply_audit_retention(&self, now_ms: i64) -> Result<u64> {
        let rows = sqlx::query("SELECT namespace, spec_json FROM organizations")
            .fetch_all(self.pool())
            .await
            .map_err(query_error("read the organizations' audit retention"))?;
        let mut pruned = 0;
        for row in &rows {
            let namespace: String = column(row, "organizations", "namespace")?;
            let spec: String = column(row, "organizations", "spec_json")?;
            if let Some(kept) = retention_of(&spec) {
                let before_ms = now_ms.saturating_sub(i64::try_from(kept.as_millis()).unwrap_or(i64::MAX));
                pruned += self.prune_audit(&namespace, before_ms).await?;
            }
        }
        Ok(pruned)
    }

    async fn prune_audit(&self, organization: &str, before_ms: i64) -> Result<u64> {
        // A prefix of the chain, never a hole in it: everything up to the
        // last sealed event that is old enough. The chain's anchor moves to
        // the last event deleted, in the same transaction.
        let mut tx = self.begin_unlogged_write().await?;
        let last = sqlx::query(
            "SELECT chain_seq, hash FROM audit_events WHERE organization = $1 AND chain_seq = \
             (SELECT MAX(chain_seq) FROM audit_events WHERE organization = $1 AND occurred_ms < $2)",
        )
        .bind(organization)
        .bind(before_ms)
        .fetch_optional(tx.conn())
        .await
        .map_err(query_error("find the audit events to prune"))?;
        let Some(last) = last else { return Ok(0) };
        let seq: i64 = column(&last, "audit_events", "chain_seq")?;
        let hash: String = column(&last, "audit_events", "hash")?;
        let done = sqlx::query("DELETE FROM audit_events WHERE organization = $1 AND chain_seq <= $2")
            .bind(organization)
            .bind(seq)
            .execute(tx.conn())
            .await
            .map_err(query_error("prune audit events"))?;
        sqlx::query("UPDATE audit_chains SET pruned_seq = $1, pruned_hash = $2 WHERE organization = $3")
            .bind(seq)
            .bind(hash.as_str())
            .bind(organization)
            .execute(tx.conn())
            .await
            .map_err(query_error("move an audit chain's anchor"))?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

/// How long an organization keeps its audit events, from its spec; `None`
/// (keep everything) under a legal hold, or for a spec that cannot be read.
fn retention_of(spec_json: &str) -> Option<Duration> {
    let spec: crate::api::OrganizationSpec = match serde_json::from_str(spec_json) {
        Ok(spec) => spec,
        Err(error) => {
            tracing::warn!(%error, "an organization's spec cannot be read: its audit events are all kept");
            return None;
        }
    };
    if spec.legal_hold {
        return None;
    }
    spec.audit.retention.get().filter(|kept| !kept.is_zero())
}

enum Bind {
    Text(String),
    Int(i64),
}
