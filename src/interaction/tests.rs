//! The fold's precise rules (table tests) and its order independence
//! (proptest: permutations, duplicates and any split into merged parts).

use proptest::prelude::*;

use super::*;
use crate::record::{Consumer, MediaEntry, Party, View};

fn view(engagement: &str) -> View {
    View {
        engagement_id: Some(engagement.into()),
        ..View::default()
    }
}

fn note(id: &str, text: &str, modified: Option<&str>) -> View {
    View {
        kind: "engagement_note_added".into(),
        note_id: Some(id.into()),
        note: Some(text.into()),
        last_modified: modified.map(str::to_owned),
        ..view("E")
    }
}

fn disposition(id: &str, name: &str, modified: Option<&str>) -> View {
    View {
        kind: "engagement_disposition_added".into(),
        disposition: Some(Party {
            id: Some(id.into()),
            name: Some(name.into()),
        }),
        last_modified: modified.map(str::to_owned),
        ..view("E")
    }
}

fn file(location: &str) -> MediaEntry {
    MediaEntry {
        kind: "recording".into(),
        location: location.into(),
        url: Some(format!("https://signed/{location}")),
        content_type: "audio/mpeg".into(),
        size: 3,
        sha256: "ab".into(),
    }
}

/// A record as the table tests give it: view, event_ts, revision.
type Record = (View, i64, u32);

/// The aggregate of records of engagement `E`.
fn check(records: &[Record]) -> Interaction {
    let facts = records.iter().map(|(view, event_ts, revision)| Fact {
        view,
        event_ts: *event_ts,
        revision: *revision,
        files: &[],
    });
    let mut folded = fold(facts);
    let one = folded.remove("E").expect("an aggregate for E");
    assert!(folded.is_empty(), "{folded:?}");
    // The reverse order gives the same aggregate.
    let reversed = fold(records.iter().rev().map(|(view, event_ts, revision)| Fact {
        view,
        event_ts: *event_ts,
        revision: *revision,
        files: &[],
    }));
    assert_eq!(reversed.get("E"), Some(&one));
    one
}

fn texts(interaction: &Interaction) -> Vec<(&str, &str)> {
    interaction
        .notes()
        .into_iter()
        .map(|n| (n.note_id, n.text))
        .collect()
}

#[test]
fn a_notes_text_is_its_latest_modified_version() {
    let t = |s: &str| Some(format!("2026-11-26T10:00:0{s}Z"));
    let a = check(&[
        (note("N1", "first", t("1").as_deref()), 10, 1),
        (note("N1", "edited", t("5").as_deref()), 5, 2),
        (note("N1", "stale re-send", t("3").as_deref()), 20, 3),
    ]);
    assert_eq!(texts(&a), [("N1", "edited")]);
    // Same instant written two ways: a tie, the higher revision wins.
    let a = check(&[
        (note("N1", "rev 1", Some("2026-11-26T10:00:00Z")), 1, 1),
        (note("N1", "rev 2", Some("2026-11-26T10:00:00.000Z")), 1, 2),
    ]);
    assert_eq!(texts(&a), [("N1", "rev 2")]);
    assert_eq!(a.notes()[0].revision, 2);
    // No last_modified_time: the event time stands in for it.
    let a = check(&[
        (note("N1", "old", None), 1_000, 1),
        (note("N1", "new", None), 2_000, 2),
    ]);
    assert_eq!(texts(&a), [("N1", "new")]);
}

#[test]
fn notes_are_listed_by_their_first_versions_time_then_id() {
    let a = check(&[
        // N2's first version is the oldest, though its edit is the newest.
        (note("N2", "b2", Some("2026-11-26T10:00:09Z")), 0, 2),
        (note("N2", "b1", Some("2026-11-26T10:00:01Z")), 0, 1),
        (note("N1", "a", Some("2026-11-26T10:00:05Z")), 0, 1),
        (
            note("N0", "same time as N1", Some("2026-11-26T10:00:05Z")),
            0,
            1,
        ),
    ]);
    assert_eq!(
        texts(&a),
        [("N2", "b2"), ("N0", "same time as N1"), ("N1", "a")]
    );
}

