//! The pair's ledger of note revisions (DESIGN.md §3.7, docs/contract.md
//! §3.7): both relays must give a note version the same (`id`, `revision`),
//! because sinks deduplicate on `webhook-id`.
//!
//! A relay alone numbers a note's versions from its own journal. In a pair
//! that is not enough: a new leader has not seen the versions the old one
//! forwarded, and Zoom's REST API lists only a note's latest text, so the
//! new leader would number that text 1 while the old leader had sent it as 2.
//! So before a note version its journal does not know goes in, the leader
//! looks it up here — one KV entry per note, version fingerprint (text and
//! last-modified instant, `zoom::event::note_version`) → revision — and, when
//! it is not there, assigns the next number above both the ledger's and the
//! journal's and records it with a compare-and-swap before the journal, and so
//! any sink, sees the record. An entry lives 30 days after its last write (the
//! state bucket's `max_age`), as long as the journal keeps a key.
//!
//! When the ledger cannot number a version (no answer within its wait — the
//! NATS server gone: the lease is lost within 2/3 `ttl` then anyway — or an
//! error), or the relay stops leading meanwhile, the record goes in numbered
//! above everything the ledger and the journal showed, with a warning and a
//! counted fallback; after a wait that timed out the ledger is not asked for
//! one more wait. An event is never dropped for the ledger's sake, and the
//! socket never waits on it for longer than one wait per outage.
//!
//! Owns the entry format, the assignment and [`submit`], the one way the
//! socket and the reconciler put a record into the journal. The store is a
//! trait ([`NoteStore`]) so that the assignment is tested in memory; the NATS
//! KV implementation is [`super::nats::NatsLease`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::StoreError;
use crate::journal::read::KeyState;
use crate::journal::{AppendOutcome, Journal, JournalError};
use crate::record::NewRecord;
use crate::telemetry::stats::Stats;

/// The versions an entry keeps, as the journal's dedup index does
/// (`journal::tables::MAX_VERSIONS`); the oldest go first.
pub const MAX_VERSIONS: usize = 64;
/// Lost compare-and-swaps in a row (the other relay writing the same note)
/// before an assignment gives up and the journal numbers the version.
const CAS_ATTEMPTS: u32 = 16;
/// After a lost compare-and-swap, a random pause of up to 1, 2, 4 … this many
/// milliseconds, so that two relays writing one note stop colliding.
const CAS_PAUSE_MAX_MS: u64 = 64;

/// A stored entry: its bytes and its store revision.
pub type Stored = (Vec<u8>, u64);

/// Where the ledger's entries live: a key with a compare-and-swap on its
/// revision. Keys are [`entry_key`]s.
pub trait NoteStore: Send + Sync + 'static {
    /// The entry's bytes and its store revision; `None` when there is none.
    fn read<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Stored>, StoreError>>;
    /// Writes the entry if its store revision is still `expected` (`None`:
    /// if there is no entry). [`StoreError::Lost`] when it is not.
    fn write<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;
}

/// The store key of a note's entry: the SHA-256 of its natural key, in hex
/// (a natural key holds `:`, which a KV key cannot).
pub fn entry_key(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// One note's entry: the natural key (to read the bucket by) and each
/// version's fingerprint in hex with its revision, oldest first.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    id: String,
    versions: Vec<(String, u32)>,
}

impl Entry {
    fn new(id: &str) -> Entry {
        Entry {
            id: id.to_owned(),
            versions: Vec::new(),
        }
    }

    fn decode(bytes: &[u8], id: &str) -> Result<Entry, StoreError> {
        let entry: Entry = serde_json::from_slice(bytes).map_err(|error| {
            StoreError::Unavailable(format!("note ledger entry for {id} is unreadable: {error}"))
        })?;
        if entry.id != id {
            return Err(StoreError::Unavailable(format!(
                "note ledger entry for {id} names {}",
                entry.id
            )));
        }
        Ok(entry)
    }

