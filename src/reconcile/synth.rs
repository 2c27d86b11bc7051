//! REST items → records of the same event type, payload shape and natural key
//! as the WebSocket path produces (docs/contract.md §3.3–3.4), so the journal's dedup
//! makes an item seen on both paths a no-op.
//!
//! Pure: items in, records out. Fields with an event counterpart are renamed to
//! it (`direction` → `engagement_direction`, recording times → `*_time_ms` as
//! ISO-8601 with milliseconds, the agent → `users[]`); every other field is
//! kept under its REST name. URLs are passed through as Zoom returned them.

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::record::{NewRecord, Source};
use crate::zoom::event::{natural_key, note_version};

const RECORDING_COMPLETED: &str = "contact_center.recording_completed";
const RECORDING_TRANSCRIPT: &str = "contact_center.recording_transcript_completed";
const MESSAGING_TRANSCRIPT: &str = "contact_center.engagement_messaging_transcript_completed";
const NOTE_ADDED: &str = "contact_center.engagement_note_added";
const DISPOSITION_ADDED: &str = "contact_center.engagement_disposition_added";
const INBOX_MESSAGE: &str = "contact_center.inbox_message_received";
const VOICEMAIL_TRANSCRIPT: &str = "contact_center.voicemail_transcript_completed";

/// Every event type reconciliation can produce.
pub const TYPES: [&str; 7] = [
    RECORDING_COMPLETED,
    RECORDING_TRANSCRIPT,
    MESSAGING_TRANSCRIPT,
    NOTE_ADDED,
    DISPOSITION_ADDED,
    INBOX_MESSAGE,
    VOICEMAIL_TRANSCRIPT,
];

/// Context every synthesized record shares.
pub struct Origin<'a> {
    pub account_id: &'a str,
    pub received_at: &'a str,
}

/// A recording: `recording_completed`, plus `recording_transcript_completed`
/// once Zoom lists a transcript URL.
pub fn from_recording(item: &Value, origin: &Origin) -> Vec<NewRecord> {
    let Some(fields) = item.as_object() else {
        return Vec::new();
    };
    let mut object = Map::new();
    for (key, value) in fields {
        match key.as_str() {
            "direction" => {
                object.insert("engagement_direction".into(), value.clone());
            }
            "recording_start_time" => {
                object.insert("recording_start_time_ms".into(), iso_millis(value));
            }
            "recording_end_time" => {
                object.insert("recording_end_time_ms".into(), iso_millis(value));
            }
            "user_id" | "display_name" => {}
            _ => {
                object.insert(key.clone(), value.clone());
            }
        }
    }
    if fields.contains_key("user_id") || fields.contains_key("display_name") {
        let user = json!({
            "user_id": fields.get("user_id").cloned().unwrap_or(Value::Null),
            "user_display_name": fields.get("display_name").cloned().unwrap_or(Value::Null),
        });
        object.insert("users".into(), Value::Array(vec![user]));
    }
    let event_ts = millis_of(fields.get("recording_end_time"));
    let mut out = Vec::new();
    let transcript = non_empty(fields.get("transcript_url")).is_some();
    out.push(record(
        RECORDING_COMPLETED,
        object.clone(),
        event_ts,
        origin,
        false,
    ));
    if transcript {
        out.push(record(
            RECORDING_TRANSCRIPT,
            object,
            event_ts,
            origin,
            false,
        ));
    }
    out
}

