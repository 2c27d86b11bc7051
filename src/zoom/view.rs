//! A record's Zoom-neutral [`View`]: what the rest of the daemon needs from
//! `payload.object` (engagement, direction, channel, agents, consumer, queue,
//! flow, times, note and disposition ids, the files it asks for), read once
//! when the record is built.
//!
//! Pure. This and `reconcile::synth` are the only readers of Zoom's field
//! names; the socket's events and the REST items that `synth` turns into
//! records use different spellings for some fields (`engagement_direction` /
//! `direction`, `users[]` / `agents[]`, `consumers[]`), and both are read.

use serde_json::Value;

use crate::record::{Consumer, MediaKind, MediaRef, Party, View};

const PREFIX: &str = "contact_center.";

/// The view of an event with this name and `payload.object`.
pub fn of(event: &str, object: Option<&Value>) -> View {
    let kind = event.strip_prefix(PREFIX).unwrap_or(event).to_owned();
    let Some(object) = object.filter(|o| o.is_object()) else {
        return View {
            kind,
            ..View::default()
        };
    };
    let field = |name: &str| text(object.get(name));
    let first = |list: &str| {
        object
            .get(list)
            .and_then(Value::as_array)
            .and_then(|items| items.first())
    };
    let channel_item = first("channels");
    let consumer_item = first("consumers");
    let queue_item = first("queues");
    let flow_item = first("flows");
    let mut agents = Vec::new();
    for list in ["users", "agents"] {
        for item in object
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            push_agent(
                &mut agents,
                text(item.get("user_id")),
                text(item.get("user_display_name")).or_else(|| text(item.get("display_name"))),
            );
        }
    }
    push_agent(
        &mut agents,
        field("user_id"),
        field("user_display_name").or_else(|| field("display_name")),
    );
    let consumer = Consumer {
        number: field("consumer_number")
            .or_else(|| consumer_item.and_then(|c| text(c.get("consumer_number")))),
        name: field("consumer_display_name")
            .or_else(|| field("consumer_name"))
            .or_else(|| {
                consumer_item.and_then(|c| {
                    text(c.get("consumer_display_name")).or_else(|| text(c.get("consumer_name")))
                })
            }),
    };
    // The lifecycle events carry the engagement's start and end as their
    // own time.
    let lifecycle = |named: &str| {
        (kind == named)
            .then(|| time_ms(object.get("date_time_ms")))
            .flatten()
    };
    let party = |id: Option<String>, name: Option<String>| {
        (id.is_some() || name.is_some()).then_some(Party { id, name })
    };
    View {
        engagement_id: field("engagement_id"),
        direction: field("engagement_direction").or_else(|| field("direction")),
        channel: field("channel")
            .or_else(|| field("channel_type"))
            .or_else(|| channel_item.and_then(|c| text(c.get("channel")))),
        channel_source: field("channel_source")
            .or_else(|| channel_item.and_then(|c| text(c.get("channel_source")))),
        agents,
        consumer: (consumer.number.is_some() || consumer.name.is_some()).then_some(consumer),
        queue: party(
            field("cc_queue_id")
                .or_else(|| field("queue_id"))
                .or_else(|| queue_item.and_then(|q| text(q.get("cc_queue_id")))),
            field("queue_name").or_else(|| queue_item.and_then(|q| text(q.get("queue_name")))),
        ),
        flow: party(
            field("flow_id").or_else(|| flow_item.and_then(|f| text(f.get("flow_id")))),
            field("flow_name").or_else(|| flow_item.and_then(|f| text(f.get("flow_name")))),
        ),
        start_time: field("start_time")
            .or_else(|| time_ms(object.get("recording_start_time_ms")))
            .or_else(|| lifecycle("engagement_started")),
        end_time: field("end_time")
            .or_else(|| time_ms(object.get("recording_end_time_ms")))
            .or_else(|| lifecycle("engagement_ended")),
        note_id: field("note_id"),
        note: object
            .get("note")
            .and_then(Value::as_str)
            .filter(|note| !note.is_empty())
            .map(str::to_owned),
        disposition: party(field("disposition_id"), field("disposition_name")),
        last_modified: field("last_modified_time"),
        media: media(&kind, object),
        kind,
    }
}

