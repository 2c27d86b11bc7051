use super::*;
use crate::record::Source;
use serde_json::value::RawValue;

fn routes(names: &[(&str, &[&str])]) -> Vec<SinkRoute> {
    names
        .iter()
        .map(|(name, patterns)| SinkRoute {
            name: name.to_string(),
            filter: EventFilter::new(patterns.iter().map(|p| p.to_string()).collect()),
        })
        .collect()
}

fn record(id: &str, event: &str, version: Option<[u8; 32]>) -> NewRecord {
    NewRecord {
        id: id.into(),
        event: event.into(),
        event_ts: 1,
        source: Source::Websocket,
        received_at: "2026-01-01T00:00:00.000Z".into(),
        payload: RawValue::from_string(format!(r#"{{"object":{{"id":"{id}"}}}}"#)).unwrap(),
        version,
        view: Default::default(),
    }
}

fn seq(outcome: AppendOutcome) -> u64 {
    match outcome {
        AppendOutcome::Stored { seq, .. } => seq,
        AppendOutcome::Duplicate => panic!("expected a stored record"),
    }
}

#[tokio::test]
async fn dedups_on_the_natural_key() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    let first = journal.append(record("k1", "e", None)).await.unwrap();
    assert_eq!(
        first,
        AppendOutcome::Stored {
            seq: 1,
            revision: 1,
            sinks: 1
        }
    );
    assert_eq!(
        journal.append(record("k1", "e", None)).await.unwrap(),
        AppendOutcome::Duplicate
    );
    assert_eq!(
        seq(journal.append(record("k2", "e", None)).await.unwrap()),
        2
    );
    // The key is remembered after the record itself is gone.
    journal.ack("a", 1).await.unwrap();
    assert_eq!(
        journal.append(record("k1", "e", None)).await.unwrap(),
        AppendOutcome::Duplicate
    );
    journal.close().await;
}

#[tokio::test]
async fn edited_notes_become_new_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    let v1 = Some([1; 32]);
    let v2 = Some([2; 32]);
    assert!(matches!(
        journal.append(record("n", "note", v1)).await.unwrap(),
        AppendOutcome::Stored { revision: 1, .. }
    ));
    assert_eq!(
        journal.append(record("n", "note", v1)).await.unwrap(),
        AppendOutcome::Duplicate
    );
    assert!(matches!(
        journal.append(record("n", "note", v2)).await.unwrap(),
        AppendOutcome::Stored { revision: 2, .. }
    ));
    // A third edit (an earlier version again is a duplicate: see below).
    assert!(matches!(
        journal
            .append(record("n", "note", Some([3; 32])))
            .await
            .unwrap(),
        AppendOutcome::Stored { revision: 3, .. }
    ));
    let stored = outbox(&journal, "a", 0, 10).await;
    let revisions: Vec<u32> = stored
        .iter()
        .map(|p| {
            serde_json::from_slice::<crate::record::RecordHeader>(&p.bytes)
                .unwrap()
                .revision
        })
        .collect();
    assert_eq!(revisions, [1, 2, 3]);
    journal.close().await;
}

#[tokio::test]
async fn never_deletes_before_every_sink_acked() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), routes(&[("a", &[]), ("b", &[])])).unwrap();
    let s = seq(journal.append(record("k", "e", None)).await.unwrap());
    journal.ack("a", s).await.unwrap();
    assert_eq!(journal.stored_records().await.unwrap(), 1);
    assert!(outbox(&journal, "a", 0, 10).await.is_empty());
    assert_eq!(outbox(&journal, "b", 0, 10).await.len(), 1);
    // A repeated ack (after a crash, say) must not release b's reference.
    journal.ack("a", s).await.unwrap();
    assert_eq!(journal.stored_records().await.unwrap(), 1);
    journal.ack("b", s).await.unwrap();
    assert_eq!(journal.stored_records().await.unwrap(), 0);
    journal.close().await;
}

