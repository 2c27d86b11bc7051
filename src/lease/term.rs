//! A term of leadership (docs/contract.md §3.7): what a relay with
//! `[standby]` runs while the lease loop says it leads, and stops the moment
//! it does not.
//!
//! On taking over it first records the window since the last-live instant
//! (the one the old leader kept in the bucket, or its own journal's if later)
//! in the gap ledger and reconciles it, then opens the socket (the source,
//! which asks the lease's [`Gate`](super::Gate) before every connect), runs
//! the reconciler and keeps the bucket's last-live instant. On stepping down
//! the term is cancelled: the socket closes at once and reconciliation
//! stops; delivery of what the journal holds goes on (it is not the term's).
//! The role, the holder and the lease's age are written to the journal's
//! meta on every change, for `zcc-relay status`.
//!
//! Deliberately not here: the lease's timing (`lease`), the socket
//! (`source`), reconciliation (`reconcile`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::{LeaseStore, ROLE_META, Role, RoleRecord, keep_last_live};
use crate::clock;
use crate::journal::{Journal, JournalError};
use crate::reconcile::Reconciler;
use crate::service::Heartbeat;
use crate::source::{ConnectionState, Source, SourceError};
use crate::telemetry::stats::Stats;

/// The longest a new leader reconciles before it opens the socket; what is
/// left (a rate limit asking for minutes) goes on beside the live socket.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(60);
/// How long the last-live instant may take to read on takeover.
const LAST_LIVE_READ: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TermError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot persist the reconciled records or the gap ledger")]
    Journal(#[from] JournalError),
}

pub struct Terms<S> {
    pub store: Arc<S>,
    pub role: watch::Receiver<Role>,
    /// This relay's name in the lease.
    pub holder: String,
    pub source: Source,
    /// `None` when `reconcile.enabled = false`.
    pub reconciler: Option<Reconciler>,
    pub journal: Journal,
    pub stats: Stats,
    /// What the source publishes as its last moment live.
    pub live: watch::Receiver<u64>,
}