#[test]
fn the_current_disposition_is_the_latest_modified_then_event_ts_then_id() {
    let cases: &[(&[Record], &str)] = &[
        (
            &[
                (
                    disposition("D1", "Resolved", Some("2026-11-26T10:05:00Z")),
                    1,
                    1,
                ),
                (
                    disposition("D2", "Callback", Some("2026-11-26T10:01:00Z")),
                    9,
                    1,
                ),
            ],
            "Resolved",
        ),
        // A tie on the time: the later event_ts.
        (
            &[
                (
                    disposition("D1", "Resolved", Some("2026-11-26T10:05:00Z")),
                    1,
                    1,
                ),
                (
                    disposition("D2", "Callback", Some("2026-11-26T10:05:00.000Z")),
                    2,
                    1,
                ),
            ],
            "Callback",
        ),
        // A tie on both: the greater disposition_id.
        (
            &[
                (
                    disposition("D2", "Callback", Some("2026-11-26T10:05:00Z")),
                    1,
                    1,
                ),
                (
                    disposition("D1", "Resolved", Some("2026-11-26T10:05:00Z")),
                    1,
                    1,
                ),
            ],
            "Callback",
        ),
        // REST lists dispositions without the time: their event_ts (the
        // engagement's end) stands in for it.
        (
            &[
                (
                    disposition("D1", "Resolved", Some("2026-11-26T10:05:00Z")),
                    1,
                    1,
                ),
                (
                    disposition("D2", "Escalated", None),
                    instant_ms("2026-11-26T10:06:00Z").unwrap(),
                    1,
                ),
            ],
            "Escalated",
        ),
    ];
    for (records, current) in cases {
        let a = check(records);
        assert_eq!(
            a.disposition().and_then(|d| d.name).as_deref(),
            Some(*current),
            "{records:?}"
        );
    }
    let a = check(cases[3].0);
    assert_eq!(a.disposition_names(), ["Resolved", "Escalated"]);
}

#[test]
fn every_field_of_the_engagement_is_kept() {
    let started = View {
        kind: "engagement_started".into(),
        direction: Some("inbound".into()),
        channel: Some("voice".into()),
        channel_source: Some("pstn".into()),
        start_time: Some("2026-11-26T10:00:00Z".into()),
        flow: Some(Party {
            id: Some("F".into()),
            name: Some("Main".into()),
        }),
        ..view("E")
    };
    let answered = View {
        agents: vec![Party {
            id: Some("U1".into()),
            name: Some("Ann".into()),
        }],
        queue: Some(Party {
            id: Some("Q1".into()),
            name: Some("Support".into()),
        }),
        consumer: Some(Consumer {
            number: Some("+14155551212".into()),
            name: None,
        }),
        ..view("E")
    };
    let transferred = View {
        agents: vec![
            Party {
                id: Some("U2".into()),
                name: Some("Bo".into()),
            },
            Party {
                id: Some("U1".into()),
                name: Some("Ann B.".into()),
            },
        ],
        queue: Some(Party {
            id: Some("Q2".into()),
            name: Some("Billing".into()),
        }),
        consumer: Some(Consumer {
            number: None,
            name: Some("Carol".into()),
        }),
        ..view("E")
    };
    let ended = View {
        kind: "engagement_ended".into(),
        end_time: Some("2026-11-26T10:05:30.500Z".into()),
        ..view("E")
    };
    let a = check(&[
        (ended, 400, 1),
        (transferred, 300, 1),
        (answered, 200, 1),
        (started, 100, 1),
    ]);
    assert_eq!(a.engagement_id(), "E");
    assert_eq!(a.direction(), Some("inbound"));
    assert_eq!(a.channel(), Some("voice"));
    assert_eq!(a.channel_source(), Some("pstn"));
    assert_eq!(a.flow().and_then(|f| f.name.as_deref()), Some("Main"));
    assert_eq!(a.queue().and_then(|q| q.name.as_deref()), Some("Billing"));
    assert_eq!(
        a.consumer(),
        Consumer {
            number: Some("+14155551212".into()),
            name: Some("Carol".into())
        }
    );
    let agents: Vec<_> = a.agents().into_iter().map(|p| p.name.unwrap()).collect();
    assert_eq!(agents, ["Ann B.", "Bo"]);
    assert_eq!(a.start_ms(), instant_ms("2026-11-26T10:00:00Z"));
    assert_eq!(a.end_ms(), instant_ms("2026-11-26T10:05:30.500Z"));
    assert_eq!(a.duration_seconds(), Some(330));
    assert!(a.notes().is_empty());
    assert_eq!(a.disposition(), None);
}

#[test]
fn files_are_kept_once_per_location_and_records_without_an_engagement_are_left_out() {
    let recording = view("E");
    let files = [file("s3://b/recording-1.mp3")];
    let again = [file("s3://b/recording-1.mp3"), file("s3://b/t-1.vtt")];
    let no_engagement = View::default();
    let folded = fold([
        Fact {
            view: &recording,
            event_ts: 1,
            revision: 1,
            files: &files,
        },
        Fact {
            view: &recording,
            event_ts: 2,
            revision: 1,
            files: &again,
        },
        Fact {
            view: &no_engagement,
            event_ts: 3,
            revision: 1,
            files: &files,
        },
    ]);
    assert_eq!(folded.len(), 1);
    let locations: Vec<&str> = folded["E"].files().map(|f| f.location.as_str()).collect();
    assert_eq!(locations, ["s3://b/recording-1.mp3", "s3://b/t-1.vtt"]);
    // The signed link never shows in Debug output.
    assert!(!format!("{:?}", folded["E"]).contains("https://signed"));
    let stored = folded["E"].encode();
    assert_eq!(Interaction::decode(&stored).as_ref(), Some(&folded["E"]));
    assert_eq!(Interaction::decode(b"nope"), None);
}

// The proptest: records drawn from small pools so that they collide on every
// field (same note ids, same times, different texts, …).