    fn revision_of(&self, version: &str) -> Option<u32> {
        self.versions
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, revision)| *revision)
    }

    fn highest(&self) -> u32 {
        self.versions.iter().map(|(_, r)| *r).max().unwrap_or(0)
    }

    /// Adds a version; past [`MAX_VERSIONS`] the oldest goes (the highest
    /// revision stays, so numbering never goes back).
    fn push(&mut self, version: String, revision: u32) {
        self.versions.push((version, revision));
        if self.versions.len() > MAX_VERSIONS {
            let lowest = self
                .versions
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, r))| *r)
                .map(|(at, _)| at)
                .unwrap_or(0);
            self.versions.remove(lowest);
        }
    }
}

/// The ledger as a relay of the pair uses it.
#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn NoteStore>,
    /// How long a record may wait for the ledger before the journal numbers it.
    wait: Duration,
    stats: Stats,
    /// Until when the ledger is not asked, after a failure.
    resting: Arc<Mutex<Option<Instant>>>,
}

impl Ledger {
    pub fn new(store: Arc<dyn NoteStore>, wait: Duration, stats: Stats) -> Ledger {
        Ledger {
            store,
            wait,
            stats,
            resting: Arc::default(),
        }
    }

    /// The revision of note `id`'s `version`: the one the ledger holds, else
    /// the next above the ledger's highest and `local` (the journal's
    /// highest), recorded before it is returned.
    pub async fn assign(&self, id: &str, version: [u8; 32], local: u32) -> Result<u32, StoreError> {
        self.assign_seeing(id, version, local, &AtomicU32::new(local))
            .await
    }

    /// [`assign`](Self::assign), keeping in `seen` the highest revision the
    /// ledger showed, for a fallback to number above.
    async fn assign_seeing(
        &self,
        id: &str,
        version: [u8; 32],
        local: u32,
        seen: &AtomicU32,
    ) -> Result<u32, StoreError> {
        let key = entry_key(id);
        let fingerprint = hex::encode(version);
        for attempt in 0..CAS_ATTEMPTS {
            let (mut entry, expected) = match self.store.read(&key).await? {
                None => (Entry::new(id), None),
                Some((bytes, revision)) => match Entry::decode(&bytes, id) {
                    Ok(entry) => (entry, Some(revision)),
                    // Unusable as it is: replaced, rather than leave the note
                    // unnumbered by the ledger until the entry expires.
                    Err(error) => {
                        tracing::warn!(record_id = %id, error = %error, "replacing the note ledger's entry for this note");
                        (Entry::new(id), Some(revision))
                    }
                },
            };
            seen.fetch_max(entry.highest(), Ordering::Relaxed);
            if let Some(revision) = entry.revision_of(&fingerprint) {
                return Ok(revision);
            }
            let revision = entry.highest().max(local) + 1;
            entry.push(fingerprint.clone(), revision);
            let value = serde_json::to_vec(&entry).unwrap_or_default();
            match self.store.write(&key, value, expected).await {
                Ok(_) => return Ok(revision),
                // The other relay wrote this note in between: read it again,
                // after a pause that keeps the two from colliding again.
                Err(StoreError::Lost) if attempt + 1 < CAS_ATTEMPTS => {
                    let most = (1u64 << attempt.min(6)).min(CAS_PAUSE_MAX_MS);
                    let pause = rand::random_range(0..=most);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(StoreError::Lost) => {}
                Err(error) => return Err(error),
            }
        }
        Err(StoreError::Unavailable(format!(
            "note ledger entry for {id} changed under {CAS_ATTEMPTS} writes in a row"
        )))
    }
}

/// Why a note version was numbered without the ledger.
#[derive(Debug)]
enum Fallback {
    /// The ledger timed out a moment ago and is not asked until `until`.
    Resting { until: Instant },
    /// No answer within the wait: the ledger rests.
    TimedOut(Duration),
    /// This relay stopped leading while it waited.
    Stopped,
    /// The store answered with an error (or kept losing the
    /// compare-and-swap): this record only; the next asks again.
    Failed(StoreError),
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fallback::Resting { until } => write!(
                f,
                "not asked: it timed out, and rests {} more",
                humantime::format_duration(until.saturating_duration_since(Instant::now()))
            ),
            Fallback::TimedOut(wait) => {
                write!(f, "no answer within {}", humantime::format_duration(*wait))
            }
            Fallback::Stopped => f.write_str("this relay stopped leading while it waited"),
            Fallback::Failed(error) => write!(f, "{error}"),
        }
    }
}