/// The view of a stored record (`{event, payload: {object}}`), for records
/// stored before views were (the journal's format upgrade).
pub fn of_record(bytes: &[u8]) -> View {
    #[derive(serde::Deserialize)]
    struct Stored {
        #[serde(default)]
        event: String,
        #[serde(default)]
        payload: Value,
    }
    match serde_json::from_slice::<Stored>(bytes) {
        Ok(stored) => of(&stored.event, stored.payload.get("object")),
        Err(_) => View::default(),
    }
}

fn push_agent(agents: &mut Vec<Party>, id: Option<String>, name: Option<String>) {
    if id.is_none() && name.is_none() {
        return;
    }
    if id.is_some() && agents.iter().any(|a| a.id == id) {
        return;
    }
    agents.push(Party { id, name });
}

/// A non-empty string, or a number as text.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A `*_time_ms` field: Zoom writes ISO-8601 text with milliseconds (kept as
/// written); a number is read as milliseconds since the epoch.
fn time_ms(value: Option<&Value>) -> Option<String> {
    if let Some(written) = text(value).filter(|_| value.is_some_and(Value::is_string)) {
        return Some(written);
    }
    let ms = value?.as_i64()?;
    let at = jiff::Timestamp::from_millisecond(ms).ok()?;
    Some(crate::clock::rfc3339_ms(at))
}

