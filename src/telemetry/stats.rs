//! In-process counters: events received, persisted and suppressed as
//! duplicates per event type, records delivered per sink and type, frames
//! refused. Cheap to update from any task; read as a consistent snapshot.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeCounts {
    pub received: u64,
    pub persisted: u64,
    pub duplicates: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub by_event: BTreeMap<String, TypeCounts>,
    /// (sink, event) → delivered.
    pub delivered: BTreeMap<(String, String), u64>,
    pub dead_lettered: BTreeMap<String, u64>,
    /// event → records that only reconciliation found.
    pub reconciled: BTreeMap<String, u64>,
    pub bad_frames: u64,
    pub connects: u64,
}

impl Snapshot {
    pub fn delivered_to(&self, sink: &str) -> u64 {
        self.delivered
            .iter()
            .filter(|((s, _), _)| s == sink)
            .map(|(_, n)| n)
            .sum()
    }
}

#[derive(Clone)]
pub struct Stats {
    inner: Arc<Mutex<Snapshot>>,
    /// Bumped on every update, so waiters wake on change instead of polling.
    changes: Arc<watch::Sender<u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            inner: Arc::default(),
            changes: Arc::new(watch::channel(0).0),
        }
    }
}

impl Stats {
    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        // A poisoned lock only means another thread panicked mid-increment;
        // counts are still worth keeping.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard);
        drop(guard);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits until `condition` holds for a snapshot (checked now and after
    /// every change).
    pub async fn wait_until(&self, mut condition: impl FnMut(&Snapshot) -> bool) {
        let mut changes = self.changes.subscribe();
        loop {
            changes.borrow_and_update();
            if condition(&self.snapshot()) {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    pub fn received(&self, event: &str) {
        self.update(|s| s.by_event.entry(event.to_string()).or_default().received += 1);
    }

    pub fn persisted(&self, event: &str) {
        self.update(|s| s.by_event.entry(event.to_string()).or_default().persisted += 1);
    }

    pub fn duplicate(&self, event: &str) {
        self.update(|s| s.by_event.entry(event.to_string()).or_default().duplicates += 1);
    }

    pub fn delivered(&self, sink: &str, event: &str) {
        self.update(|s| {
            *s.delivered
                .entry((sink.to_string(), event.to_string()))
                .or_default() += 1
        });
    }

    pub fn dead_lettered(&self, sink: &str) {
        self.update(|s| *s.dead_lettered.entry(sink.to_string()).or_default() += 1);
    }

    pub fn reconciled(&self, event: &str) {
        self.update(|s| *s.reconciled.entry(event.to_string()).or_default() += 1);
    }

    pub fn bad_frame(&self) {
        self.update(|s| s.bad_frames += 1);
    }

    pub fn connected(&self) {
        self.update(|s| s.connects += 1);
    }

    pub fn snapshot(&self) -> Snapshot {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
