//! What the server remembers between the two requests of a sign-in
//! ceremony (migration 0006, `webauthn_ceremonies`): webauthn-rs' state (its
//! challenge) or a TOTP secret being enrolled, tied to the browser that
//! started it, short-lived, and taken once.
//!
//! ```text
//!  start:  id ─► row (purpose, binding, user, state, expiry)
//!  take:   DELETE … WHERE id AND purpose AND binding AND not expired RETURNING state
//! ```
//!
//! Taking is one `DELETE … RETURNING`: a ceremony answered twice (a replayed
//! assertion) finds nothing the second time. No change is logged.

use std::future::Future;

use super::error::query_error;
use super::{Result, Store, column};

/// A ceremony as its first request starts it.
#[derive(Clone, Debug)]
pub struct NewCeremony<'a> {
    pub id: &'a str,
    /// The organization's namespace.
    pub organization: &'a str,
    /// What it is for; it only finishes the step it was started for.
    pub purpose: &'a str,
    /// The browser it belongs to.
    pub binding: &'a str,
    pub user_id: Option<&'a str>,
    /// The state to hand back, serialised.
    pub state: &'a str,
    pub expires_ms: i64,
}

/// A ceremony taken back: whose it was and its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakenCeremony {
    pub user_id: Option<String>,
    pub state: String,
}

pub trait CeremonyStore {
    /// Remembers a ceremony, in place of any this browser had started for
    /// the same purpose (one live ceremony per browser and purpose, so that
    /// repeating a start does not grow the table), and forgets those that
    /// expired unfinished.
    fn start_ceremony(
        &self,
        ceremony: &NewCeremony<'_>,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The ceremony `id` if it is this browser's, for `purpose`, and live;
    /// removed, so it cannot be finished twice.
    fn take_ceremony(
        &self,
        organization: &str,
        purpose: &str,
        binding: &str,
        id: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<TakenCeremony>>> + Send;

    /// Ceremonies of the organization still live at `now_ms`: what sign-ins
    /// in progress hold in the store (monitoring, and the tests of its bound).
    fn live_ceremonies(&self, organization: &str, now_ms: i64) -> impl Future<Output = Result<u64>> + Send;
}

impl CeremonyStore for Store {
    async fn start_ceremony(&self, ceremony: &NewCeremony<'_>, now_ms: i64) -> Result<()> {
        let mut tx = self.begin_unlogged_write().await?;
        sqlx::query(
            "DELETE FROM webauthn_ceremonies WHERE organization = $1 AND purpose = $2 AND binding = $3",
        )
        .bind(ceremony.organization)
        .bind(ceremony.purpose)
        .bind(ceremony.binding)
        .execute(tx.conn())
        .await
        .map_err(query_error("replace this browser's sign-in ceremony"))?;
        sqlx::query(
            "INSERT INTO webauthn_ceremonies (id, organization, purpose, binding, user_id, state, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(ceremony.id)
        .bind(ceremony.organization)
        .bind(ceremony.purpose)
        .bind(ceremony.binding)
        .bind(ceremony.user_id)
        .bind(ceremony.state)
        .bind(ceremony.expires_ms)
        .execute(tx.conn())
        .await
        .map_err(query_error("start a sign-in ceremony"))?;
        sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_ms < $1")
            .bind(now_ms)
            .execute(tx.conn())
            .await
            .map_err(query_error("forget expired sign-in ceremonies"))?;
        tx.commit().await
    }

    async fn live_ceremonies(&self, organization: &str, now_ms: i64) -> Result<u64> {
        let mut conn = self.connection().await?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS live FROM webauthn_ceremonies WHERE organization = $1 AND expires_ms > $2",
        )
        .bind(organization)
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await
        .map_err(query_error("count sign-in ceremonies"))?;
        let live: i64 = column(&row, "webauthn_ceremonies", "live")?;
        Ok(u64::try_from(live).unwrap_or(0))
    }

    async fn take_ceremony(
        &self,
        organization: &str,
        purpose: &str,
        binding: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<TakenCeremony>> {
        let mut tx = self.begin_unlogged_write().await?;
        let row = sqlx::query(
            "DELETE FROM webauthn_ceremonies \
             WHERE id = $1 AND organization = $2 AND purpose = $3 AND binding = $4 AND expires_ms > $5 \
             RETURNING user_id, state",
        )
        .bind(id)
        .bind(organization)
        .bind(purpose)
        .bind(binding)
        .bind(now_ms)
        .fetch_optional(tx.conn())
        .await
        .map_err(query_error("take a sign-in ceremony"))?;
        tx.commit().await?;
        let Some(row) = row else { return Ok(None) };
        const T: &str = "webauthn_ceremonies";
        Ok(Some(TakenCeremony { user_id: column(&row, T, "user_id")?, state: column(&row, T, "state")? }))
    }
}
