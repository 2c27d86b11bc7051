//! The dedup index's and the interaction aggregates' retention: keys go after
//! [`KEY_RETENTION_MS`], not before,
//! and a commit prunes no more than its sweep budget. Time is tokio's paused
//! clock, which the writer reads through `crate::clock`.

use std::time::Duration;

use redb::ReadableTableMetadata;
use serde_json::value::RawValue;

use super::writer::{
    KEY_RETENTION_MS, SWEEP_BYTES_PER_COMMIT, SWEEP_BYTES_PER_OP, SWEEP_KEYS_PER_COMMIT,
    SWEEP_KEYS_PER_OP,
};
use super::*;
use crate::record::Source;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn open(dir: &Path) -> Journal {
    let routes = vec![SinkRoute {
        name: "a".into(),
        filter: EventFilter::all(),
    }];
    Journal::open(dir, routes).unwrap()
}

fn record(id: &str) -> NewRecord {
    NewRecord {
        id: id.into(),
        event: "e".into(),
        event_ts: 1,
        source: Source::Websocket,
        received_at: "2026-01-01T00:00:00.000Z".into(),
        payload: RawValue::from_string("{}".into()).unwrap(),
        version: None,
        view: Default::default(),
    }
}

async fn stored(journal: &Journal, id: &str) -> bool {
    match journal.append(record(id)).await.unwrap() {
        AppendOutcome::Stored { seq, .. } => {
            journal.ack("a", seq).await.unwrap();
            true
        }
        AppendOutcome::Duplicate => false,
    }
}

fn keys_held(journal: &Journal) -> u64 {
    let txn = journal.begin_read().unwrap();
    txn.open_table(tables::KEYS).unwrap().len().unwrap()
}