#[tokio::test]
async fn routes_by_event_filter() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(
        dir.path(),
        routes(&[("rec", &["*recording*"]), ("all", &[])]),
    )
    .unwrap();
    let r = journal
        .append(record("r", "contact_center.recording_completed", None))
        .await
        .unwrap();
    assert!(matches!(r, AppendOutcome::Stored { sinks: 2, .. }));
    let n = journal
        .append(record("n", "contact_center.engagement_note_added", None))
        .await
        .unwrap();
    assert!(matches!(n, AppendOutcome::Stored { sinks: 1, .. }));
    assert_eq!(outbox(&journal, "rec", 0, 10).await.len(), 1);
    assert_eq!(outbox(&journal, "all", 0, 10).await.len(), 2);
    journal.close().await;
    drop(journal);

    let journal = Journal::open(dir.path(), routes(&[("rec", &["*recording*"])])).unwrap();
    let x = journal
        .append(record("x", "contact_center.task_created", None))
        .await
        .unwrap();
    assert!(matches!(x, AppendOutcome::Stored { sinks: 0, .. }));
    assert_eq!(
        journal
            .append(record("x", "contact_center.task_created", None))
            .await
            .unwrap(),
        AppendOutcome::Duplicate
    );
    journal.close().await;
}

#[tokio::test]
async fn survives_reopen_with_pending_records_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
        for i in 0..5 {
            journal
                .append(record(&format!("k{i}"), "e", None))
                .await
                .unwrap();
        }
        journal.ack("a", 1).await.unwrap();
        journal.close().await;
    }
    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    let pending: Vec<u64> = outbox(&journal, "a", 0, 10)
        .await
        .iter()
        .map(|p| p.seq)
        .collect();
    assert_eq!(pending, [2, 3, 4, 5]);
    assert_eq!(*journal.committed().borrow(), 5);
    assert_eq!(
        seq(journal.append(record("k9", "e", None)).await.unwrap()),
        6
    );
    assert_eq!(
        journal.append(record("k0", "e", None)).await.unwrap(),
        AppendOutcome::Duplicate
    );
    journal.close().await;
}

#[tokio::test]
async fn second_open_of_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    let Err(error) = Journal::open(dir.path(), routes(&[("a", &[])])) else {
        panic!("second open must fail");
    };
    assert!(matches!(error, JournalError::Locked { .. }));
    assert!(
        error.to_string().contains(&std::process::id().to_string()),
        "{error}"
    );
    journal.close().await;
    drop(journal);
    Journal::open(dir.path(), routes(&[("a", &[])]))
        .unwrap()
        .close()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    let mut receivers = Vec::new();
    for i in 0..2000 {
        receivers.push(
            journal
                .submit(record(&format!("k{}", i % 1500), "e", None))
                .await
                .unwrap(),
        );
    }
    let mut stored = std::collections::BTreeSet::new();
    let mut duplicates = 0;
    for rx in receivers {
        match rx.await.unwrap().unwrap() {
            AppendOutcome::Stored { seq, .. } => assert!(stored.insert(seq)),
            AppendOutcome::Duplicate => duplicates += 1,
        }
    }
    assert_eq!((stored.len(), duplicates), (1500, 500));
    assert_eq!(
        (
            journal.stats().await.unwrap()[0].pending,
            journal.stats().await.unwrap()[0].dead
        ),
        (1500, 0)
    );
    journal.close().await;
}

#[tokio::test]
async fn dead_letter_keeps_the_record_out_of_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    let s = seq(journal.append(record("k", "e", None)).await.unwrap());
    let letter = DeadLetter {
        reason: "HTTP 400".into(),
        status: Some(400),
        code: None,
        attempts: 1,
        at: jiff::Timestamp::UNIX_EPOCH,
    };
    journal.dead_letter("a", s, letter).await.unwrap();
    assert!(outbox(&journal, "a", 0, 10).await.is_empty());
    assert_eq!(
        (
            journal.stats().await.unwrap()[0].pending,
            journal.stats().await.unwrap()[0].dead
        ),
        (0, 1)
    );
    assert_eq!(journal.stored_records().await.unwrap(), 1);
    journal.close().await;
}

#[tokio::test]
async fn closed_journal_refuses_work() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    journal.close().await;
    assert!(matches!(
        journal.append(record("k", "e", None)).await,
        Err(JournalError::Closed)
    ));
}

async fn outbox(journal: &Journal, sink: &str, after: u64, limit: usize) -> Vec<Pending> {
    journal.read_outbox(sink, after, limit).await.unwrap().0
}

