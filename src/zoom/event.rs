//! Zoom event envelopes (`{event, event_ts, payload}`) and their natural keys
//! (docs/contract.md §3.4).
//!
//! Pure: a body goes in, a [`NewRecord`] comes out. Bodies that lack expected
//! fields are still turned into records under the fallback key, never dropped.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::record::{NewRecord, Source};

const PREFIX: &str = "contact_center.";

/// Natural-key rules: event (without prefix) → the `payload.object` fields whose
/// values make the key, in order.
const KEYED_EVENTS: &[(&str, &[&str])] = &[
    ("recording_completed", &["recording_id"]),
    ("recording_transcript_completed", &["recording_id"]),
    (
        "engagement_messaging_transcript_completed",
        &["engagement_id"],
    ),
    ("engagement_note_added", &["engagement_id", "note_id"]),
    (
        "engagement_disposition_added",
        &["engagement_id", "disposition_id"],
    ),
    ("inbox_message_received", &["message_id"]),
    ("voicemail_transcript_completed", &["message_id"]),
];

/// Event name used when a body has no string `event` field.
pub const UNKNOWN_EVENT: &str = "unknown";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    #[error("event body is not a JSON object: {0}")]
    NotObject(String),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    event: Option<Value>,
    #[serde(default)]
    event_ts: Option<Value>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

/// Turns a webhook body (the `content` of a `message` frame) into a record.
/// `received_ms` stands in for a missing or unusable `event_ts`.
pub fn parse_body(
    body: &str,
    source: Source,
    received_at: String,
    received_ms: i64,
) -> Result<NewRecord, EventError> {
    let envelope: Envelope =
        serde_json::from_str(body).map_err(|e| EventError::NotObject(e.to_string()))?;
    if !body.trim_start().starts_with('{') {
        return Err(EventError::NotObject("not an object".into()));
    }
    let event = match envelope.event {
        Some(Value::String(name)) if !name.is_empty() => name,
        _ => UNKNOWN_EVENT.to_string(),
    };
    let event_ts = envelope
        .event_ts
        .as_ref()
        .and_then(millis)
        .unwrap_or(received_ms);
    let payload = match envelope.payload {
        Some(raw) => raw.to_owned(),
        None => RawValue::from_string("null".into())
            .map_err(|e| EventError::NotObject(e.to_string()))?,
    };
    // The payload is parsed a second time, for its key and its view.
    let object: Option<Value> = serde_json::from_str::<Value>(payload.get())
        .ok()
        .and_then(|mut p| p.get_mut("object").map(Value::take));
    let view = super::view::of(&event, object.as_ref());
    let id = natural_key(&event, object.as_ref(), body);
    let version = (short_name(&event) == "engagement_note_added")
        .then(|| object.as_ref().map(note_version))
        .flatten();
    Ok(NewRecord {
        id,
        event,
        event_ts,
        source,
        received_at,
        payload,
        version,
        view,
    })
}

fn short_name(event: &str) -> &str {
    event.strip_prefix(PREFIX).unwrap_or(event)
}

fn rule_for(event: &str) -> Option<&'static [&'static str]> {
    // Only `contact_center.*` names get keyed rules: a bare "recording_completed"
    // from some other product is not the item docs/contract.md §3.4 means.
    let short = event.strip_prefix(PREFIX)?;
    KEYED_EVENTS
        .iter()
        .find(|(name, _)| *name == short)
        .map(|(_, fields)| *fields)
}

/// The natural key of an event: `{short name}:{ids}` for the listed types,
/// `{short name}:{first 32 hex of sha256(body)}` for everything else and for
/// listed types whose id fields are missing.
pub fn natural_key(event: &str, object: Option<&Value>, body: &str) -> String {
    if let (Some(fields), Some(object)) = (rule_for(event), object) {
        let ids: Option<Vec<String>> = fields.iter().map(|f| id_value(object.get(f)?)).collect();
        if let Some(ids) = ids {
            return format!("{}:{}", short_name(event), ids.join(":"));
        }
    }
    let digest = Sha256::digest(body.as_bytes());
    format!("{}:{}", short_name(event), &hex::encode(digest)[..32])
}

fn id_value(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What makes a note edit a new revision: the text (exactly) and the
/// last-modified instant (`…T10:00:00Z` equals `…T10:00:00.000Z`).
pub fn note_version(object: &Value) -> [u8; 32] {
    let text = object
        .get("note")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let modified = object
        .get("last_modified_time")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let instant = modified
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_nanosecond().to_string())
        .unwrap_or_else(|_| modified.to_string());
    let mut hasher = Sha256::new();
    hasher.update(text.len().to_le_bytes());
    hasher.update(text.as_bytes());
    hasher.update(instant.as_bytes());
    hasher.finalize().into()
}

