//! The lease of an active/standby pair (docs/contract.md §3.7): which of two
//! relays sharing one Zoom subscription may open its socket.
//!
//! Owns the lease loop ([`Lease::run`]: take the key with `create`, renew it
//! with `update` on the last revision every `ttl`/5, step down when no renewal
//! succeeded within 2/3 of `ttl` counted on the monotonic clock from when the
//! request was sent, or at once when an update loses the compare-and-swap),
//! the [`Role`] it publishes, the [`Gate`] the source asks before every
//! connect (the lease held with at least a third of `ttl` left), and the
//! last-live writer ([`keep_last_live`]). The store behind it is a trait
//! ([`LeaseStore`]) so that the timing is tested with a paused clock; the NATS
//! KV implementation is [`nats::NatsLease`].
//!
//! Deliberately not here: what a term of leadership runs (the socket, the
//! reconciler, the takeover's catch-up) — that is `term`, which the app starts
//! and stops on the role changes published here.

pub mod ledger;
pub mod nats;
pub mod term;

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use crate::clock;

/// The shortest `ttl` validation accepts.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// The longest lease bucket name (its state bucket adds `_state`, its stream `KV_`).
pub const MAX_BUCKET_NAME: usize = 200;
/// Journal meta key: the role as last published (JSON [`RoleRecord`]), for
/// `zcc-relay status` run beside the daemon.
pub const ROLE_META: &str = "lease_role";
/// The last-live instant reaches the bucket at most this often.
pub const LAST_LIVE_EVERY: Duration = Duration::from_secs(1);

/// A KV bucket name: letters, digits, `_` and `-`.
pub fn is_bucket_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_BUCKET_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A KV key for the subscription: `<account>.<subscription>`, every character
/// a key cannot hold made `_`.
pub fn key_for(account_id: &str, subscription_id: &str) -> String {
    let token = |text: &str| -> String {
        let cleaned: String = text
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '=' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if cleaned.is_empty() {
            "_".to_owned()
        } else {
            cleaned
        }
    };
    format!("{}.{}", token(account_id), token(subscription_id))
}

/// Who holds the lease: the value stored under the lease key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// `host:pid` of the holder.
    pub holder: String,
    /// When it took the lease (wall clock, ms).
    pub acquired_ms: u64,
}

impl Holding {
    pub fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self).unwrap_or_default().into()
    }

    pub fn decode(bytes: &[u8]) -> Option<Holding> {
        serde_json::from_slice(bytes).ok()
    }
}

/// This relay's name in the lease: `host:pid`.
pub fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|text| text.trim().to_owned())
        .ok()
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

/// What a store operation can say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// `create` found the key held, or `update` lost the compare-and-swap.
    #[error("the lease is held by another relay")]
    Lost,
    /// No answer, or an error that says nothing about the lease.
    #[error("{0}")]
    Unavailable(String),
}

/// The lease's storage: a key with a compare-and-swap on its revision, in a
/// bucket whose `max_age` is the ttl, plus the last-live instant under a key
/// that outlives the lease.
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes the key if nobody holds it; the new revision.
    fn create(&self, value: bytes::Bytes) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Writes the key if its revision is still `revision`; the new revision.
    fn update(
        &self,
        value: bytes::Bytes,
        revision: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Deletes the key if its revision is still `revision` (a clean stop).
    fn release(&self, revision: u64) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Who holds the key now, if anyone.
    fn holder(&self) -> impl Future<Output = Result<Option<Holding>, StoreError>> + Send;
    /// Stores the last moment the leader's socket was known live (ms).
    fn write_last_live(&self, at_ms: u64) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The last-live instant a leader stored, if any.
    fn last_live(&self) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
}

impl<T: LeaseStore> LeaseStore for std::sync::Arc<T> {
    async fn create(&self, value: bytes::Bytes) -> Result<u64, StoreError> {
        (**self).create(value).await
    }

    async fn update(&self, value: bytes::Bytes, revision: u64) -> Result<u64, StoreError> {
        (**self).update(value, revision).await
    }

    async fn release(&self, revision: u64) -> Result<(), StoreError> {
        (**self).release(revision).await
    }

    async fn holder(&self) -> Result<Option<Holding>, StoreError> {
        (**self).holder().await
    }

    async fn write_last_live(&self, at_ms: u64) -> Result<(), StoreError> {
        (**self).write_last_live(at_ms).await
    }

    async fn last_live(&self) -> Result<Option<u64>, StoreError> {
        (**self).last_live().await
    }
}

/// This relay's part in the pair, as the lease loop last decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not holding the lease. `holder`: who does, as last read (`None`:
    /// nobody, or the store did not say).
    Standby { holder: Option<Holding> },
    /// Holding it since `acquired_ms`; it runs out at `expires` (monotonic:
    /// the send time of the last successful renewal plus `ttl`).
    Leader { acquired_ms: u64, expires: Instant },
}