impl<S: LeaseStore> Terms<S> {
    /// Runs a term each time the lease loop leads, until `cancel` (Ok) or
    /// the journal fails (Err). The source's and the reconciler's heartbeats
    /// beat here between terms.
    pub async fn run(
        mut self,
        cancel: CancellationToken,
        mut source_beat: Heartbeat,
        mut reconciler_beat: Heartbeat,
    ) -> Result<(), TermError> {
        let mut shown: Option<(String, Option<String>, Option<u64>)> = None;
        loop {
            // Between terms: standby (or not yet decided).
            self.source.state.send_replace(ConnectionState::Standby);
            loop {
                let role = self.role.borrow_and_update().clone();
                self.show(&role, &mut shown).await?;
                if role.is_leader() {
                    break;
                }
                tokio::select! {
                    _ = cancel.cancelled() => {
                        self.source.state.send_replace(ConnectionState::Stopped);
                        return Ok(());
                    }
                    changed = self.role.changed() => if changed.is_err() {
                        return Ok(());
                    },
                    _ = source_beat.tick() => {}
                    _ = reconciler_beat.tick() => {}
                }
            }
            self.term(&cancel, &mut source_beat, &mut reconciler_beat)
                .await?;
            if cancel.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// Writes the role to the journal's meta when the role or the holder
    /// changed (not on every renewal), and counts changes of role.
    async fn show(
        &self,
        role: &Role,
        shown: &mut Option<(String, Option<String>, Option<u64>)>,
    ) -> Result<(), JournalError> {
        let record = role.record(&self.holder, clock::now_ms());
        let key = (
            record.role.clone(),
            record.holder.clone(),
            record.acquired_ms,
        );
        if shown.as_ref() == Some(&key) {
            return Ok(());
        }
        if shown.as_ref().is_some_and(|(was, ..)| *was != record.role) {
            self.stats.role_changed();
        }
        if let Role::Standby {
            holder: Some(holder),
        } = role
        {
            tracing::info!(role = "standby", holder = %holder.holder, "standby: another relay holds the lease");
        }
        *shown = Some(key);
        self.journal
            .set_meta(ROLE_META, serde_json::to_vec(&record).unwrap_or_default())
            .await
    }

    /// One term: catch up, then the socket and the reconciler until the
    /// role is no longer leader or `cancel`.
    async fn term(
        &mut self,
        cancel: &CancellationToken,
        source_beat: &mut Heartbeat,
        reconciler_beat: &mut Heartbeat,
    ) -> Result<(), TermError> {
        let term = cancel.child_token();
        let mut role = self.role.clone();
        let stepped_down = {
            let term = term.clone();
            async move {
                loop {
                    tokio::select! {
                        _ = term.cancelled() => return,
                        changed = role.changed() => {
                            if changed.is_err() || !role.borrow_and_update().is_leader() {
                                term.cancel();
                                return;
                            }
                        }
                    }
                }
            }
        };
        let work = async {
            self.take_over(&term, source_beat, reconciler_beat).await?;
            let source = async {
                let result = self.source.run(term.clone(), source_beat).await;
                term.cancel();
                result.map_err(TermError::from)
            };
            let reconciler = async {
                let result = match &self.reconciler {
                    Some(reconciler) => {
                        reconciler
                            .run(self.journal.clone(), term.clone(), reconciler_beat)
                            .await
                    }
                    None => {
                        term.cancelled().await;
                        Ok(())
                    }
                };
                term.cancel();
                result.map_err(TermError::from)
            };
            let last_live = keep_last_live(&*self.store, self.live.clone(), term.clone());
            let (source, reconciler, ()) = tokio::join!(source, reconciler, last_live);
            source.and(reconciler)
        };
        let (result, ()) = tokio::join!(
            async {
                let result = work.await;
                term.cancel();
                result
            },
            stepped_down
        );
        result
    }

    /// The takeover: the window since the last-live instant goes into the
    /// gap ledger and is reconciled before the socket opens.
    async fn take_over(
        &self,
        term: &CancellationToken,
        source_beat: &mut Heartbeat,
        reconciler_beat: &mut Heartbeat,
    ) -> Result<(), TermError> {
        let now = clock::now_ms();
        let bucket = match timeout(LAST_LIVE_READ, self.store.last_live()).await {
            Ok(Ok(at)) => at,
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot read the last-live instant from the lease bucket; reconciling from this relay's own");
                None
            }
            Err(_) => {
                tracing::warn!(
                    "no last-live instant from the lease bucket in time; reconciling from this relay's own"
                );
                None
            }
        };
        let own = self.journal.live_until().await?;
        let from = bucket.max(own);
        if let Some(from) = from.filter(|from| *from < now) {
            // LIVE_UNTIL only moves forward: the later of the two wins, and
            // the window up to now becomes a gap, as a reconnect's would.
            self.journal.still_live(from).await?;
            self.journal.went_live(now).await?;
            tracing::info!(
                from = %ms_text(from),
                bucket_last_live = %bucket.map_or_else(|| "none".to_owned(), ms_text),
                "took over: reconciling since the last moment a leader's socket was known live, then opening the socket"
            );
        }
        let Some(reconciler) = &self.reconciler else {
            return Ok(());
        };
        let catch_up = reconciler.catch_up(&self.journal);
        tokio::select! {
            _ = term.cancelled() => Ok(()),
            // The source has not started yet: its heartbeat beats here too,
            // or the watchdog would take a long catch-up for a stalled loop.
            done = timeout(CATCH_UP_LIMIT, source_beat.during(reconciler_beat.during(catch_up))) => match done {
                Ok(done) => {
                    done?;
                    Ok(())
                }
                Err(_) => {
                    tracing::warn!("the takeover's reconciliation takes longer than 60s; opening the socket, it goes on beside it");
                    Ok(())
                }
            },
        }
    }
}

fn ms_text(ms: u64) -> String {
    clock::timestamp(ms).map_or_else(|| ms.to_string(), clock::rfc3339_ms)
}

/// The role as `status` reads it from a journal (`None`: no `[standby]`, or
/// the daemon never ran with it).
pub fn recorded(bytes: Option<Vec<u8>>) -> Option<RoleRecord> {
    bytes.and_then(|bytes| serde_json::from_slice(&bytes).ok())
}