/// What [`submit`] hands back: the journal's answer, when its commit returns.
pub type PendingAppend = oneshot::Receiver<Result<AppendOutcome, JournalError>>;

/// Queues `record` for the journal (see [`Journal::submit`]). In a pair
/// (`ledger` set), a note version the journal does not know yet is numbered
/// by the ledger first; everything else goes straight in. `stop` (the
/// source's: the relay stopped leading) ends a wait for the ledger at once.
pub async fn submit(
    ledger: Option<&Ledger>,
    journal: &Journal,
    record: NewRecord,
    stop: Option<&CancellationToken>,
) -> Result<PendingAppend, JournalError> {
    let (Some(ledger), Some(version)) = (ledger, record.version) else {
        return journal.submit(record).await;
    };
    let local = match journal.key_state(&record.id, Some(version)).await? {
        // A duplicate: the writer says so without the ledger.
        KeyState::Known => return journal.submit(record).await,
        KeyState::Unknown => 0,
        KeyState::Revised { revision } => revision,
    };
    let seen = AtomicU32::new(local);
    let resting = *ledger.resting.lock().unwrap_or_else(|p| p.into_inner());
    let assigned = match resting {
        Some(until) if Instant::now() < until => Err(Fallback::Resting { until }),
        _ => {
            let stopped = async {
                match stop {
                    Some(stop) => stop.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                assigned = tokio::time::timeout(
                    ledger.wait,
                    ledger.assign_seeing(&record.id, version, local, &seen),
                ) => match assigned {
                    Ok(Ok(revision)) => Ok(revision),
                    Ok(Err(error)) => Err(Fallback::Failed(error)),
                    Err(_) => Err(Fallback::TimedOut(ledger.wait)),
                },
                () = stopped => Err(Fallback::Stopped),
            }
        }
    };
    let revision = match assigned {
        Ok(revision) => {
            *ledger.resting.lock().unwrap_or_else(|p| p.into_inner()) = None;
            Some(revision)
        }
        Err(fallback) => {
            // Only a ledger that kept the socket waiting rests: an error it
            // answered at once costs the next record nothing to ask again.
            if let Fallback::TimedOut(wait) = fallback {
                *ledger.resting.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + wait);
            }
            ledger.stats.ledger_fallback();
            // Above every revision the ledger showed, when it showed one
            // above the journal's; else the journal's next.
            let seen = seen.load(Ordering::Relaxed);
            let revision = (seen > local).then(|| seen + 1);
            tracing::warn!(
                record_id = %record.id,
                error = %fallback,
                "the note ledger could not number this note version; this relay numbered it, and the other relay of the pair may give the number to another text (a sink then drops one as a duplicate)"
            );
            revision
        }
    };
    journal.submit_numbered(record, revision).await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;

    use serde_json::value::RawValue;

    use super::*;
    use crate::journal::SinkRoute;

    /// A store in memory, with the faults a KV server has.
    #[derive(Default)]
    struct Memory {
        entries: Mutex<HashMap<String, (Vec<u8>, u64)>>,
        revision: Mutex<u64>,
        /// Every call answers `Unavailable`.
        down: AtomicBool,
        /// Every call waits forever.
        hangs: AtomicBool,
        /// The next this many writes find that the other relay wrote first
        /// (a version of its own, numbered as it would).
        races: AtomicU32,
        writes: AtomicU32,
    }

    impl Memory {
        /// Locks the entries, then the revision (as `write` does).
        fn put(&self, key: &str, value: Vec<u8>) -> u64 {
            let mut entries = self.entries.lock().unwrap();
            let mut revision = self.revision.lock().unwrap();
            *revision += 1;
            entries.insert(key.to_owned(), (value, *revision));
            *revision
        }

        async fn fault(&self) -> Result<(), StoreError> {
            if self.hangs.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("no responders".into()));
            }
            Ok(())
        }

        fn entry(&self, id: &str) -> Entry {
            let entries = self.entries.lock().unwrap();
            let (bytes, _) = &entries[&entry_key(id)];
            Entry::decode(bytes, id).unwrap()
        }
    }

    impl NoteStore for Memory {
        fn read<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Stored>, StoreError>> {
            Box::pin(async move {
                self.fault().await?;
                Ok(self.entries.lock().unwrap().get(key).cloned())
            })
        }

        fn write<'a>(
            &'a self,
            key: &'a str,
            value: Vec<u8>,
            expected: Option<u64>,
        ) -> BoxFuture<'a, Result<u64, StoreError>> {
            Box::pin(async move {
                self.fault().await?;
                self.writes.fetch_add(1, Ordering::SeqCst);
                if self
                    .races
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    // The other relay's write lands first: a version of
                    // its own, numbered next.
                    let current = self.entries.lock().unwrap().get(key).cloned();
                    let mut entry: Entry = match current {
                        Some((bytes, _)) => serde_json::from_slice(&bytes).unwrap(),
                        None => Entry {
                            id: serde_json::from_slice::<Entry>(&value).unwrap().id,
                            versions: Vec::new(),
                        },
                    };
                    let next = entry.highest() + 1;
                    entry.push(format!("ff{next:062}"), next);
                    self.put(key, serde_json::to_vec(&entry).unwrap());
                    return Err(StoreError::Lost);
                }
                // Compared and written under one lock, as the server does.
                let mut entries = self.entries.lock().unwrap();
                if entries.get(key).map(|(_, r)| *r) != expected {
                    return Err(StoreError::Lost);
                }
                let mut revision = self.revision.lock().unwrap();
                *revision += 1;
                entries.insert(key.to_owned(), (value, *revision));
                Ok(*revision)
            })
        }
    }

    fn ledger(store: &Arc<Memory>) -> Ledger {
        Ledger::new(store.clone(), Duration::from_secs(5), Stats::default())
    }

    fn version(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[tokio::test]
    async fn a_version_keeps_its_revision_and_a_new_one_goes_above_ledger_and_journal() {
        let store = Arc::new(Memory::default());
        let (a, b) = (ledger(&store), ledger(&store));
        assert_eq!(a.assign("note:E:N", version(1), 0).await, Ok(1));
        assert_eq!(a.assign("note:E:N", version(2), 1).await, Ok(2));
        // The other relay, whose journal has never seen the note: the numbers
        // the first one gave, and the next above them for a version of its own.
        assert_eq!(b.assign("note:E:N", version(2), 0).await, Ok(2));
        assert_eq!(b.assign("note:E:N", version(1), 0).await, Ok(1));
        assert_eq!(b.assign("note:E:N", version(3), 0).await, Ok(3));
        // A journal that numbered above the ledger (before the pair) wins.
        assert_eq!(a.assign("note:E:N", version(4), 7).await, Ok(8));
        // Another note starts at 1.
        assert_eq!(b.assign("note:E:M", version(1), 0).await, Ok(1));
        let entry = store.entry("note:E:N");
        assert_eq!(entry.id, "note:E:N");
        assert_eq!(
            entry.versions.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
            [1, 2, 3, 8]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_compare_and_swap_reads_the_entry_again() {
        let store = Arc::new(Memory::default());
        store.races.store(2, Ordering::SeqCst);
        // The other relay writes a version of its own (1), then another (2),
        // each just before this one's write: this one's goes above both.
        assert_eq!(ledger(&store).assign("n", version(1), 0).await, Ok(3));
        assert_eq!(store.writes.load(Ordering::SeqCst), 3);
        assert_eq!(ledger(&store).assign("n", version(1), 0).await, Ok(3));
        // A store that never stops racing is given up on, not spun on.
        store.races.store(u32::MAX, Ordering::SeqCst);
        let error = ledger(&store).assign("n", version(2), 0).await.unwrap_err();
        assert!(error.to_string().contains("16 writes in a row"), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_relays_numbering_at_once_never_share_a_revision() {
        let store = Arc::new(Memory::default());
        let tasks: Vec<_> = (0..16u8)
            .map(|n| {
                let ledger = ledger(&store);
                // Two relays see each version: the same number for both.
                tokio::spawn(async move {
                    let first = ledger.assign("n", version(n / 2), 0).await.unwrap();
                    (n / 2, first)
                })
            })
            .collect();
        let mut numbers: HashMap<u8, u32> = HashMap::new();
        for task in tasks {
            let (v, revision) = task.await.unwrap();
            assert_eq!(
                *numbers.entry(v).or_insert(revision),
                revision,
                "version {v}"
            );
        }
        let mut revisions: Vec<u32> = numbers.values().copied().collect();
        revisions.sort_unstable();
        assert_eq!(revisions, (1..=8).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn past_the_limit_the_oldest_versions_go_and_numbering_never_goes_back() {
        let store = Arc::new(Memory::default());
        let ledger = ledger(&store);
        for n in 0..=MAX_VERSIONS as u8 {
            assert_eq!(
                ledger.assign("n", version(n), 0).await,
                Ok(u32::from(n) + 1)
            );
        }
        let entry = store.entry("n");
        assert_eq!(entry.versions.len(), MAX_VERSIONS);
        assert_eq!(entry.revision_of(&hex::encode(version(0))), None);
        assert_eq!(entry.highest(), MAX_VERSIONS as u32 + 1);
    }

    #[tokio::test]
    async fn an_unreadable_entry_is_replaced() {
        let store = Arc::new(Memory::default());
        store.put(&entry_key("n"), b"{not json".to_vec());
        assert_eq!(ledger(&store).assign("n", version(1), 3).await, Ok(4));
        assert_eq!(store.entry("n").versions, [(hex::encode(version(1)), 4)]);
        store.put(&entry_key("n"), br#"{"id":"other","versions":[]}"#.to_vec());
        assert_eq!(ledger(&store).assign("n", version(1), 4).await, Ok(5));
        assert_eq!(store.entry("n").id, "n");
    }

    fn note(id: &str, version: u8) -> NewRecord {
        NewRecord {
            id: id.into(),
            event: "contact_center.engagement_note_added".into(),
            event_ts: 1,
            source: crate::record::Source::Reconcile,
            received_at: "2026-01-01T00:00:00.000Z".into(),
            payload: RawValue::from_string("{}".into()).unwrap(),
            version: Some([version; 32]),
            view: Default::default(),
        }
    }

    async fn stored(
        ledger: Option<&Ledger>,
        journal: &Journal,
        record: NewRecord,
    ) -> AppendOutcome {
        submit(ledger, journal, record, None)
            .await
            .unwrap()
            .await
            .unwrap()
            .unwrap()
    }

    fn journal(dir: &tempfile::TempDir) -> Journal {
        let route = SinkRoute {
            name: "a".into(),
            filter: crate::route::EventFilter::new(Vec::new()),
        };
        Journal::open(dir.path(), vec![route]).unwrap()
    }

    #[tokio::test]
    async fn submit_numbers_a_new_note_version_from_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let journal = journal(&dir);
        let store = Arc::new(Memory::default());
        let ledger = ledger(&store);
        // The old leader forwarded versions 1 and 2; REST lists only the 2nd.
        ledger.assign("n", version(1), 0).await.unwrap();
        ledger.assign("n", version(2), 1).await.unwrap();
        assert!(matches!(
            stored(Some(&ledger), &journal, note("n", 2)).await,
            AppendOutcome::Stored { revision: 2, .. }
        ));
        assert!(matches!(
            stored(Some(&ledger), &journal, note("n", 3)).await,
            AppendOutcome::Stored { revision: 3, .. }
        ));
        // A version the journal knows costs the ledger nothing.
        let writes = store.writes.load(Ordering::SeqCst);
        store.down.store(true, Ordering::SeqCst);
        assert_eq!(
            stored(Some(&ledger), &journal, note("n", 3)).await,
            AppendOutcome::Duplicate
        );
        assert_eq!(store.writes.load(Ordering::SeqCst), writes);
        assert_eq!(ledger.stats.snapshot().ledger_fallbacks, 0);
        // Without a ledger (no pair), the journal numbers as it always has.
        assert!(matches!(
            stored(None, &journal, note("m", 5)).await,
            AppendOutcome::Stored { revision: 1, .. }
        ));
        journal.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_journal_numbers_when_the_ledger_fails_and_a_ledger_that_timed_out_rests() {
        let dir = tempfile::tempdir().unwrap();
        let journal = journal(&dir);
        let store = Arc::new(Memory::default());
        let ledger = ledger(&store);
        // An error at once: this record only.
        store.down.store(true, Ordering::SeqCst);
        assert!(matches!(
            stored(Some(&ledger), &journal, note("n", 1)).await,
            AppendOutcome::Stored { revision: 1, .. }
        ));
        store.down.store(false, Ordering::SeqCst);
        assert!(matches!(
            stored(Some(&ledger), &journal, note("n", 2)).await,
            AppendOutcome::Stored { revision: 2, .. }
        ));
        assert_eq!(
            store.writes.load(Ordering::SeqCst),
            1,
            "asked again at once"
        );
        // No answer: waited for at most the wait, then not asked for one
        // more wait (a store that would hang costs nothing).
        store.hangs.store(true, Ordering::SeqCst);
        let started = Instant::now();
        assert!(matches!(
            stored(Some(&ledger), &journal, note("n", 3)).await,
            AppendOutcome::Stored { revision: 3, .. }
        ));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        let started = Instant::now();
        assert!(matches!(
            stored(Some(&ledger), &journal, note("n", 4)).await,
            AppendOutcome::Stored { revision: 4, .. }
        ));
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(ledger.stats.snapshot().ledger_fallbacks, 3);
        // Past the rest, answering again: numbered by the ledger, above the
        // journal.
        tokio::time::advance(Duration::from_secs(5)).await;
        store.hangs.store(false, Ordering::SeqCst);
        assert!(matches!(
            stored(Some(&ledger), &journal, note("n", 5)).await,
            AppendOutcome::Stored { revision: 5, .. }
        ));
        assert_eq!(store.writes.load(Ordering::SeqCst), 2);
        assert_eq!(ledger.stats.snapshot().ledger_fallbacks, 3);
        journal.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_relay_that_stops_leading_stops_waiting_for_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let journal = journal(&dir);
        let store = Arc::new(Memory::default());
        let ledger = ledger(&store);
        store.hangs.store(true, Ordering::SeqCst);
        let stop = CancellationToken::new();
        let stopping = {
            let stop = stop.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                stop.cancel();
            }
        };
        let started = Instant::now();
        let ((), submitted) = tokio::join!(
            stopping,
            submit(Some(&ledger), &journal, note("n", 1), Some(&stop))
        );
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert!(matches!(
            submitted.unwrap().await.unwrap().unwrap(),
            AppendOutcome::Stored { revision: 1, .. }
        ));
        // The ledger did not fail: the next version is asked for at once.
        store.hangs.store(false, Ordering::SeqCst);
        assert!(matches!(
            stored(Some(&ledger), &journal, note("n", 2)).await,
            AppendOutcome::Stored { revision: 2, .. }
        ));
        assert_eq!(store.writes.load(Ordering::SeqCst), 1);
        journal.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_fallback_numbers_above_what_the_ledger_showed() {
        let dir = tempfile::tempdir().unwrap();
        let journal = journal(&dir);
        let store = Arc::new(Memory::default());
        let ledger = ledger(&store);
        // The other relay numbered versions 1 and 2; this relay's writes to
        // the entry then keep losing.
        ledger.assign("n", version(1), 0).await.unwrap();
        ledger.assign("n", version(2), 1).await.unwrap();
        store.races.store(u32::MAX, Ordering::SeqCst);
        // Each try read one more of the other relay's versions (3, 4, …):
        // above the last it showed, not the journal's 1.
        let shown = 2 + CAS_ATTEMPTS - 1;
        assert_eq!(
            stored(Some(&ledger), &journal, note("n", 3)).await,
            AppendOutcome::Stored {
                seq: 1,
                revision: shown + 1,
                sinks: 1
            }
        );
        assert_eq!(ledger.stats.snapshot().ledger_fallbacks, 1);
        journal.close().await;
    }
}