impl Role {
    pub fn is_leader(&self) -> bool {
        matches!(self, Role::Leader { .. })
    }

    /// `leader` or `standby`.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Leader { .. } => "leader",
            Role::Standby { .. } => "standby",
        }
    }

    /// What `status` and the metrics show: the role, the holder, the age of
    /// the holder's lease.
    pub fn record(&self, me: &str, now_ms: u64) -> RoleRecord {
        let (holder, acquired_ms) = match self {
            Role::Leader { acquired_ms, .. } => (Some(me.to_owned()), Some(*acquired_ms)),
            Role::Standby { holder: Some(h) } => (Some(h.holder.clone()), Some(h.acquired_ms)),
            Role::Standby { holder: None } => (None, None),
        };
        RoleRecord {
            role: self.name().to_owned(),
            holder,
            acquired_ms,
            lease_age_seconds: acquired_ms.map(|at| now_ms.saturating_sub(at) / 1000),
            at_ms: now_ms,
        }
    }
}

/// The role as the metrics and the systemd status line read it.
#[derive(Clone)]
pub struct LeaseView {
    pub role: watch::Receiver<Role>,
    /// This relay's name in the lease.
    pub holder: String,
    /// `<bucket>/<key>`: the same for both relays of a pair (the metrics'
    /// `lease` label, by which alerts group a pair).
    pub lease: String,
}

impl LeaseView {
    pub fn record(&self, now_ms: u64) -> RoleRecord {
        self.role.borrow().record(&self.holder, now_ms)
    }
}

/// The role as `status` reads it from the journal and the metrics show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRecord {
    pub role: String,
    pub holder: Option<String>,
    pub acquired_ms: Option<u64>,
    pub lease_age_seconds: Option<u64>,
    /// When this was written (ms).
    pub at_ms: u64,
}

/// The source's question before every connect: is the lease held with at
/// least a third of `ttl` left?
#[derive(Clone)]
pub struct Gate {
    pub role: watch::Receiver<Role>,
    pub ttl: Duration,
}

impl Gate {
    pub fn may_connect(&self) -> bool {
        match &*self.role.borrow() {
            Role::Leader { expires, .. } => {
                expires.saturating_duration_since(Instant::now()) >= self.ttl / 3
            }
            Role::Standby { .. } => false,
        }
    }

