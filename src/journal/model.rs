//! The journal against a model of its contract: a proptest state machine.
//!
//! Random sequences of appends, settlements (ack, durable schedule,
//! dead-letter), the media stage's hand-on and retries (in half the cases
//! the journal runs with a media stage for recordings), operator actions
//! (redrive, purge), clean restarts and
//! kill -9s (some with sinks removed or added back) run against a real
//! [`Journal`] in a fresh directory. After every step, everything the public
//! API shows (outboxes, durable tier, dead-letters, stats, known sinks, stored
//! records, the committed seq, the interaction aggregates) is compared with an in-memory model made of
//! `BTreeMap`s. On a failure proptest shrinks the case, prints the shortest op
//! sequence that still fails and keeps its seed in `proptest-regressions/`.
//! `ZCC_PROPTEST_CASES=5000 cargo test --lib journal::model` looks harder.
//!
//! Not covered here: a kill in the middle of a commit's writes (the kill -9
//! loop against the real binary in `tests/it`) and concurrent producers
//! (`tests.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use proptest::prelude::*;
use proptest::strategy::{NewTree, ValueTree};
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::value::RawValue;
use tokio::runtime::Runtime;

use super::read::{self, SinkStats};
use super::{AppendOutcome, DB_FILE, DeadLetter, Journal, JournalError, MEDIA, Pending, SinkRoute};
use crate::interaction::Interaction;
use crate::record::{NewRecord, Source};
use crate::route::EventFilter;

/// Cases run by default; `ZCC_PROPTEST_CASES` asks for more (or fewer).
const DEFAULT_CASES: u32 = 64;
const MAX_OPS: usize = 40;
/// `read_due` is asked at each of these times (durable retries are due at 0–3 s).
const DUE_PROBES: [u64; 4] = [0, 1_000, 2_500, u64::MAX];
/// Larger than anything a case can hold, so a read returns every row.
const ALL: usize = 1_000;

fn config() -> ProptestConfig {
    let cases = std::env::var("ZCC_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        // Shrinking a 40-op case takes a few thousand runs; proptest's default
        // (4 per case) would stop at a long sequence. Bounded by time instead.
        max_shrink_iters: 20_000,
        max_shrink_time: 120_000,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn journal_matches_its_model(case in case()) {
        run(&case)?;
    }
}

// ---------------------------------------------------------------------------
// What a case is made of.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Recording,
    Note,
    EngagementStarted,
    Task,
}

impl Event {
    const EVERY: [Event; 4] = [
        Event::Recording,
        Event::Note,
        Event::EngagementStarted,
        Event::Task,
    ];

    fn name(self) -> &'static str {
        match self {
            Event::Recording => "contact_center.recording_completed",
            Event::Note => "contact_center.engagement_note_added",
            Event::EngagementStarted => "contact_center.engagement_started",
            Event::Task => "contact_center.task_created",
        }
    }
}

/// A sink's `events` setting. The model decides routing from `wants`, written
/// out by hand, not from the glob matcher the journal uses.
#[derive(Debug, Clone, Copy)]
enum Want {
    All,
    Recordings,
    Engagements,
    Notes,
    RecordingsAndTasks,
    Nothing,
}

impl Want {
    const EVERY: [Want; 6] = [
        Want::All,
        Want::Recordings,
        Want::Engagements,
        Want::Notes,
        Want::RecordingsAndTasks,
        Want::Nothing,
    ];