#[tokio::test]
async fn durable_tier_orders_by_due_time_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
        for i in 1..=3 {
            journal
                .append(record(&format!("k{i}"), "e", None))
                .await
                .unwrap();
        }
        journal.schedule("a", 1, 3, 1, 5_000).await.unwrap();
        journal.schedule("a", 2, 1, 1, 2_000).await.unwrap();
        journal.close().await;
    }
    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    // Waiting records are not "ready"; the cursor still moves past them.
    let (ready, last) = journal.read_outbox("a", 0, 10).await.unwrap();
    assert_eq!(
        (ready.iter().map(|p| p.seq).collect::<Vec<_>>(), last),
        (vec![3], 3)
    );
    assert_eq!(journal.next_due("a").await.unwrap(), Some(2_000));
    assert!(journal.read_due("a", 1_999, 10).await.unwrap().is_empty());
    let due: Vec<(u64, u32, u32)> = journal
        .read_due("a", 9_999, 10)
        .await
        .unwrap()
        .iter()
        .map(|p| (p.seq, p.attempts, p.step))
        .collect();
    assert_eq!(due, [(2, 1, 1), (1, 3, 1)]);
    // A retry being attempted (still in the due index) does not decide when
    // the worker wakes next.
    let busy = |seqs: &[u64]| {
        seqs.iter()
            .copied()
            .collect::<std::collections::HashSet<u64>>()
    };
    assert_eq!(
        journal.next_due_except("a", &busy(&[2])).await.unwrap(),
        Some(5_000)
    );
    assert_eq!(
        journal.next_due_except("a", &busy(&[1, 2])).await.unwrap(),
        None
    );
    assert_eq!(
        journal.next_due_except("a", &busy(&[1])).await.unwrap(),
        Some(2_000)
    );
    // Rescheduling moves it; acking removes it from the due index too.
    journal.schedule("a", 2, 2, 2, 7_000).await.unwrap();
    assert_eq!(journal.next_due("a").await.unwrap(), Some(5_000));
    journal.ack("a", 1).await.unwrap();
    assert_eq!(journal.next_due("a").await.unwrap(), Some(7_000));
    let stats = &journal.stats().await.unwrap()[0];
    assert_eq!((stats.pending, stats.retrying), (2, 1));
    journal.close().await;
}

#[tokio::test]
async fn redrive_and_purge_the_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), routes(&[("a", &[]), ("b", &[])])).unwrap();
    for i in 1..=3 {
        journal
            .append(record(&format!("k{i}"), "e", None))
            .await
            .unwrap();
        journal.ack("b", i).await.unwrap();
    }
    let letter = || DeadLetter {
        reason: "HTTP 400".into(),
        status: Some(400),
        code: None,
        attempts: 1,
        at: jiff::Timestamp::UNIX_EPOCH,
    };
    for seq in 1..=3 {
        journal.dead_letter("a", seq, letter()).await.unwrap();
    }
    assert_eq!(journal.redrive("a", Some(2)).await.unwrap(), 1);
    assert_eq!(
        journal.redrive("a", Some(2)).await.unwrap(),
        0,
        "already redriven"
    );
    assert_eq!(
        outbox(&journal, "a", 0, 10)
            .await
            .iter()
            .map(|p| p.seq)
            .collect::<Vec<_>>(),
        [2]
    );
    assert_eq!(journal.purge_dead("a").await.unwrap(), 2);
    // Purged records that no sink needs are gone; the redriven one stays.
    assert_eq!(journal.stored_records().await.unwrap(), 1);
    let stats = &journal.stats().await.unwrap()[0];
    assert_eq!((stats.pending, stats.dead), (1, 0));
    journal.close().await;
}

#[tokio::test]
async fn read_only_view_follows_the_owners_commits() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    journal.append(record("k1", "e", None)).await.unwrap();
    let view = open_read_only(dir.path()).unwrap();
    let pending = || {
        read::sink_stats(&view.begin_read().unwrap(), "a")
            .unwrap()
            .pending
    };
    assert_eq!(pending(), 1);
    journal.append(record("k2", "e", None)).await.unwrap();
    assert_eq!(pending(), 2, "a new snapshot sees the owner's later commit");
    journal.close().await;
    assert!(file_size(dir.path()).unwrap() > 0);
}