/// `event_ts` as milliseconds, leniently: Zoom sends an integer, but a float or a
/// numeric string is not worth losing an event over.
fn millis(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(body: &str) -> String {
        parse_body(body, Source::Websocket, "t".into(), 7)
            .unwrap()
            .id
    }

    fn hash32(body: &str) -> String {
        hex::encode(Sha256::digest(body.as_bytes()))[..32].to_string()
    }

    #[test]
    fn natural_keys_follow_the_design_table() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"event":"contact_center.recording_completed","event_ts":1,"payload":{"account_id":"a","object":{"recording_id":"R1","engagement_id":"E1"}}}"#,
                "recording_completed:R1",
            ),
            (
                r#"{"event":"contact_center.recording_transcript_completed","payload":{"object":{"recording_id":"R1"}}}"#,
                "recording_transcript_completed:R1",
            ),
            (
                r#"{"event":"contact_center.engagement_messaging_transcript_completed","payload":{"object":{"engagement_id":"E1"}}}"#,
                "engagement_messaging_transcript_completed:E1",
            ),
            (
                r#"{"event":"contact_center.engagement_note_added","payload":{"object":{"engagement_id":"E1","note_id":"N1","note":"hi"}}}"#,
                "engagement_note_added:E1:N1",
            ),
            (
                r#"{"event":"contact_center.engagement_disposition_added","payload":{"object":{"engagement_id":"E1","disposition_id":"D1"}}}"#,
                "engagement_disposition_added:E1:D1",
            ),
            (
                r#"{"event":"contact_center.inbox_message_received","payload":{"object":{"message_id":"M1"}}}"#,
                "inbox_message_received:M1",
            ),
            (
                r#"{"event":"contact_center.voicemail_transcript_completed","payload":{"object":{"message_id":"M1"}}}"#,
                "voicemail_transcript_completed:M1",
            ),
            (
                r#"{"event":"contact_center.recording_completed","payload":{"object":{"recording_id":12345}}}"#,
                "recording_completed:12345",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(&key_of(body), expected, "body: {body}");
        }
    }

    #[test]
    fn other_events_and_missing_ids_hash_the_raw_body() {
        let cases = [
            r#"{"event":"contact_center.engagement_started","event_ts":1,"payload":{"object":{"engagement_id":"E1"}}}"#,
            r#"{"event":"contact_center.recording_completed","payload":{"object":{"engagement_id":"E1"}}}"#,
            r#"{"event":"contact_center.engagement_note_added","payload":{"object":{"engagement_id":"E1","note_id":""}}}"#,
            r#"{"event":"contact_center.recording_completed","payload":{}}"#,
            r#"{"event":"contact_center.recording_completed"}"#,
        ];
        for body in cases {
            let event: Value = serde_json::from_str(body).unwrap();
            let short = event["event"].as_str().unwrap().trim_start_matches(PREFIX);
            assert_eq!(
                key_of(body),
                format!("{short}:{}", hash32(body)),
                "body: {body}"
            );
        }
        // Whitespace is part of the raw body: the key is over the bytes received.
        let spaced = r#"{"event": "zoom.other",  "payload":{}}"#;
        assert_eq!(key_of(spaced), format!("zoom.other:{}", hash32(spaced)));
        let nameless = r#"{"payload":{"object":{}}}"#;
        assert_eq!(key_of(nameless), format!("unknown:{}", hash32(nameless)));
    }

    #[test]
    fn payload_is_kept_verbatim_and_event_ts_is_lenient() {
        let body =
            r#"{"event":"x.y","event_ts":"1700000000123","payload":{ "object" : {"b":1,"a":2} }}"#;
        let record = parse_body(body, Source::Websocket, "t".into(), 7).unwrap();
        assert_eq!(record.payload.get(), r#"{ "object" : {"b":1,"a":2} }"#);
        assert_eq!(record.event_ts, 1700000000123);
        let record = parse_body(r#"{"event":"x"}"#, Source::Websocket, "t".into(), 7).unwrap();
        assert_eq!(record.event_ts, 7);
        assert_eq!(record.payload.get(), "null");
        assert!(parse_body("[1]", Source::Websocket, "t".into(), 7).is_err());
        assert!(parse_body("{broken", Source::Websocket, "t".into(), 7).is_err());
    }

    #[test]
    fn note_versions_compare_text_exactly_and_time_as_an_instant() {
        let note = |text: &str, time: &str| {
            note_version(&serde_json::json!({"note": text, "last_modified_time": time}))
        };
        assert_eq!(
            note("a", "2026-01-01T10:00:00Z"),
            note("a", "2026-01-01T10:00:00.000Z")
        );
        assert_eq!(
            note("a", "2026-01-01T10:00:00Z"),
            note("a", "2026-01-01T11:00:00+01:00")
        );
        assert_ne!(
            note("a", "2026-01-01T10:00:00Z"),
            note("a ", "2026-01-01T10:00:00Z")
        );
        assert_ne!(
            note("a", "2026-01-01T10:00:00Z"),
            note("a", "2026-01-01T10:00:01Z")
        );
        let body = r#"{"event":"contact_center.engagement_note_added","payload":{"object":{"engagement_id":"E","note_id":"N","note":"a","last_modified_time":"2026-01-01T10:00:00Z"}}}"#;
        let record = parse_body(body, Source::Websocket, "t".into(), 7).unwrap();
        assert_eq!(record.version, Some(note("a", "2026-01-01T10:00:00.000Z")));
        let other = r#"{"event":"contact_center.recording_completed","payload":{"object":{"recording_id":"R"}}}"#;
        assert_eq!(
            parse_body(other, Source::Websocket, "t".into(), 7)
                .unwrap()
                .version,
            None
        );
    }
}