    fn patterns(self) -> &'static [&'static str] {
        match self {
            Want::All => &[],
            Want::Recordings => &["*recording*"],
            Want::Engagements => &["contact_center.engagement_*"],
            Want::Notes => &["*note_adde?"],
            Want::RecordingsAndTasks => &["*recording*", "contact_center.task_*"],
            Want::Nothing => &["phone.*"],
        }
    }

    fn wants(self, event: Event) -> bool {
        use Event::*;
        match self {
            Want::All => true,
            Want::Recordings => event == Recording,
            Want::Engagements => matches!(event, Note | EngagementStarted),
            Want::Notes => event == Note,
            Want::RecordingsAndTasks => matches!(event, Recording | Task),
            Want::Nothing => false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Append {
    /// Natural key `k<key>`; few of them, so duplicates are common.
    key: u8,
    event: Event,
    /// Content fingerprint (notes): `Some` makes an edit a new revision.
    version: Option<u8>,
}

/// Which seq an op is about: the nth of the set it acts on (pending or dead),
/// or any seq at all (acked, dead elsewhere, never issued), which must be a
/// no-op.
#[derive(Debug, Clone, Copy)]
enum Pick {
    Nth(usize),
    Stray(u64),
}

#[derive(Debug, Clone)]
enum Op {
    Append(Append),
    Ack {
        sink: usize,
        pick: Pick,
    },
    Schedule {
        sink: usize,
        pick: Pick,
        attempts: u32,
        step: u32,
        /// Seconds since the epoch; 0 puts the record back among the ready ones.
        not_before_s: u64,
    },
    DeadLetter {
        sink: usize,
        pick: Pick,
    },
    Redrive {
        sink: usize,
        only: Option<Pick>,
    },
    PurgeDead {
        sink: usize,
    },
    /// The media stage hands a record of its outbox on (`Journal::enriched`).
    Enrich {
        pick: Pick,
    },
    /// The media stage schedules a record's next attempt.
    MediaSchedule {
        pick: Pick,
        attempts: u32,
        step: u32,
        not_before_s: u64,
    },
    /// `close()`, drop, open again. The appends are submitted just before the
    /// close and must all be committed by it.
    Reopen {
        in_flight: Vec<Append>,
        restart: Restart,
    },
    /// kill -9 (see [`Lifetime::crash`]). The appends are submitted but not
    /// awaited: the contract allows any prefix of them to survive.
    Crash {
        in_flight: Vec<Append>,
        restart: Restart,
    },
}

/// How the journal comes back after a stop: with the same sinks, or with
/// this selection of the case's sinks configured (a removed sink keeps its
/// rows; a sink added back finds them again).
#[derive(Debug, Clone)]
enum Restart {
    SameSinks,
    Configured(Vec<bool>),
    /// The same sinks, with the media stage switched on or off (off: what
    /// waits in its outbox goes on to the sinks unchanged).
    Media(bool),
}

#[derive(Debug, Clone)]
struct Case {
    sinks: Vec<Want>,
    /// Whether recordings pass through the media stage first.
    media: bool,
    ops: Vec<Op>,
}

fn case() -> impl Strategy<Value = Case> {
    proptest::collection::vec(proptest::sample::select(Want::EVERY.to_vec()), 1..=3)
        .prop_flat_map(|sinks| {
            let n_sinks = sinks.len();
            (
                Just(sinks),
                any::<bool>(),
                Ops {
                    op: op(n_sinks),
                    max_len: MAX_OPS,
                },
            )
        })
        .prop_map(|(sinks, media, ops)| Case { sinks, media, ops })
}

/// Op sequences that shrink to a short one. proptest's `vec` tries deleting
/// each element once, front to back, which leaves ops that became removable
/// only after later ones went; this repeats the deletion pass until a whole
/// pass removes nothing, then shrinks each remaining op.
#[derive(Debug)]
struct Ops<S> {
    op: S,
    max_len: usize,
}

impl<S: Strategy> Strategy for Ops<S> {
    type Tree = OpsTree<S::Tree>;
    type Value = Vec<S::Value>;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        let len = (0..=self.max_len).new_tree(runner)?.current();
        let ops = (0..len)
            .map(|_| self.op.new_tree(runner))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OpsTree {
            included: vec![true; ops.len()],
            ops,
            deleting: true,
            next: 0,
            deleted_in_pass: false,
            last: None,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum ShrinkStep {
    Deleted(usize),
    Shrunk(usize),
}

#[derive(Debug)]
struct OpsTree<T> {
    ops: Vec<T>,
    included: Vec<bool>,
    deleting: bool,
    next: usize,
    deleted_in_pass: bool,
    last: Option<ShrinkStep>,
}

impl<T: ValueTree> ValueTree for OpsTree<T> {
    type Value = Vec<T::Value>;

    fn current(&self) -> Self::Value {
        self.ops
            .iter()
            .zip(&self.included)
            .filter(|(_, included)| **included)
            .map(|(op, _)| op.current())
            .collect()
    }

    fn simplify(&mut self) -> bool {
        // Called again without a `complicate` in between: the case still
        // failed, so the last deletion stands.
        if let Some(ShrinkStep::Deleted(_)) = self.last {
            self.deleted_in_pass = true;
        }
        while self.deleting {
            if self.next >= self.ops.len() {
                self.next = 0;
                self.deleting = std::mem::take(&mut self.deleted_in_pass);
                continue;
            }
            let ix = self.next;
            self.next += 1;
            if self.included[ix] {
                self.included[ix] = false;
                self.last = Some(ShrinkStep::Deleted(ix));
                return true;
            }
        }
        while self.next < self.ops.len() {
            let ix = self.next;
            if self.included[ix] && self.ops[ix].simplify() {
                self.last = Some(ShrinkStep::Shrunk(ix));
                return true;
            }
            self.next += 1;
        }
        self.last = None;
        false
    }

    fn complicate(&mut self) -> bool {
        match self.last {
            Some(ShrinkStep::Deleted(ix)) => {
                self.included[ix] = true;
                self.last = None;
                true
            }
            Some(ShrinkStep::Shrunk(ix)) => {
                if self.ops[ix].complicate() {
                    true
                } else {
                    self.last = None;
                    false
                }
            }
            None => false,
        }
    }
}

fn op(n_sinks: usize) -> impl Strategy<Value = Op> {
    let sink = move || 0..n_sinks;
    prop_oneof![
        6 => append().prop_map(Op::Append),
        3 => (sink(), pick()).prop_map(|(sink, pick)| Op::Ack { sink, pick }),
        2 => (sink(), pick(), 0..4u32, 0..3u32, 0..=3u64).prop_map(
            |(sink, pick, attempts, step, not_before_s)| Op::Schedule {
                sink,
                pick,
                attempts,
                step,
                not_before_s,
            }
        ),
        2 => (sink(), pick()).prop_map(|(sink, pick)| Op::DeadLetter { sink, pick }),
        1 => (sink(), proptest::option::of(pick()))
            .prop_map(|(sink, only)| Op::Redrive { sink, only }),
        1 => sink().prop_map(|sink| Op::PurgeDead { sink }),
        2 => pick().prop_map(|pick| Op::Enrich { pick }),
        1 => (pick(), 0..4u32, 0..3u32, 0..=3u64).prop_map(
            |(pick, attempts, step, not_before_s)| Op::MediaSchedule {
                pick,
                attempts,
                step,
                not_before_s,
            }
        ),
        1 => (proptest::collection::vec(append(), 0..=3), restart(n_sinks))
            .prop_map(|(in_flight, restart)| Op::Reopen { in_flight, restart }),
        1 => (proptest::collection::vec(append(), 0..=3), restart(n_sinks))
            .prop_map(|(in_flight, restart)| Op::Crash { in_flight, restart }),
    ]
}

fn restart(n_sinks: usize) -> impl Strategy<Value = Restart> {
    prop_oneof![
        2 => Just(Restart::SameSinks),
        1 => proptest::collection::vec(any::<bool>(), n_sinks).prop_map(Restart::Configured),
        1 => any::<bool>().prop_map(Restart::Media),
    ]
}

fn append() -> impl Strategy<Value = Append> {
    (
        0..4u8,
        proptest::sample::select(Event::EVERY.to_vec()),
        proptest::option::of(0..3u8),
    )
        .prop_map(|(key, event, version)| Append {
            key,
            event,
            version,
        })
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        4 => (0..8usize).prop_map(Pick::Nth),
        1 => (0..24u64).prop_map(Pick::Stray),
    ]
}

fn sink_name(index: usize) -> String {
    format!("s{index}")
}

/// Observed outboxes: the case's sinks, then the media stage's.
fn view_name(index: usize, n_sinks: usize) -> String {
    if index == n_sinks {
        MEDIA.to_owned()
    } else {
        sink_name(index)
    }
}

/// The record an append submits. `stamp` is unique per append, so the bytes
/// tell which append a stored record came from (first-wins keeps the first).
fn new_record(append: &Append, stamp: u64) -> NewRecord {
    NewRecord {
        id: format!("k{}", append.key),
        event: append.event.name().to_string(),
        event_ts: stamp as i64,
        source: Source::Websocket,
        received_at: format!(
            "2026-01-01T{:02}:{:02}:{:02}.000Z",
            stamp / 3600 % 24,
            stamp / 60 % 60,
            stamp % 60
        ),
        payload: RawValue::from_string(format!(r#"{{"stamp":{stamp}}}"#)).expect("a JSON object"),
        version: append.version.map(|v| [v; 32]),
        view: record_view(append, stamp),
    }
}

/// Engagements the records of a case belong to (tasks have none).
const ENGAGEMENTS: [&str; 2] = ["E0", "E1"];

/// A record's view: enough for every part of the interaction aggregate to
/// change with the order of appends (latest direction, note texts, times).
fn record_view(append: &Append, stamp: u64) -> crate::record::View {
    let mut view = crate::record::View {
        kind: append.event.name().to_owned(),
        engagement_id: (append.event != Event::Task)
            .then(|| ENGAGEMENTS[append.key as usize % 2].to_owned()),
        direction: Some(
            if stamp.is_multiple_of(2) {
                "inbound"
            } else {
                "outbound"
            }
            .to_owned(),
        ),
        ..Default::default()
    };
    match append.event {
        Event::Note => {
            view.note_id = Some(format!("N{}", append.key));
            view.note = Some(format!("text {:?}", append.version));
        }
        Event::Recording => {
            view.start_time = Some(format!("2026-01-01T00:00:{:02}Z", stamp % 60));
        }
        _ => {}
    }
    view
}

fn letter(stamp: u64) -> DeadLetter {
    DeadLetter {
        reason: format!("HTTP 400 ({stamp})"),
        status: Some(400),
        code: Some(format!("CODE_{stamp}")),
        attempts: 1,
        at: jiff::Timestamp::from_millisecond(1_767_225_600_000 + stamp as i64)
            .expect("a valid instant"),
    }
}

// ---------------------------------------------------------------------------
// The model.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Entry {
    attempts: u32,
    step: u32,
    not_before_ms: u64,
}

#[derive(Debug, Clone)]
struct Held {
    record: String,
    received_at: String,
}

#[derive(Debug, Clone)]
struct SinkModel {
    want: Want,
    configured: bool,
    pending: BTreeMap<u64, Entry>,
    dead: BTreeMap<u64, DeadLetter>,
}

#[derive(Debug, Clone)]
struct Model {
    next_seq: u64,
    /// The dedup index: key → (revision, every version seen).
    keys: BTreeMap<u8, (u32, std::collections::BTreeSet<u8>)>,
    /// Every seq some sink still has pending or dead, with its expected bytes.
    held: BTreeMap<u64, Held>,
    sinks: Vec<SinkModel>,
    /// Recordings go to `media_outbox` first (the media stage is on).
    media: bool,
    /// The media stage's outbox (`@media`); its `dead` stays empty.
    media_outbox: SinkModel,
    /// Sinks the journal lists as having (had) an outbox here.
    known: BTreeSet<usize>,
    /// The interaction aggregates: every stored record's part, and the files
    /// of every enriched one.
    interactions: BTreeMap<String, Interaction>,
    /// What the media stage's records were appended with (view, event_ts,
    /// revision), for the files they join the aggregate with.
    media_facts: BTreeMap<u64, (crate::record::View, i64, u32)>,
}

impl Model {
    fn new(sinks: &[Want], media: bool) -> Model {
        Model {
            media,
            media_outbox: SinkModel {
                want: Want::Recordings,
                configured: false,
                pending: BTreeMap::new(),
                dead: BTreeMap::new(),
            },
            next_seq: 1,
            keys: BTreeMap::new(),
            held: BTreeMap::new(),
            sinks: sinks
                .iter()
                .map(|&want| SinkModel {
                    want,
                    configured: false,
                    pending: BTreeMap::new(),
                    dead: BTreeMap::new(),
                })
                .collect(),
            known: BTreeSet::new(),
            interactions: BTreeMap::new(),
            media_facts: BTreeMap::new(),
        }
    }

    fn fold(&mut self, one: Option<Interaction>) {
        if let Some(one) = one {
            self.interactions
                .entry(one.engagement_id().to_owned())
                .or_insert_with(|| one.clone())
                .merge(&one);
        }
    }

    /// An open with these sinks configured: a sink that is no longer
    /// configured stays known while it still holds records, pending or dead.
    fn open(&mut self, configured: &[bool], media: bool) {
        for (sink, &on) in self.sinks.iter_mut().zip(configured) {
            sink.configured = on;
        }
        self.media = media;
        if !media {
            for seq in std::mem::take(&mut self.media_outbox.pending).into_keys() {
                let mut n_sinks = 0;
                for sink in &mut self.sinks {
                    if sink.configured && sink.want.wants(Event::Recording) {
                        sink.pending.insert(seq, Entry::default());
                        n_sinks += 1;
                    }
                }
                if n_sinks == 0 {
                    self.held.remove(&seq);
                }
            }
        }
        let sinks = &self.sinks;
        self.known.retain(|&index| {
            let sink = &sinks[index];
            sink.configured || !sink.pending.is_empty() || !sink.dead.is_empty()
        });
        self.known
            .extend((0..sinks.len()).filter(|&index| sinks[index].configured));
    }

    fn append(&mut self, append: &Append, record: &NewRecord) -> AppendOutcome {
        let revision = match self.keys.get(&append.key) {
            None => 1,
            // Any version seen before (not just the latest) is a duplicate.
            Some((_, versions)) if append.version.is_none_or(|v| versions.contains(&v)) => {
                return AppendOutcome::Duplicate;
            }
            Some((revision, _)) => revision + 1,
        };
        let versions = self.keys.entry(append.key).or_default();
        versions.0 = revision;
        versions.1.extend(append.version);
        self.fold(Interaction::of(
            &record.view,
            record.event_ts,
            revision,
            &[],
        ));
        let seq = self.next_seq;
        self.next_seq += 1;
        let to_media = self.media && append.event == Event::Recording;
        let mut n_sinks = 0;
        for sink in &mut self.sinks {
            if sink.configured && sink.want.wants(append.event) {
                if !to_media {
                    sink.pending.insert(seq, Entry::default());
                }
                n_sinks += 1;
            }
        }
        if n_sinks > 0 && to_media {
            self.media_outbox.pending.insert(seq, Entry::default());
            self.media_facts
                .insert(seq, (record.view.clone(), record.event_ts, revision));
        }
        if n_sinks > 0 {
            let bytes = record.to_json(revision);
            self.held.insert(
                seq,
                Held {
                    record: String::from_utf8_lossy(&bytes).into_owned(),
                    received_at: record.received_at.clone(),
                },
            );
        }
        AppendOutcome::Stored {
            seq,
            revision,
            sinks: n_sinks,
        }
    }

    /// The media stage hands `seq` on with `body`: it leaves the media outbox
    /// and comes back under a new seq for the sinks that want it now.
    fn enrich(&mut self, seq: u64, body: &str) {
        if self.media_outbox.pending.remove(&seq).is_none() {
            return;
        }
        let files = crate::record::media_entries(body.as_bytes());
        if let Some((view, event_ts, revision)) = self.media_facts.remove(&seq)
            && !files.is_empty()
        {
            self.fold(Interaction::of(&view, event_ts, revision, &files));
        }
        let received_at = self
            .held
            .remove(&seq)
            .map(|h| h.received_at)
            .unwrap_or_default();
        let new_seq = self.next_seq;
        self.next_seq += 1;
        let mut n_sinks = 0;
        for sink in &mut self.sinks {
            if sink.configured && sink.want.wants(Event::Recording) {
                sink.pending.insert(new_seq, Entry::default());
                n_sinks += 1;
            }
        }
        if n_sinks > 0 {
            self.held.insert(
                new_seq,
                Held {
                    record: body.to_owned(),
                    received_at,
                },
            );
        }
    }

    fn media_schedule(&mut self, seq: u64, entry: Entry) {
        if let Some(pending) = self.media_outbox.pending.get_mut(&seq) {
            *pending = entry;
        }
    }

    fn pick_pending(&self, sink: usize, pick: Pick) -> u64 {
        resolve(self.sinks[sink].pending.keys(), pick)
    }

    fn pick_dead(&self, sink: usize, pick: Pick) -> u64 {
        resolve(self.sinks[sink].dead.keys(), pick)
    }

    fn ack(&mut self, sink: usize, seq: u64) {
        if self.sinks[sink].pending.remove(&seq).is_some() {
            self.release(seq);
        }
    }

    fn schedule(&mut self, sink: usize, seq: u64, entry: Entry) {
        if let Some(pending) = self.sinks[sink].pending.get_mut(&seq) {
            *pending = entry;
        }
    }

    fn dead_letter(&mut self, sink: usize, seq: u64, letter: DeadLetter) {
        let sink = &mut self.sinks[sink];
        if sink.pending.remove(&seq).is_some() {
            sink.dead.insert(seq, letter);
        }
    }

    fn redrive(&mut self, sink: usize, only: Option<u64>) -> u64 {
        let sink = &mut self.sinks[sink];
        let seqs: Vec<u64> = match only {
            Some(seq) => sink
                .dead
                .contains_key(&seq)
                .then_some(seq)
                .into_iter()
                .collect(),
            None => sink.dead.keys().copied().collect(),
        };
        for seq in &seqs {
            sink.dead.remove(seq);
            sink.pending.insert(*seq, Entry::default());
        }
        seqs.len() as u64
    }

    fn purge_dead(&mut self, sink: usize) -> u64 {
        let dead = std::mem::take(&mut self.sinks[sink].dead);
        for seq in dead.keys() {
            self.release(*seq);
        }
        dead.len() as u64
    }

    /// Drops the record once no sink holds it, pending or dead.
    fn release(&mut self, seq: u64) {
        let held = self
            .sinks
            .iter()
            .any(|s| s.pending.contains_key(&seq) || s.dead.contains_key(&seq))
            || self.media_outbox.pending.contains_key(&seq);
        if !held {
            self.held.remove(&seq);
        }
    }

    /// What the journal must show when it holds exactly this state.
    fn view(&self) -> View {
        let row = |seq: u64, entry: &Entry| Row {
            seq,
            attempts: entry.attempts,
            step: entry.step,
            not_before_ms: entry.not_before_ms,
            record: self.held[&seq].record.clone(),
        };
        let n_sinks = self.sinks.len();
        let sinks = self
            .sinks
            .iter()
            .chain(std::iter::once(&self.media_outbox))
            .enumerate()
            .map(|(index, sink)| {
                let mut waiting: Vec<(u64, Row)> = sink
                    .pending
                    .iter()
                    .filter(|(_, e)| e.not_before_ms != 0)
                    .map(|(&seq, e)| (e.not_before_ms, row(seq, e)))
                    .collect();
                waiting.sort_by_key(|(ms, row)| (*ms, row.seq));
                SinkView {
                    stats: SinkStats {
                        sink: view_name(index, n_sinks),
                        pending: sink.pending.len() as u64,
                        retrying: waiting.len() as u64,
                        dead: sink.dead.len() as u64,
                        oldest_pending: sink
                            .pending
                            .keys()
                            .next()
                            .map(|seq| self.held[seq].received_at.clone()),
                    },
                    ready: sink
                        .pending
                        .iter()
                        .filter(|(_, e)| e.not_before_ms == 0)
                        .map(|(&seq, e)| row(seq, e))
                        .collect(),
                    ready_cursor: sink.pending.keys().next_back().copied().unwrap_or(0),
                    due: DUE_PROBES
                        .iter()
                        .map(|&now| {
                            waiting
                                .iter()
                                .filter(|(ms, _)| *ms <= now)
                                .map(|(_, row)| row.clone())
                                .collect()
                        })
                        .collect(),
                    next_due: waiting.first().map(|(ms, _)| *ms),
                    waiting,
                    dead: sink
                        .dead
                        .iter()
                        .map(|(&seq, letter)| (seq, letter.clone(), self.held[&seq].record.clone()))
                        .collect(),
                }
            })
            .collect();
        let sinks: Vec<SinkView> = sinks;
        View {
            committed: self.next_seq - 1,
            stored_records: self.held.len() as u64,
            known: self.known.iter().map(|&index| sink_name(index)).collect(),
            configured_stats: sinks
                .iter()
                .zip(&self.sinks)
                .filter(|(_, sink)| sink.configured)
                .map(|(view, _)| view.stats.clone())
                .collect(),
            sinks,
            interactions: ENGAGEMENTS
                .iter()
                .map(|id| self.interactions.get(*id).cloned())
                .collect(),
        }
    }
}

fn resolve<'a>(seqs: impl Iterator<Item = &'a u64>, pick: Pick) -> u64 {
    match pick {
        Pick::Nth(n) => {
            let seqs: Vec<u64> = seqs.copied().collect();
            if seqs.is_empty() {
                n as u64
            } else {
                seqs[n % seqs.len()]
            }
        }
        Pick::Stray(seq) => seq,
    }
}

// ---------------------------------------------------------------------------
// What the journal shows.

#[derive(Debug, Clone, PartialEq)]
struct Row {
    seq: u64,
    attempts: u32,
    step: u32,
    not_before_ms: u64,
    record: String,
}

impl From<&Pending> for Row {
    fn from(p: &Pending) -> Row {
        Row {
            seq: p.seq,
            attempts: p.attempts,
            step: p.step,
            not_before_ms: p.not_before_ms,
            record: String::from_utf8_lossy(&p.bytes).into_owned(),
        }
    }
}

/// What the journal shows of one of the case's sinks, configured or not.
#[derive(Debug, PartialEq)]
struct SinkView {
    /// `read::sink_stats`.
    stats: SinkStats,
    /// `read_outbox` paged two at a time, as a worker's cursor walks it.
    ready: Vec<Row>,
    /// Where that cursor ends: the last pending seq, waiting ones included.
    ready_cursor: u64,
    /// `read_waiting` paged two at a time: (due ms, row) in due order.
    waiting: Vec<(u64, Row)>,
    /// `read_due` at each of [`DUE_PROBES`].
    due: Vec<Vec<Row>>,
    next_due: Option<u64>,
    /// `dead_letters`: seq, letter, the record's bytes.
    dead: Vec<(u64, DeadLetter, String)>,
}

#[derive(Debug, PartialEq)]
struct View {
    committed: u64,
    stored_records: u64,
    /// `read::known_sinks`.
    known: Vec<String>,
    /// `Journal::stats`: the configured sinks only.
    configured_stats: Vec<SinkStats>,
    sinks: Vec<SinkView>,
    /// `Journal::interaction` of each of [`ENGAGEMENTS`].
    interactions: Vec<Option<Interaction>>,
}

async fn observe(journal: &Journal, n_sinks: usize) -> Result<View, JournalError> {
    let snapshot = journal.begin_read()?;
    let mut sinks = Vec::new();
    for index in 0..=n_sinks {
        let name = view_name(index, n_sinks);
        let stats = read::sink_stats(&snapshot, &name)?;
        let mut ready = Vec::new();
        let mut cursor = 0;
        for _ in 0..ALL {
            let (batch, last) = journal.read_outbox(&name, cursor, 2).await?;
            ready.extend(batch.iter().map(Row::from));
            if last == cursor {
                break;
            }
            cursor = last;
        }
        let mut waiting = Vec::new();
        let mut after = None;
        for _ in 0..ALL {
            let page = journal.read_waiting(&name, after, 2).await?;
            let Some((ms, last)) = page.last() else {
                break;
            };
            after = Some((*ms, last.seq));
            waiting.extend(page.iter().map(|(ms, p)| (*ms, Row::from(p))));
        }
        let mut due = Vec::new();
        for now in DUE_PROBES {
            let batch = journal.read_due(&name, now, ALL).await?;
            due.push(batch.iter().map(Row::from).collect());
        }
        let dead = journal
            .dead_letters(&name, ALL)
            .await?
            .into_iter()
            .map(|d| {
                (
                    d.seq,
                    d.letter,
                    String::from_utf8_lossy(&d.bytes).into_owned(),
                )
            })
            .collect();
        sinks.push(SinkView {
            stats,
            ready,
            ready_cursor: cursor,
            waiting,
            due,
            next_due: journal.next_due(&name).await?,
            dead,
        });
    }
    Ok(View {
        committed: *journal.committed().borrow(),
        stored_records: journal.stored_records().await?,
        known: read::known_sinks(&snapshot)?,
        configured_stats: journal.stats().await?,
        sinks,
        interactions: {
            let mut interactions = Vec::new();
            for id in ENGAGEMENTS {
                interactions.push(journal.interaction(id).await?);
            }
            interactions
        },
    })
}

/// Names the parts of two views that differ.
fn difference(journal: &View, model: &View) -> String {
    let mut out = String::new();
    if journal.committed != model.committed {
        let _ = writeln!(
            out,
            "committed seq: journal {}, model {}",
            journal.committed, model.committed
        );
    }
    if journal.stored_records != model.stored_records {
        let _ = writeln!(
            out,
            "stored records: journal {}, model {}",
            journal.stored_records, model.stored_records
        );
    }
    if journal.known != model.known {
        let _ = writeln!(
            out,
            "known sinks: journal {:?}, model {:?}",
            journal.known, model.known
        );
    }
    if journal.configured_stats != model.configured_stats {
        let _ = writeln!(
            out,
            "stats of the configured sinks:\n  journal {:?}\n  model   {:?}",
            journal.configured_stats, model.configured_stats
        );
    }
    if journal.interactions != model.interactions {
        let _ = writeln!(
            out,
            "interactions:\n  journal {:?}\n  model   {:?}",
            journal.interactions, model.interactions
        );
    }
    if journal.sinks.len() != model.sinks.len() {
        let _ = writeln!(
            out,
            "sinks: journal {}, model {}",
            journal.sinks.len(),
            model.sinks.len()
        );
    }
    for (index, (got, want)) in journal.sinks.iter().zip(&model.sinks).enumerate() {
        macro_rules! field {
            ($name:ident) => {
                if got.$name != want.$name {
                    let _ = writeln!(
                        out,
                        "{} {}:\n  journal {:?}\n  model   {:?}",
                        sink_name(index),
                        stringify!($name),
                        got.$name,
                        want.$name
                    );
                }
            };
        }
        field!(stats);
        field!(ready);
        field!(ready_cursor);
        field!(waiting);
        field!(due);
        field!(next_due);
        field!(dead);
    }
    out
}

// ---------------------------------------------------------------------------
// Running a case.

fn failed(context: &str, error: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("{context}: {error}"))
}

/// One run of the "process": a runtime of its own and the journal opened on it.
///
/// The runtime is current-thread, so the writer task runs only while the test
/// awaits something: every run of a case does the same, a failure replays and
/// shrinks reliably.
struct Lifetime {
    runtime: Runtime,
    journal: Journal,
}

impl Lifetime {
    fn start(dir: &Path, routes: &[SinkRoute], media: bool) -> Result<Lifetime, TestCaseError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| failed("building a runtime", e))?;
        let journal = {
            let _entered = runtime.enter();
            let media = media.then(|| EventFilter::new(vec![Event::Recording.name().to_owned()]));
            Journal::open_with_media(dir, routes.to_vec(), media).map_err(|e| failed("open", e))?
        };
        Ok(Lifetime { runtime, journal })
    }

    /// A clean stop: `close()` commits what is queued and stops the writer.
    fn stop(self) {
        self.runtime.block_on(self.journal.close());
    }

    /// kill -9, inside one process.
    ///
    /// Dropping the runtime drops the writer task where it waits, as a kill
    /// would: requests still in its queue are never committed. (No commit is
    /// running then: the test awaited the last one. A kill in the middle of a
    /// commit's writes is for the kill -9 loop against the real binary.) The
    /// database file is then read while redb still has it open. A killed
    /// process leaves exactly what it had written (the page cache outlives it;
    /// every commit that returned was also fsynced), and redb's header still
    /// says the file is in use, so the next open runs redb's crash recovery
    /// as after a real kill. Dropping the old handle afterwards lets redb mark
    /// the file cleanly closed, so those bytes are put back before the reopen.
    fn crash(self, dir: &Path) -> Result<(), TestCaseError> {
        let Lifetime { runtime, journal } = self;
        drop(runtime);
        let path = dir.join(DB_FILE);
        let left_behind = std::fs::read(&path).map_err(|e| failed("reading the file", e))?;
        drop(journal);
        std::fs::write(&path, left_behind).map_err(|e| failed("restoring the file", e))
    }

    /// Compares everything the journal shows with the model; the error names
    /// what differs.
    fn check(&self, model: &Model) -> Result<(), String> {
        let view = self
            .runtime
            .block_on(observe(&self.journal, model.sinks.len()))
            .map_err(|e| format!("reading the journal: {e}"))?;
        let expected = model.view();
        if view != expected {
            return Err(difference(&view, &expected));
        }
        Ok(())
    }
}