#[tokio::test]
async fn a_stale_note_resent_after_an_edit_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    let (v1, v2) = (Some([1; 32]), Some([2; 32]));
    assert!(matches!(
        journal.append(record("n", "note", v1)).await.unwrap(),
        AppendOutcome::Stored { revision: 1, .. }
    ));
    assert!(matches!(
        journal.append(record("n", "note", v2)).await.unwrap(),
        AppendOutcome::Stored { revision: 2, .. }
    ));
    // Zoom re-sends the first version, or reconciliation lists an older one.
    assert_eq!(
        journal.append(record("n", "note", v1)).await.unwrap(),
        AppendOutcome::Duplicate
    );
    assert_eq!(
        journal.append(record("n", "note", v2)).await.unwrap(),
        AppendOutcome::Duplicate
    );
    assert!(!journal.is_new("n", v1).await.unwrap());
    assert!(journal.is_new("n", Some([3; 32])).await.unwrap());
    journal.close().await;
}

#[tokio::test]
async fn media_records_wait_in_the_media_outbox_until_enriched() {
    let dir = tempfile::tempdir().unwrap();
    let media = Some(EventFilter::new(vec!["rec".into()]));
    let sinks = routes(&[("a", &[]), ("b", &["rec"]), ("c", &["other"])]);
    let journal = Journal::open_with_media(dir.path(), sinks.clone(), media.clone()).unwrap();
    let rec = seq(journal.append(record("r1", "rec", None)).await.unwrap());
    let other = seq(journal.append(record("o1", "other", None)).await.unwrap());
    // Only the media record waits for the stage; others go straight on.
    let (waiting, _) = journal.read_outbox(MEDIA, 0, 10).await.unwrap();
    assert_eq!(waiting.iter().map(|p| p.seq).collect::<Vec<_>>(), [rec]);
    for (sink, expected) in [("a", vec![other]), ("b", vec![]), ("c", vec![other])] {
        let (batch, _) = journal.read_outbox(sink, 0, 10).await.unwrap();
        assert_eq!(
            batch.iter().map(|p| p.seq).collect::<Vec<_>>(),
            expected,
            "{sink}"
        );
    }
    // A durable retry keeps it in the media outbox.
    journal.schedule(MEDIA, rec, 1, 1, 5).await.unwrap();
    assert_eq!(journal.read_due(MEDIA, 10, 10).await.unwrap().len(), 1);

    let mut body = waiting[0].bytes.to_vec();
    body.pop();
    body.extend_from_slice(br#","media":[]}"#);
    journal.enriched(rec, body.clone()).await.unwrap();
    assert!(
        journal
            .read_outbox(MEDIA, 0, 10)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    assert!(
        journal
            .read_due(MEDIA, u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // It comes back under a new seq, after everything appended before, so a
    // sink worker whose cursor passed `rec` sees it; the committed seq moves.
    let enriched = other + 1;
    assert_eq!(*journal.committed().borrow(), enriched);
    for (sink, expected) in [
        ("a", vec![other, enriched]),
        ("b", vec![enriched]),
        ("c", vec![other]),
    ] {
        let (batch, _) = journal.read_outbox(sink, 0, 10).await.unwrap();
        assert_eq!(
            batch.iter().map(|p| p.seq).collect::<Vec<_>>(),
            expected,
            "{sink}"
        );
        if let Some(p) = batch.iter().find(|p| p.seq == enriched) {
            assert_eq!(&p.bytes[..], &body[..]);
        }
    }
    // A second hand-on of the same record is a no-op.
    journal.enriched(rec, b"{}".to_vec()).await.unwrap();
    assert_eq!(
        journal.read_outbox("b", 0, 10).await.unwrap().0[0].bytes[..],
        body[..]
    );
    // The record goes once both sinks that wanted it have it.
    journal.ack("a", enriched).await.unwrap();
    assert_eq!(journal.stored_records().await.unwrap(), 2);
    journal.ack("b", enriched).await.unwrap();
    assert_eq!(journal.stored_records().await.unwrap(), 1);
    journal.close().await;
}

#[tokio::test]
async fn media_outbox_survives_restarts_and_drains_unchanged_when_media_is_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let media = Some(EventFilter::new(vec!["rec".into()]));
    let sinks = routes(&[("a", &[])]);
    let journal = Journal::open_with_media(dir.path(), sinks.clone(), media.clone()).unwrap();
    let rec = seq(journal.append(record("r1", "rec", None)).await.unwrap());
    let original = journal.read_outbox(MEDIA, 0, 10).await.unwrap().0[0]
        .bytes
        .clone();
    journal.close().await;
    drop(journal);

    let journal = Journal::open_with_media(dir.path(), sinks.clone(), media).unwrap();
    assert_eq!(journal.read_outbox(MEDIA, 0, 10).await.unwrap().0.len(), 1);
    assert!(journal.read_outbox("a", 0, 10).await.unwrap().0.is_empty());
    journal.close().await;
    drop(journal);

    let journal = Journal::open(dir.path(), sinks).unwrap();
    assert!(
        journal
            .read_outbox(MEDIA, 0, 10)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    let (batch, _) = journal.read_outbox("a", 0, 10).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].seq, rec);
    assert_eq!(batch[0].bytes, original);
    journal.close().await;
}

/// A request that fails in the middle of a group commit fails the whole
/// commit, and every caller in it, before and after the failing one, hears
/// the commit's error (not `Closed`); nothing of the batch is stored.
#[tokio::test]
async fn every_request_of_a_failed_batch_gets_the_commit_error() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    // An outbox table of the wrong type: acking into it fails inside the
    // writer's transaction.
    {
        let txn = journal.shared.db.begin_write().unwrap();
        let wrong: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("outbox/bad");
        txn.open_table(wrong).unwrap().insert("x", 1).unwrap();
        txn.commit().unwrap();
    }
    // Queued before the writer runs (one thread): one batch.
    let before = journal.submit(record("k1", "e", None)).await.unwrap();
    let failing = journal.submit_ack("bad", 1).await.unwrap();
    let after = journal.submit(record("k2", "e", None)).await.unwrap();
    let ack = journal.submit_ack("a", 1).await.unwrap();
    let failed = |result: String| {
        assert!(result.starts_with("journal commit failed"), "{result}");
    };
    failed(before.await.unwrap().unwrap_err().to_string());
    failed(failing.await.unwrap().unwrap_err().to_string());
    failed(after.await.unwrap().unwrap_err().to_string());
    failed(ack.await.unwrap().unwrap_err().to_string());
    // Nothing of it was stored, and the journal goes on.
    assert_eq!(journal.stored_records().await.unwrap(), 0);
    assert_eq!(
        seq(journal.append(record("k1", "e", None)).await.unwrap()),
        1
    );
    journal.close().await;
}

/// A record's view is stored with it, read back with it, and kept when the
/// media stage replaces the record's bytes.
#[tokio::test]
async fn the_view_travels_with_the_record_through_the_media_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open_with_media(
        dir.path(),
        routes(&[("a", &[])]),
        Some(EventFilter::new(vec!["media".into()])),
    )
    .unwrap();
    let view = crate::record::View {
        kind: "media".into(),
        engagement_id: Some("E1".into()),
        ..Default::default()
    };
    let mut new = record("k1", "media", None);
    new.view = view.clone();
    let rec = seq(journal.append(new).await.unwrap());
    let waiting = journal.read_outbox(MEDIA, 0, 10).await.unwrap().0;
    assert_eq!(*waiting[0].view, view);
    assert!(waiting[0].bytes.starts_with(b"{\"id\":\"k1\""));
    journal
        .enriched(rec, br#"{"id":"k1","event":"media","media":[]}"#.to_vec())
        .await
        .unwrap();
    let delivered = outbox(&journal, "a", 0, 10).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(*delivered[0].view, view);
    assert_eq!(
        &delivered[0].bytes[..],
        br#"{"id":"k1","event":"media","media":[]}"#
    );
    journal.close().await;
}

/// A record of engagement `E` with this view and time.
fn of_engagement(id: &str, event: &str, view: crate::record::View, event_ts: i64) -> NewRecord {
    NewRecord {
        event_ts,
        view: crate::record::View {
            engagement_id: Some("E".into()),
            kind: event.trim_start_matches("contact_center.").into(),
            ..view
        },
        ..record(id, event, None)
    }
}

#[tokio::test]
async fn the_interaction_folds_every_record_of_the_engagement_and_its_stored_files() {
    let dir = tempfile::tempdir().unwrap();
    // The only sink wants recordings; the aggregate still sees everything.
    let journal = Journal::open_with_media(
        dir.path(),
        routes(&[("crm", &["contact_center.recording_completed"])]),
        Some(EventFilter::new(vec![
            "contact_center.recording_completed".into(),
        ])),
    )
    .unwrap();
    let started = crate::record::View {
        direction: Some("inbound".into()),
        channel: Some("voice".into()),
        start_time: Some("2026-11-26T10:00:00Z".into()),
        ..Default::default()
    };
    let outcome = journal
        .append(of_engagement(
            "s",
            "contact_center.engagement_started",
            started,
            1,
        ))
        .await
        .unwrap();
    assert!(matches!(outcome, AppendOutcome::Stored { sinks: 0, .. }));
    let note = |text: &str| crate::record::View {
        note_id: Some("N".into()),
        note: Some(text.into()),
        last_modified: Some(format!("2026-11-26T10:0{}:00Z", text.len())),
        ..Default::default()
    };
    for text in ["first", "edited!"] {
        let mut record = of_engagement("n", "contact_center.engagement_note_added", note(text), 2);
        record.version = Some([text.len() as u8; 32]);
        journal.append(record).await.unwrap();
    }
    let recording = seq(journal
        .append(of_engagement(
            "r",
            "contact_center.recording_completed",
            Default::default(),
            3,
        ))
        .await
        .unwrap());
    // Not a duplicate's doing: the same key again changes nothing.
    journal
        .append(of_engagement(
            "s",
            "contact_center.engagement_started",
            Default::default(),
            9,
        ))
        .await
        .unwrap();

    let before = journal.interaction("E").await.unwrap().expect("E");
    assert_eq!(before.direction(), Some("inbound"));
    assert_eq!(before.channel(), Some("voice"));
    assert_eq!(
        before.start_ms(),
        crate::interaction::instant_ms("2026-11-26T10:00:00Z")
    );
    assert_eq!(
        before
            .notes()
            .iter()
            .map(|n| (n.text, n.revision))
            .collect::<Vec<_>>(),
        [("edited!", 2)]
    );
    assert_eq!(before.files().count(), 0);

    let pending = journal.read_outbox(MEDIA, 0, 10).await.unwrap().0;
    let body = String::from_utf8(pending[0].bytes.to_vec()).unwrap();
    let body = format!(
        r#"{},"media":[{{"kind":"recording","location":"file:///m/r.mp3","url":"https://signed","content_type":"audio/mpeg","size":3,"sha256":"ab"}}]}}"#,
        body.strip_suffix('}').unwrap()
    );
    journal
        .enriched(recording, body.into_bytes())
        .await
        .unwrap();
    let after = journal.interaction("E").await.unwrap().expect("E");
    let files: Vec<_> = after
        .files()
        .map(|f| (f.location.as_str(), f.size))
        .collect();
    assert_eq!(files, [("file:///m/r.mp3", 3)]);
    assert_eq!(after.notes(), before.notes());
    assert_eq!(journal.interaction("other").await.unwrap(), None);
    journal.close().await;
}

#[tokio::test]
async fn a_format_1_journal_gets_its_interactions_built_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    let view = crate::record::View {
        channel: Some("messaging".into()),
        ..Default::default()
    };
    journal
        .append(of_engagement(
            "m",
            "contact_center.engagement_started",
            view,
            1,
        ))
        .await
        .unwrap();
    let expected = journal.interaction("E").await.unwrap().expect("E");
    journal.close().await;
    drop(journal);

    // Make it a file of the previous format: no table, version 1.
    {
        let db = redb::Database::builder()
            .set_concurrency_mode(CONCURRENCY)
            .create(dir.path().join(DB_FILE))
            .unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(tables::INTERACTIONS).unwrap();
        txn.open_table(tables::META)
            .unwrap()
            .insert(tables::FORMAT, 1u32.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }

    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    assert_eq!(
        journal.meta(tables::FORMAT).await.unwrap(),
        Some(tables::FORMAT_VERSION.to_le_bytes().to_vec())
    );
    assert_eq!(journal.interaction("E").await.unwrap(), Some(expected));
    journal.close().await;
}

#[tokio::test]
async fn a_sink_leaving_the_configuration_takes_its_crm_ids_and_set_up_problem() {
    let dir = tempfile::tempdir().unwrap();
    let both = routes(&[("sf", &[]), ("sf.2", &[]), ("keeps", &[])]);
    let journal = Journal::open(dir.path(), both).unwrap();
    let ids = CrmIds::on("https://org.example", "T1");
    for sink in ["sf", "sf.2", "keeps"] {
        journal
            .record_crm_ids(sink, "E", ids.clone())
            .await
            .unwrap();
        let problem = SetupProblem {
            reason: format!("fix {sink}"),
            since_ms: 1,
        };
        journal
            .set_setup_problem(sink, Some(&problem))
            .await
            .unwrap();
    }
    // "keeps" still holds a record when it leaves: it is kept, like its
    // outbox.
    journal.append(record("k", "e", None)).await.unwrap();
    let s = seq(journal.append(record("k2", "e", None)).await.unwrap());
    for sink in ["sf", "sf.2"] {
        journal.ack(sink, 1).await.unwrap();
        journal.ack(sink, s).await.unwrap();
    }
    assert_eq!(
        journal.setup_problem("sf").await.unwrap().unwrap().reason,
        "fix sf"
    );
    journal.set_setup_problem("sf", None).await.unwrap();
    assert_eq!(journal.setup_problem("sf").await.unwrap(), None);
    journal
        .set_setup_problem(
            "sf",
            Some(&SetupProblem {
                reason: "again".into(),
                since_ms: 2,
            }),
        )
        .await
        .unwrap();
    journal.close().await;
    drop(journal);

    let journal = Journal::open(dir.path(), routes(&[("sf.2", &[])])).unwrap();
    assert_eq!(journal.crm_ids("sf", "E").await.unwrap(), None);
    assert_eq!(journal.setup_problem("sf").await.unwrap(), None);
    assert_eq!(
        journal.crm_ids("sf.2", "E").await.unwrap(),
        Some(ids.clone())
    );
    assert_eq!(journal.crm_ids("keeps", "E").await.unwrap(), Some(ids));
    assert!(journal.setup_problem("keeps").await.unwrap().is_some());
    journal.close().await;
}

#[tokio::test]
async fn a_journal_without_the_crm_ids_table_reads_none_and_keeps_its_format() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    journal.close().await;
    drop(journal);
    // As a build before the table wrote it.
    {
        let db = redb::Database::builder()
            .set_concurrency_mode(CONCURRENCY)
            .create(dir.path().join(DB_FILE))
            .unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(tables::CRM_IDS).unwrap();
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        assert_eq!(read::crm_ids(&read, "a", "E").unwrap(), None);
    }
    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    assert_eq!(journal.crm_ids("a", "E").await.unwrap(), None);
    assert_eq!(
        journal.meta(tables::FORMAT).await.unwrap(),
        Some(2u32.to_le_bytes().to_vec())
    );
    journal
        .record_crm_ids("a", "E", CrmIds::on("s", "T"))
        .await
        .unwrap();
    assert!(journal.crm_ids("a", "E").await.unwrap().is_some());
    journal.close().await;
}