/// The file an event of this kind asks for (DESIGN.md §3.3 "Media"): which
/// field names it, and where its URL is, or why it cannot be fetched.
fn media(kind: &str, object: &Value) -> Vec<MediaRef> {
    let (media_kind, id_field, url_field) = match kind {
        "recording_completed" => (MediaKind::Recording, "recording_id", "download_url"),
        "recording_transcript_completed" => (
            MediaKind::RecordingTranscript,
            "recording_id",
            "transcript_url",
        ),
        "engagement_messaging_transcript_completed" => (
            MediaKind::MessagingTranscript,
            "engagement_id",
            "transcript_url",
        ),
        "inbox_message_received" => (MediaKind::Voicemail, "message_id", "download_url"),
        "voicemail_transcript_completed" => (
            MediaKind::VoicemailTranscript,
            "message_id",
            "transcript_url",
        ),
        _ => return Vec::new(),
    };
    let field = |name: &str| text(object.get(name));
    let missing = |name: &str| Some(format!("the record has no payload.object.{name}"));
    let id = field(id_field);
    let url = field(url_field);
    let unusable = if id.is_none() {
        missing(id_field)
    } else if field("engagement_id").is_none() {
        missing("engagement_id")
    } else if url.is_none() && !matches!(media_kind, MediaKind::Recording | MediaKind::Voicemail) {
        missing(url_field)
    } else {
        None
    };
    vec![MediaRef {
        kind: media_kind,
        id,
        url,
        unusable,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_socket_and_the_rest_spellings() {
        let socket = of(
            "contact_center.engagement_note_added",
            Some(&json!({
                "engagement_id": "e1", "engagement_direction": "inbound", "channel": "voice",
                "cc_queue_id": "q1", "queue_name": "Support", "flow_id": "f1", "flow_name": "Main",
                "user_id": "u1", "user_display_name": "Ann", "consumer_number": "+1555",
                "consumer_display_name": "Bob", "note_id": "n1", "note": "hi",
                "last_modified_time": "2026-11-26T10:00:00Z"
            })),
        );
        assert_eq!(socket.kind, "engagement_note_added");
        assert_eq!(socket.engagement_id.as_deref(), Some("e1"));
        assert_eq!(socket.direction.as_deref(), Some("inbound"));
        assert_eq!(socket.channel.as_deref(), Some("voice"));
        assert_eq!(
            socket.agents,
            vec![Party {
                id: Some("u1".into()),
                name: Some("Ann".into())
            }]
        );
        assert_eq!(
            socket.consumer,
            Some(Consumer {
                number: Some("+1555".into()),
                name: Some("Bob".into())
            })
        );
        assert_eq!(
            socket.queue.and_then(|q| q.name).as_deref(),
            Some("Support")
        );
        assert_eq!(socket.note_id.as_deref(), Some("n1"));
        assert!(socket.media.is_empty());

        let rest = of(
            "contact_center.engagement_started",
            Some(&json!({
                "engagement_id": 42, "direction": "outbound",
                "channels": [{"channel": "messaging", "channel_source": "sms"}],
                "agents": [{"user_id": "u2", "display_name": "Cy"}],
                "consumers": [{"consumer_number": "+1666", "consumer_name": "Di"}],
                "queues": [{"cc_queue_id": "q2", "queue_name": "Sales"}],
                "start_time": "2026-11-26T10:00:00Z", "end_time": "2026-11-26T10:05:00Z"
            })),
        );
        assert_eq!(rest.engagement_id.as_deref(), Some("42"));
        assert_eq!(rest.direction.as_deref(), Some("outbound"));
        assert_eq!(rest.channel_source.as_deref(), Some("sms"));
        assert_eq!(rest.agents[0].name.as_deref(), Some("Cy"));
        assert_eq!(rest.consumer.and_then(|c| c.name).as_deref(), Some("Di"));
        assert_eq!(rest.end_time.as_deref(), Some("2026-11-26T10:05:00Z"));

        assert_eq!(
            of("x", None),
            View {
                kind: "x".into(),
                ..View::default()
            }
        );
        assert_eq!(of_record(b"not json"), View::default());
        let stored = br#"{"event":"contact_center.recording_completed","payload":{"object":{"engagement_id":"e","recording_id":"r","recording_start_time_ms":0}}}"#;
        let view = of_record(stored);
        assert_eq!(view.start_time.as_deref(), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(view.media.len(), 1);
    }

    #[test]
    fn reads_note_text_verbatim_and_the_engagements_times() {
        let note = of(
            "contact_center.engagement_note_added",
            Some(&json!({"engagement_id": "e", "note_id": "n", "note": " spaced  text "})),
        );
        assert_eq!(note.note.as_deref(), Some(" spaced  text "));
        let started = of(
            "contact_center.engagement_started",
            Some(&json!({"engagement_id": "e", "date_time_ms": "2026-11-26T10:00:00.250Z"})),
        );
        assert_eq!(
            (started.start_time.as_deref(), started.end_time.as_deref()),
            (Some("2026-11-26T10:00:00.250Z"), None)
        );
        let ended = of(
            "contact_center.engagement_ended",
            Some(&json!({"engagement_id": "e", "date_time_ms": "2026-11-26T10:05:00.000Z"})),
        );
        assert_eq!(
            (ended.start_time.as_deref(), ended.end_time.as_deref()),
            (None, Some("2026-11-26T10:05:00.000Z"))
        );
        // Another event's own time is not the engagement's.
        let answered = of(
            "contact_center.engagement_user_answered",
            Some(&json!({"engagement_id": "e", "date_time_ms": "2026-11-26T10:01:00.000Z"})),
        );
        assert_eq!((answered.start_time, answered.end_time), (None, None));
        // Zoom writes `*_time_ms` as text.
        let recording = of(
            "contact_center.recording_completed",
            Some(&json!({"engagement_id": "e", "recording_id": "r",
                "recording_start_time_ms": "2026-11-26T10:00:01.000Z",
                "recording_end_time_ms": "2026-11-26T10:04:00.000Z"})),
        );
        assert_eq!(
            recording.end_time.as_deref(),
            Some("2026-11-26T10:04:00.000Z")
        );
    }

    #[test]
    fn a_view_round_trips_through_json() {
        let view = of(
            "contact_center.recording_transcript_completed",
            Some(
                &json!({"engagement_id": "e1", "recording_id": "r1", "transcript_url": "https://t/1"}),
            ),
        );
        let json = serde_json::to_vec(&view).unwrap();
        assert_eq!(serde_json::from_slice::<View>(&json).unwrap(), view);
    }
}