fn pick<T: Clone + std::fmt::Debug + 'static>(pool: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(pool)
}

fn maybe(pool: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    prop::option::of(pick(pool).prop_map(str::to_owned))
}

fn party() -> impl Strategy<Value = Option<Party>> {
    prop::option::of(
        (maybe(&["1", "2"]), maybe(&["A", "B"])).prop_map(|(id, name)| Party { id, name }),
    )
}

const TIMES: &[&str] = &[
    "2026-11-26T10:00:00Z",
    "2026-11-26T10:00:00.000Z",
    "2026-11-26T10:00:01Z",
    "2026-11-26T11:00:01+01:00",
    "2026-11-26T10:00:02Z",
    "not a time",
];

prop_compose! {
    fn record()(
        engagement in maybe(&["E1", "E2"]),
        direction in maybe(&["inbound", "outbound"]),
        channel in maybe(&["voice", "messaging"]),
        channel_source in maybe(&["sms", "web_chat"]),
        agents in prop::collection::vec(party(), 0..3),
        number in maybe(&["+1", "+2"]),
        name in maybe(&["Carol", "Dan"]),
        queue in party(),
        flow in party(),
        start_time in maybe(TIMES),
        end_time in maybe(TIMES),
        note in prop::option::of((pick(&["N1", "N2"]), pick(&["a", "b", "c"]))),
        disposition in party(),
        last_modified in maybe(TIMES),
        event_ts in 0i64..4,
        revision in 1u32..4,
        files in prop::collection::vec(
            (pick(&["s3://x/1", "s3://x/2"]), maybe(&["https://a", "https://b"]), 0u64..3),
            0..3,
        ),
    ) -> (View, i64, u32, Vec<MediaEntry>) {
        let (note_id, note) = match note {
            Some((id, text)) => (Some(id.to_owned()), Some(text.to_owned())),
            None => (None, None),
        };
        let view = View {
            engagement_id: engagement,
            direction,
            channel,
            channel_source,
            agents: agents.into_iter().flatten().collect(),
            consumer: (number.is_some() || name.is_some()).then_some(Consumer { number, name }),
            queue,
            flow,
            start_time,
            end_time,
            note_id,
            note,
            disposition,
            last_modified,
            ..View::default()
        };
        let files = files
            .into_iter()
            .map(|(location, url, size)| MediaEntry {
                kind: "recording".into(),
                location: location.into(),
                url,
                content_type: "audio/mpeg".into(),
                size,
                sha256: "00".into(),
            })
            .collect();
        (view, event_ts, revision, files)
    }
}

type Records = Vec<(View, i64, u32, Vec<MediaEntry>)>;

fn folded(records: &Records, order: impl Iterator<Item = usize>) -> BTreeMap<String, Interaction> {
    fold(order.map(|i| {
        let (view, event_ts, revision, files) = &records[i];
        Fact {
            view,
            event_ts: *event_ts,
            revision: *revision,
            files,
        }
    }))
}

prop_compose! {
    /// Records, and an order of their indices: a permutation with
    /// duplicates mixed in.
    fn records_and_order()(records in prop::collection::vec(record(), 1..12))(
        order in Just((0..records.len()).collect::<Vec<_>>()).prop_shuffle(),
        duplicates in prop::collection::vec(0..records.len(), 0..6),
        positions in prop::collection::vec(any::<prop::sample::Index>(), 6),
        split in any::<prop::sample::Index>(),
        records in Just(records),
    ) -> (Records, Vec<usize>, usize) {
        let mut order = order;
        for (n, duplicate) in duplicates.into_iter().enumerate() {
            let at = positions[n].index(order.len() + 1);
            order.insert(at, duplicate);
        }
        let split = split.index(order.len() + 1);
        (records, order, split)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_order_of_the_same_records_duplicates_included_gives_the_same_aggregate(
        (records, order, split) in records_and_order()
    ) {
        let expected = folded(&records, 0..records.len());
        prop_assert_eq!(&folded(&records, order.iter().copied()), &expected);

        // Two parts folded apart and merged (the journal's incremental
        // fold, and merging either way round) give the same too.
        let (left, right) = order.split_at(split);
        let (left, right) = (
            folded(&records, left.iter().copied()),
            folded(&records, right.iter().copied()),
        );
        for (first, second) in [(&left, &right), (&right, &left)] {
            let mut merged = first.clone();
            for (id, theirs) in second {
                match merged.get_mut(id) {
                    Some(mine) => mine.merge(theirs),
                    None => {
                        merged.insert(id.clone(), theirs.clone());
                    }
                }
            }
            prop_assert_eq!(&merged, &expected);
        }

        // Idempotent, and what is stored reads back the same.
        for interaction in expected.values() {
            let mut twice = interaction.clone();
            twice.merge(interaction);
            prop_assert_eq!(&twice, interaction);
            let decoded = Interaction::decode(&interaction.encode());
            prop_assert_eq!(decoded.as_ref(), Some(interaction));
        }
    }
}