    /// Resolves when the role changes (a renewal included).
    pub async fn changed(&mut self) {
        if self.role.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The lease loop of one relay.
pub struct Lease<S> {
    pub store: S,
    pub ttl: Duration,
    /// This relay's name (`host:pid`).
    pub holder: String,
    pub role: watch::Sender<Role>,
}

/// Why a leader stepped down (the log line says which).
#[derive(Debug, PartialEq, Eq)]
enum StepDown {
    Deadline,
    Lost,
}

impl<S: LeaseStore> Lease<S> {
    fn renew_every(&self) -> Duration {
        self.ttl / 5
    }

    fn deadline_after(&self) -> Duration {
        self.ttl * 2 / 3
    }

    /// Competes for the lease and holds it while it can, until `cancel`; a
    /// leader releases the lease on the way out, so the standby need not wait
    /// for it to expire.
    pub async fn run(self, cancel: CancellationToken) {
        let mut unavailable = Quiet::default();
        loop {
            if let Some((revision, sent, acquired_ms)) =
                self.standby(&cancel, &mut unavailable).await
            {
                match self
                    .lead(revision, sent, acquired_ms, &cancel, &mut unavailable)
                    .await
                {
                    None => return,
                    Some(StepDown::Deadline) => tracing::warn!(
                        role = "standby",
                        ttl = %humantime::format_duration(self.ttl),
                        "stepped down: no lease renewal succeeded within 2/3 of ttl; Zoom socket closed, reconciliation stopped"
                    ),
                    Some(StepDown::Lost) => tracing::warn!(
                        role = "standby",
                        "stepped down: another relay holds the lease; Zoom socket closed, reconciliation stopped"
                    ),
                }
                self.role.send_replace(Role::Standby { holder: None });
            } else {
                return;
            }
        }
    }

    /// Polls `create` every `ttl`/5 until it succeeds (`Some((revision, sent,
    /// acquired_ms))`) or `cancel` fires (`None`).
    async fn standby(
        &self,
        cancel: &CancellationToken,
        unavailable: &mut Quiet,
    ) -> Option<(u64, Instant, u64)> {
        loop {
            let acquired_ms = clock::now_ms();
            let value = Holding {
                holder: self.holder.clone(),
                acquired_ms,
            }
            .encode();
            let sent = Instant::now();
            let answer = tokio::select! {
                _ = cancel.cancelled() => return None,
                answer = timeout(self.deadline_after(), self.store.create(value)) => answer,
            };
            match answer {
                Ok(Ok(revision)) => {
                    unavailable.recovered();
                    return Some((revision, sent, acquired_ms));
                }
                Ok(Err(StoreError::Lost)) => {
                    unavailable.recovered();
                    let holder = tokio::select! {
                        _ = cancel.cancelled() => return None,
                        holder = timeout(self.renew_every(), self.store.holder()) => holder,
                    };
                    if let Ok(Ok(holder)) = holder {
                        self.role.send_if_modified(|role| {
                            let now = Role::Standby { holder };
                            if *role == now {
                                false
                            } else {
                                *role = now;
                                true
                            }
                        });
                    }
                }
                Ok(Err(StoreError::Unavailable(error))) => unavailable.note(&error),
                Err(_) => unavailable.note("no answer from the lease server"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = sleep(self.renew_every()) => {}
            }
        }
    }

    /// Holds the lease taken at `sent` with `revision`: renews it every
    /// `ttl`/5 until a renewal loses (`Some(Lost)`), none succeeded within
    /// 2/3 of `ttl` of the last good one's send time (`Some(Deadline)`), or
    /// `cancel` (`None`, after releasing the lease).
    async fn lead(
        &self,
        mut revision: u64,
        sent: Instant,
        acquired_ms: u64,
        cancel: &CancellationToken,
        unavailable: &mut Quiet,
    ) -> Option<StepDown> {
        let mut last_good = sent;
        let mut next_renewal = sent + self.renew_every();
        self.role.send_replace(Role::Leader {
            acquired_ms,
            expires: last_good + self.ttl,
        });
        tracing::info!(role = "leader", holder = %self.holder, "took the lease: this relay is the leader and opens the Zoom socket");
        let value = Holding {
            holder: self.holder.clone(),
            acquired_ms,
        }
        .encode();
        loop {
            let deadline = last_good + self.deadline_after();
            tokio::select! {
                _ = cancel.cancelled() => {
                    self.release(revision).await;
                    return None;
                }
                _ = sleep_until(deadline) => return Some(StepDown::Deadline),
                _ = sleep_until(next_renewal) => {}
            }
            let sent = Instant::now();
            next_renewal = sent + self.renew_every();
            let answer = tokio::select! {
                _ = cancel.cancelled() => {
                    self.release(revision).await;
                    return None;
                }
                _ = sleep_until(deadline) => return Some(StepDown::Deadline),
                answer = self.store.update(value.clone(), revision) => answer,
            };
            match answer {
                Ok(new_revision) => {
                    unavailable.recovered();
                    revision = new_revision;
                    last_good = sent;
                    self.role.send_replace(Role::Leader {
                        acquired_ms,
                        expires: sent + self.ttl,
                    });
                }
                Err(StoreError::Lost) => return Some(StepDown::Lost),
                Err(StoreError::Unavailable(error)) => unavailable.note(&error),
            }
        }
    }

    /// Gives the lease up (shutdown), so the standby takes over at its next
    /// poll; on no answer within a second the lease simply expires.
    async fn release(&self, revision: u64) {
        self.role.send_replace(Role::Standby { holder: None });
        match timeout(Duration::from_secs(1), self.store.release(revision)).await {
            Ok(Ok(())) => tracing::info!(role = "standby", "released the lease"),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not release the lease; it expires after ttl")
            }
            Err(_) => tracing::warn!("could not release the lease in 1s; it expires after ttl"),
        }
    }
}

/// Logs the lease server's trouble once per outage, and its end.
#[derive(Default)]
struct Quiet {
    failing: bool,
}

impl Quiet {
    fn note(&mut self, error: &str) {
        if !self.failing {
            self.failing = true;
            tracing::warn!(error, "lease server unavailable; retrying");
        }
    }

    fn recovered(&mut self) {
        if std::mem::take(&mut self.failing) {
            tracing::info!("lease server reachable again");
        }
    }
}

/// Writes the leader's last-live instant to the store at most once per
/// [`LAST_LIVE_EVERY`], whenever it moved, until `cancel`.
pub async fn keep_last_live<S: LeaseStore>(
    store: &S,
    mut live: watch::Receiver<u64>,
    cancel: CancellationToken,
) {
    // Only what this term's socket saw: a value from an earlier term would
    // move the bucket's instant back behind the last leader's.
    let mut written = *live.borrow_and_update();
    loop {
        let at_ms = *live.borrow_and_update();
        if at_ms > written {
            match timeout(LAST_LIVE_EVERY, store.write_last_live(at_ms)).await {
                Ok(Ok(())) => written = at_ms,
                Ok(Err(error)) => tracing::debug!(%error, "last-live instant not stored"),
                Err(_) => tracing::debug!("last-live instant not stored in time"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = sleep(LAST_LIVE_EVERY) => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = live.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests;