#[tokio::test(start_paused = true)]
async fn forgets_a_key_only_after_the_retention() {
    assert_eq!(KEY_RETENTION_MS, 30 * DAY.as_millis() as u64);
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    assert!(stored(&journal, "old").await);

    tokio::time::advance(29 * DAY).await;
    assert!(stored(&journal, "young").await);
    assert!(!stored(&journal, "old").await, "29 days old: still known");
    assert_eq!(keys_held(&journal), 2);

    tokio::time::advance(2 * DAY).await;
    // Any commit carries a sweep step; this one's finds "old" at 31 days.
    journal.set_meta("tick", vec![]).await.unwrap();
    assert_eq!(keys_held(&journal), 1);
    assert!(
        stored(&journal, "old").await,
        "31 days old: forgotten, so a re-sent copy goes out again"
    );
    assert!(!stored(&journal, "young").await, "2 days old: still known");
    journal.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_commit_prunes_at_most_its_sweep_budget() {
    const KEYS: u64 = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let mut receivers = Vec::new();
    for i in 0..KEYS {
        receivers.push(journal.submit(record(&format!("k{i:05}"))).await.unwrap());
    }
    for rx in receivers {
        rx.await.unwrap().unwrap();
    }
    assert_eq!(keys_held(&journal), KEYS);

    tokio::time::advance(31 * DAY).await;
    // Each commit of one request looks at this many keys; all are expired.
    let budget = (SWEEP_KEYS_PER_COMMIT + SWEEP_KEYS_PER_OP) as u64;
    let mut held = vec![keys_held(&journal)];
    while held.last() != Some(&0) && held.len() <= 10 {
        journal.set_meta("tick", vec![]).await.unwrap();
        held.push(keys_held(&journal));
    }
    let expected: Vec<u64> = (0..)
        .map(|step| KEYS.saturating_sub(step * budget))
        .take_while(|&n| n > 0)
        .chain([0])
        .collect();
    assert_eq!(held, expected);
    // The records themselves were never held back by this: a fresh key still
    // goes through, and one just seen is a duplicate again.
    assert!(stored(&journal, "k00000").await);
    assert!(!stored(&journal, "k00000").await);
    journal.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_resumes_pruning_keys_from_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    assert!(stored(&journal, "before").await);
    journal.close().await;
    drop(journal);

    tokio::time::advance(31 * DAY).await;
    let journal = open(dir.path());
    journal.set_meta("tick", vec![]).await.unwrap();
    assert_eq!(keys_held(&journal), 0);
    assert!(stored(&journal, "before").await);
    journal.close().await;
}

fn of_engagement(id: &str, engagement: &str) -> NewRecord {
    NewRecord {
        view: crate::record::View {
            engagement_id: Some(engagement.into()),
            ..Default::default()
        },
        ..record(id)
    }
}

fn interactions_held(journal: &Journal) -> u64 {
    read::interactions_held(&journal.begin_read().unwrap()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn forgets_an_interaction_only_after_the_retention_since_its_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    journal.append(of_engagement("a", "E")).await.unwrap();
    journal.append(of_engagement("b", "F")).await.unwrap();
    assert_eq!(interactions_held(&journal), 2);

    tokio::time::advance(29 * DAY).await;
    // A later record of E: E's aggregate is as young as it.
    journal.append(of_engagement("c", "E")).await.unwrap();
    tokio::time::advance(2 * DAY).await;
    journal.set_meta("tick", vec![]).await.unwrap();
    assert_eq!(interactions_held(&journal), 1);
    assert!(journal.interaction("E").await.unwrap().is_some());
    assert_eq!(journal.interaction("F").await.unwrap(), None);

    // The sweep rests an hour after a full pass.
    tokio::time::advance(29 * DAY).await;
    journal.set_meta("tick", vec![]).await.unwrap();
    assert_eq!(interactions_held(&journal), 0);
    journal.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_commit_prunes_at_most_its_sweep_budget_of_interactions() {
    const ENGAGEMENTS: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let mut receivers = Vec::new();
    for i in 0..ENGAGEMENTS {
        let record = of_engagement(&format!("k{i:05}"), &format!("E{i:05}"));
        receivers.push(journal.submit(record).await.unwrap());
    }
    for rx in receivers {
        rx.await.unwrap().unwrap();
    }
    assert_eq!(interactions_held(&journal), ENGAGEMENTS);

    tokio::time::advance(31 * DAY).await;
    let budget = (SWEEP_KEYS_PER_COMMIT + SWEEP_KEYS_PER_OP) as u64;
    let mut held = vec![interactions_held(&journal)];
    while held.last() != Some(&0) && held.len() <= 10 {
        journal.set_meta("tick", vec![]).await.unwrap();
        held.push(interactions_held(&journal));
    }
    let expected: Vec<u64> = (0..)
        .map(|step| ENGAGEMENTS.saturating_sub(step * budget))
        .take_while(|&n| n > 0)
        .chain([0])
        .collect();
    assert_eq!(held, expected);
    journal.close().await;
}

/// Large aggregates (an engagement with many long notes) are swept a byte
/// budget at a time, not a key budget: one step never reads more than about
/// `SWEEP_BYTES_PER_COMMIT` of them (the memory bound of a daemon over a
/// journal of large aggregates rests on it).
#[tokio::test(start_paused = true)]
async fn a_commit_sweeps_at_most_its_byte_budget_of_large_interactions() {
    const ENGAGEMENTS: u64 = 40;
    const NOTE_BYTES: usize = 16 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    for i in 0..ENGAGEMENTS {
        let mut record = of_engagement(&format!("k{i:05}"), &format!("E{i:05}"));
        record.view.kind = "engagement_note_added".into();
        record.view.note_id = Some("N".into());
        record.view.note = Some("x".repeat(NOTE_BYTES));
        record.view.last_modified = Some("2026-01-01T00:00:00Z".into());
        journal.append(record).await.unwrap();
    }
    assert_eq!(interactions_held(&journal), ENGAGEMENTS);

    tokio::time::advance(31 * DAY).await;
    journal.set_meta("tick", vec![]).await.unwrap();
    let pruned = ENGAGEMENTS - interactions_held(&journal);
    let budget = SWEEP_BYTES_PER_COMMIT + SWEEP_BYTES_PER_OP;
    // Each aggregate is a little over NOTE_BYTES; the step stops at the first
    // row that reaches the budget.
    let most = (budget / NOTE_BYTES) as u64 + 1;
    assert!(
        (1..=most).contains(&pruned),
        "one step pruned {pruned} aggregates of {NOTE_BYTES} bytes (budget {budget} bytes)"
    );
    // Further steps carry on until every one is gone.
    let mut steps = 1;
    while interactions_held(&journal) > 0 && steps < 10 {
        journal.set_meta("tick", vec![]).await.unwrap();
        steps += 1;
    }
    assert_eq!(interactions_held(&journal), 0);
    assert_eq!(steps, ENGAGEMENTS.div_ceil(pruned));
    journal.close().await;
}

fn crm_ids_held(journal: &Journal) -> u64 {
    read::crm_ids_held(&journal.begin_read().unwrap()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn forgets_crm_ids_after_the_retention_since_their_last_update() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let ids = |activity: &str| CrmIds::on("https://org.example", activity);
    journal.record_crm_ids("a", "old", ids("T1")).await.unwrap();
    journal
        .record_crm_ids("a", "kept", ids("T2"))
        .await
        .unwrap();

    tokio::time::advance(29 * DAY).await;
    // An id learned later renews the row.
    let mut file = ids("T2");
    file.files.insert("f".into(), "C1".into());
    journal.record_crm_ids("a", "kept", file).await.unwrap();
    assert_eq!(crm_ids_held(&journal), 2);

    tokio::time::advance(2 * DAY).await;
    journal.set_meta("tick", vec![]).await.unwrap();
    assert_eq!(crm_ids_held(&journal), 1);
    assert_eq!(journal.crm_ids("a", "old").await.unwrap(), None);
    let kept = journal.crm_ids("a", "kept").await.unwrap().unwrap();
    assert_eq!(kept.file_on("T2", "f"), Some("C1"));
    journal.close().await;
}