#[tokio::test]
async fn a_revision_the_pairs_ledger_assigned_is_stored_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), routes(&[("a", &[])])).unwrap();
    let numbered = |version: u8, revision: Option<u32>| {
        let journal = journal.clone();
        async move {
            journal
                .submit_numbered(record("n", "note", Some([version; 32])), revision)
                .await
                .unwrap()
                .await
                .unwrap()
                .unwrap()
        }
    };
    // The other relay forwarded two versions before this one saw any.
    assert!(matches!(
        numbered(3, Some(3)).await,
        AppendOutcome::Stored { revision: 3, .. }
    ));
    let forwarded: Vec<serde_json::Value> = outbox(&journal, "a", 0, 10)
        .await
        .iter()
        .map(|p| serde_json::from_slice(&p.bytes).unwrap())
        .collect();
    assert_eq!(forwarded[0]["revision"], 3, "{forwarded:?}");
    assert_eq!(
        journal.key_state("n", Some([4; 32])).await.unwrap(),
        read::KeyState::Revised { revision: 3 }
    );
    // An older version numbered below: stored as numbered, and the next
    // number the journal gives stays above everything it has seen.
    assert!(matches!(
        numbered(2, Some(2)).await,
        AppendOutcome::Stored { revision: 2, .. }
    ));
    assert_eq!(
        journal.key_state("n", Some([4; 32])).await.unwrap(),
        read::KeyState::Revised { revision: 3 }
    );
    assert!(matches!(
        numbered(4, None).await,
        AppendOutcome::Stored { revision: 4, .. }
    ));
    // A version the journal knows is a duplicate whatever the number.
    assert_eq!(numbered(3, Some(9)).await, AppendOutcome::Duplicate);
    assert_eq!(
        journal.key_state("n", Some([3; 32])).await.unwrap(),
        read::KeyState::Known
    );
    assert_eq!(
        journal.key_state("other", Some([3; 32])).await.unwrap(),
        read::KeyState::Unknown
    );
    journal.close().await;
}