/// An ended engagement: each note, each disposition, and the messaging
/// transcript once Zoom lists its URL. An engagement not ended yet yields
/// nothing (a later pass sees it).
pub fn from_engagement(item: &Value, origin: &Origin) -> Vec<NewRecord> {
    let Some(fields) = item.as_object() else {
        return Vec::new();
    };
    let Some(engagement_id) = non_empty(fields.get("engagement_id")) else {
        return Vec::new();
    };
    let Some(end_time) = non_empty(fields.get("end_time")) else {
        return Vec::new();
    };
    let end_ms = millis_of(Some(&Value::String(end_time.to_string())));
    let first_channel = fields.get("channels").and_then(|c| c.get(0));
    let mut base = Map::new();
    base.insert(
        "engagement_id".into(),
        Value::String(engagement_id.to_string()),
    );
    if let Some(direction) = fields.get("direction") {
        base.insert("engagement_direction".into(), direction.clone());
    }
    for key in ["channel", "channel_source"] {
        if let Some(value) = first_channel.and_then(|c| c.get(key)) {
            base.insert(key.into(), value.clone());
        }
    }
    if let Some(queue) = fields.get("queues").and_then(|q| q.get(0)) {
        for key in ["cc_queue_id", "queue_name"] {
            if let Some(value) = queue.get(key) {
                base.insert(key.into(), value.clone());
            }
        }
    }
    if let Some(flow) = fields.get("flows").and_then(|f| f.get(0)) {
        for key in ["flow_id", "flow_name"] {
            if let Some(value) = flow.get(key) {
                base.insert(key.into(), value.clone());
            }
        }
    }
    let mut out = Vec::new();
    for note in fields
        .get("notes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut object = base.clone();
        if let Some(note) = note.as_object() {
            object.extend(note.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let ts = note
            .get("last_modified_time")
            .map(|t| millis_of(Some(t)))
            .unwrap_or(end_ms);
        out.push(record(NOTE_ADDED, object, ts, origin, true));
    }
    for disposition in fields
        .get("dispositions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut object = base.clone();
        if let Some(disposition) = disposition.as_object() {
            object.extend(disposition.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out.push(record(DISPOSITION_ADDED, object, end_ms, origin, false));
    }
    let messaging = first_channel
        .and_then(|c| c.get("channel"))
        .and_then(Value::as_str)
        .is_none_or(|c| c == "messaging");
    if messaging && let Some(url) = non_empty(fields.get("transcript_url")) {
        let mut object = base;
        object.insert("transcript_url".into(), Value::String(url.to_string()));
        out.push(record(MESSAGING_TRANSCRIPT, object, end_ms, origin, false));
    }
    out
}

/// A voicemail: `inbox_message_received`, plus `voicemail_transcript_completed`
/// once Zoom lists a transcript URL.
pub fn from_inbox_message(item: &Value, origin: &Origin) -> Vec<NewRecord> {
    let Some(fields) = item.as_object() else {
        return Vec::new();
    };
    let mut object = Map::new();
    for (key, value) in fields {
        match key.as_str() {
            "direction" => {
                object.insert("engagement_direction".into(), value.clone());
            }
            _ => {
                object.insert(key.clone(), value.clone());
            }
        }
    }
    let event_ts = millis_of(fields.get("created_at"));
    let mut out = vec![record(
        INBOX_MESSAGE,
        object.clone(),
        event_ts,
        origin,
        false,
    )];
    if non_empty(fields.get("transcript_url")).is_some() {
        out.push(record(
            VOICEMAIL_TRANSCRIPT,
            object,
            event_ts,
            origin,
            false,
        ));
    }
    out
}

fn record(
    event: &str,
    object: Map<String, Value>,
    event_ts: i64,
    origin: &Origin,
    editable: bool,
) -> NewRecord {
    let object = Value::Object(object);
    let payload = json!({ "account_id": origin.account_id, "object": object });
    // `Value`'s Display is its compact serialization and cannot fail.
    let text = payload.to_string();
    let body = json!({ "event": event, "event_ts": event_ts, "payload": payload }).to_string();
    let object = &payload["object"];
    NewRecord {
        id: natural_key(event, Some(object), &body),
        event: event.to_string(),
        event_ts,
        source: Source::Reconcile,
        received_at: origin.received_at.to_string(),
        payload: RawValue::from_string(text)
            .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default()),
        version: editable.then(|| note_version(object)),
        view: crate::zoom::view::of(event, Some(object)),
    }
}

fn non_empty(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// ISO-8601 (any offset) → ms since the epoch; 0 when unparseable.
fn millis_of(value: Option<&Value>) -> i64 {
    value
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond())
        .unwrap_or(0)
}

/// ISO-8601 with milliseconds in UTC, the `*_time_ms` format of events; the
/// value as given when it does not parse.
fn iso_millis(value: &Value) -> Value {
    match value
        .as_str()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
    {
        Some(t) => Value::String(crate::clock::rfc3339_ms(t)),
        None => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoom::event::parse_body;

    const ORIGIN: Origin = Origin {
        account_id: "acct",
        received_at: "2026-11-26T10:00:00.000Z",
    };

    /// The key the WebSocket path gives an event body.
    fn socket_key(body: Value) -> (String, Option<[u8; 32]>) {
        let record = parse_body(&body.to_string(), Source::Websocket, String::new(), 0).unwrap();
        (record.id, record.version)
    }

    #[test]
    fn recordings_map_to_the_event_shape_and_key() {
        let item = json!({"recording_id": "R1", "engagement_id": "E1", "direction": "inbound",
            "recording_start_time": "2026-11-26T09:00:00Z", "recording_end_time": "2026-11-26T09:05:00Z",
            "user_id": "U1", "display_name": "Ada", "download_url": "https://api.zoom.us/v2/x", "transcript_url": ""});
        let records = from_recording(&item, &ORIGIN);
        assert_eq!(records.len(), 1, "no transcript yet");
        let record = &records[0];
        assert_eq!(record.id, "recording_completed:R1");
        assert_eq!(
            record.id,
            socket_key(
                json!({"event": RECORDING_COMPLETED, "payload": {"object": {"recording_id": "R1"}}})
            )
            .0
        );
        assert_eq!(record.source, Source::Reconcile);
        assert_eq!(record.event_ts, 1_795_683_900_000);
        let payload: Value = serde_json::from_str(record.payload.get()).unwrap();
        let object = &payload["object"];
        assert_eq!(payload["account_id"], "acct");
        assert_eq!(object["engagement_direction"], "inbound");
        assert_eq!(
            object["recording_start_time_ms"],
            "2026-11-26T09:00:00.000Z"
        );
        assert_eq!(object["recording_end_time_ms"], "2026-11-26T09:05:00.000Z");
        assert_eq!(
            object["users"],
            json!([{"user_id": "U1", "user_display_name": "Ada"}])
        );
        assert_eq!(object["download_url"], "https://api.zoom.us/v2/x");
        assert!(object.get("direction").is_none() && object.get("display_name").is_none());
        // Its view, as the socket's event would have it.
        let view = &record.view;
        assert_eq!(view.kind, "recording_completed");
        assert_eq!(view.engagement_id.as_deref(), Some("E1"));
        assert_eq!(view.direction.as_deref(), Some("inbound"));
        assert_eq!(view.agents[0].name.as_deref(), Some("Ada"));
        assert_eq!(view.start_time.as_deref(), Some("2026-11-26T09:00:00.000Z"));
        assert_eq!(
            view.media[0].url.as_deref(),
            Some("https://api.zoom.us/v2/x")
        );

        let with_transcript = json!({"recording_id": "R1", "recording_end_time": "2026-11-26T09:05:00Z", "transcript_url": "https://t"});
        let ids: Vec<String> = from_recording(&with_transcript, &ORIGIN)
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            ids,
            [
                "recording_completed:R1",
                "recording_transcript_completed:R1"
            ]
        );
    }

    #[test]
    fn engagements_yield_notes_dispositions_and_messaging_transcripts() {
        let item = json!({"engagement_id": "E1", "direction": "inbound", "start_time": "2026-11-26T09:00:00Z",
            "end_time": "2026-11-26T09:10:00Z", "channels": [{"channel": "messaging", "channel_source": "web_chat"}],
            "notes": [{"note_id": "N1", "note": "called back", "last_modified_time": "2026-11-26T09:09:00Z", "user_id": "U1"}],
            "dispositions": [{"disposition_id": "D1", "disposition_name": "Resolved"}],
            "transcript_url": "https://api.zoom.us/v2/contact_center/engagements/transcripts/download/E1"});
        let records = from_engagement(&item, &ORIGIN);
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "engagement_note_added:E1:N1",
                "engagement_disposition_added:E1:D1",
                "engagement_messaging_transcript_completed:E1"
            ]
        );
        // The note's revision fingerprint matches the socket's for the same text and time.
        let socket = socket_key(
            json!({"event": NOTE_ADDED, "payload": {"object": {"engagement_id": "E1", "note_id": "N1",
            "note": "called back", "last_modified_time": "2026-11-26T09:09:00.000Z"}}}),
        );
        assert_eq!((records[0].id.clone(), records[0].version), socket);
        assert_eq!(records[0].view.note_id.as_deref(), Some("N1"));
        assert_eq!(records[0].view.engagement_id.as_deref(), Some("E1"));
        assert_eq!(
            records[1]
                .view
                .disposition
                .as_ref()
                .and_then(|d| d.name.as_deref()),
            Some("Resolved")
        );
        assert_eq!(records[2].view.media.len(), 1);
        assert_eq!(records[0].event_ts, 1_795_684_140_000);
        assert_eq!(records[1].event_ts, 1_795_684_200_000);
        // Not ended yet: nothing, a later pass will see it.
        let open = json!({"engagement_id": "E2", "start_time": "2026-11-26T09:00:00Z", "notes": [{"note_id": "N"}]});
        assert!(from_engagement(&open, &ORIGIN).is_empty());
        // A voice engagement's transcript_url is not a messaging transcript.
        let voice = json!({"engagement_id": "E3", "end_time": "2026-11-26T09:10:00Z", "channels": [{"channel": "voice"}], "transcript_url": "https://t"});
        assert!(from_engagement(&voice, &ORIGIN).is_empty());
    }

    #[test]
    fn voicemails_and_their_transcripts() {
        let item = json!({"message_id": "M1", "engagement_id": "E1", "created_at": "2026-11-26T09:00:00Z", "transcript_url": "https://t"});
        let records = from_inbox_message(&item, &ORIGIN);
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "inbox_message_received:M1",
                "voicemail_transcript_completed:M1"
            ]
        );
        assert!(records.iter().all(|r| r.event_ts == 1_795_683_600_000));
        // Missing ids fall back to a hash key, like the socket path.
        let anonymous = from_inbox_message(&json!({"created_at": "2026-11-26T09:00:00Z"}), &ORIGIN);
        assert!(
            anonymous[0].id.starts_with("inbox_message_received:")
                && anonymous[0].id.len() == 23 + 32
        );
    }
}