/// The sinks a lifetime is started with.
fn routes(sinks: &[Want], configured: &[bool]) -> Vec<SinkRoute> {
    sinks
        .iter()
        .zip(configured)
        .enumerate()
        .filter(|(_, (_, on))| **on)
        .map(|(index, (want, _))| SinkRoute {
            name: sink_name(index),
            filter: EventFilter::new(want.patterns().iter().map(|p| p.to_string()).collect()),
        })
        .collect()
}

impl Restart {
    fn apply(&self, configured: &mut Vec<bool>, media: &mut bool) {
        match self {
            Restart::SameSinks => {}
            Restart::Configured(sinks) => configured.clone_from(sinks),
            Restart::Media(on) => *media = *on,
        }
    }
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| failed("tempdir", e))?;
    let dir = dir.path();
    let mut configured = vec![true; case.sinks.len()];
    let mut media = case.media;
    let mut model = Model::new(&case.sinks, media);
    model.open(&configured, media);
    let mut stamp = 0u64;
    let mut life = Lifetime::start(dir, &routes(&case.sinks, &configured), media)?;
    life.check(&model)
        .map_err(|e| TestCaseError::fail(format!("after the first open: {e}")))?;
    for (n_op, op) in case.ops.iter().enumerate() {
        stamp += 1;
        let context = |what: &str| format!("op {n_op} ({what})");
        match op {
            Op::Append(append) => {
                let record = new_record(append, stamp);
                let expected = model.append(append, &record);
                let outcome = life
                    .runtime
                    .block_on(life.journal.append(record))
                    .map_err(|e| failed(&context("append"), e))?;
                prop_assert_eq!(outcome, expected, "op {} (append): journal, model", n_op);
            }
            Op::Ack { sink, pick } => {
                let seq = model.pick_pending(*sink, *pick);
                life.runtime
                    .block_on(life.journal.ack(&sink_name(*sink), seq))
                    .map_err(|e| failed(&context("ack"), e))?;
                model.ack(*sink, seq);
            }
            Op::Schedule {
                sink,
                pick,
                attempts,
                step,
                not_before_s,
            } => {
                let seq = model.pick_pending(*sink, *pick);
                let entry = Entry {
                    attempts: *attempts,
                    step: *step,
                    not_before_ms: not_before_s * 1_000,
                };
                life.runtime
                    .block_on(life.journal.schedule(
                        &sink_name(*sink),
                        seq,
                        entry.attempts,
                        entry.step,
                        entry.not_before_ms,
                    ))
                    .map_err(|e| failed(&context("schedule"), e))?;
                model.schedule(*sink, seq, entry);
            }
            Op::DeadLetter { sink, pick } => {
                let seq = model.pick_pending(*sink, *pick);
                life.runtime
                    .block_on(
                        life.journal
                            .dead_letter(&sink_name(*sink), seq, letter(stamp)),
                    )
                    .map_err(|e| failed(&context("dead-letter"), e))?;
                model.dead_letter(*sink, seq, letter(stamp));
            }
            Op::Redrive { sink, only } => {
                let only = only.map(|pick| model.pick_dead(*sink, pick));
                let moved = life
                    .runtime
                    .block_on(life.journal.redrive(&sink_name(*sink), only))
                    .map_err(|e| failed(&context("redrive"), e))?;
                prop_assert_eq!(
                    moved,
                    model.redrive(*sink, only),
                    "op {} (redrive): journal, model",
                    n_op
                );
            }
            Op::PurgeDead { sink } => {
                let purged = life
                    .runtime
                    .block_on(life.journal.purge_dead(&sink_name(*sink)))
                    .map_err(|e| failed(&context("purge"), e))?;
                prop_assert_eq!(
                    purged,
                    model.purge_dead(*sink),
                    "op {} (purge): journal, model",
                    n_op
                );
            }
            Op::Enrich { pick } => {
                let seq = resolve(model.media_outbox.pending.keys(), *pick);
                let body = match model.held.get(&seq) {
                    Some(held) => format!(
                        "{},\"media\":[{{\"kind\":\"recording\",\"location\":\"file:///m/{stamp}\",\"content_type\":\"audio/mpeg\",\"size\":{stamp},\"sha256\":\"00\"}}]}}",
                        held.record.strip_suffix('}').unwrap_or(&held.record)
                    ),
                    None => format!("{{\"event\":\"{}\"}}", Event::Recording.name()),
                };
                life.runtime
                    .block_on(life.journal.enriched(seq, body.clone().into_bytes()))
                    .map_err(|e| failed(&context("enriched"), e))?;
                model.enrich(seq, &body);
            }
            Op::MediaSchedule {
                pick,
                attempts,
                step,
                not_before_s,
            } => {
                let seq = resolve(model.media_outbox.pending.keys(), *pick);
                let entry = Entry {
                    attempts: *attempts,
                    step: *step,
                    not_before_ms: not_before_s * 1_000,
                };
                life.runtime
                    .block_on(life.journal.schedule(
                        MEDIA,
                        seq,
                        entry.attempts,
                        entry.step,
                        entry.not_before_ms,
                    ))
                    .map_err(|e| failed(&context("media schedule"), e))?;
                model.media_schedule(seq, entry);
            }
            Op::Reopen { in_flight, restart } => {
                let mut receivers = Vec::new();
                let mut expected = Vec::new();
                for append in in_flight {
                    stamp += 1;
                    let record = new_record(append, stamp);
                    expected.push(model.append(append, &record));
                    let rx = life
                        .runtime
                        .block_on(life.journal.submit(record))
                        .map_err(|e| failed(&context("submit"), e))?;
                    receivers.push(rx);
                }
                life.runtime.block_on(life.journal.close());
                let outcomes: Vec<_> = receivers
                    .into_iter()
                    .map(|rx| life.runtime.block_on(rx))
                    .collect();
                for (outcome, expected) in outcomes.into_iter().zip(expected) {
                    match outcome {
                        Ok(Ok(outcome)) => {
                            prop_assert_eq!(
                                outcome,
                                expected,
                                "op {} (append before close): journal, model",
                                n_op
                            )
                        }
                        Ok(Err(e)) => return Err(failed(&context("append before close"), e)),
                        Err(_) => {
                            return Err(TestCaseError::fail(context(
                                "close dropped an append queued before it",
                            )));
                        }
                    }
                }
                life.stop();
                restart.apply(&mut configured, &mut media);
                model.open(&configured, media);
                life = Lifetime::start(dir, &routes(&case.sinks, &configured), media)?;
            }
            Op::Crash { in_flight, restart } => {
                // Each prefix of the in-flight appends is an outcome a kill may
                // leave; the journal must show one of them. (On this runtime the
                // writer never takes them from its queue, so none survives.)
                let mut outcomes = vec![model.clone()];
                for append in in_flight {
                    stamp += 1;
                    let record = new_record(append, stamp);
                    let mut next = outcomes[outcomes.len() - 1].clone();
                    next.append(append, &record);
                    outcomes.push(next);
                    // The receiver is dropped: nobody hears back, as after a kill.
                    life.runtime
                        .block_on(life.journal.submit(record))
                        .map_err(|e| failed(&context("submit"), e))?;
                }
                life.crash(dir)?;
                restart.apply(&mut configured, &mut media);
                for outcome in &mut outcomes {
                    outcome.open(&configured, media);
                }
                life = Lifetime::start(dir, &routes(&case.sinks, &configured), media)?;
                let view = life
                    .runtime
                    .block_on(observe(&life.journal, model.sinks.len()))
                    .map_err(|e| failed(&context("reading after the crash"), e))?;
                let Some(survivor) = outcomes.iter().find(|m| m.view() == view) else {
                    return Err(TestCaseError::fail(format!(
                        "{}: the journal after the crash matches no prefix of the in-flight appends; against the state before them:\n{}",
                        context("crash"),
                        difference(&view, &outcomes[0].view())
                    )));
                };
                model = survivor.clone();
            }
        }
        life.check(&model)
            .map_err(|e| TestCaseError::fail(format!("after op {n_op} {op:?}:\n{e}")))?;
    }
    life.stop();
    Ok(())
}
