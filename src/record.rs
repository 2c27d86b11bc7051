//! The forwarded record (docs/contract.md §3.3): what the journal stores and every sink
//! receives, one JSON object per item.
//!
//! This module owns the wire shape only. Natural keys are computed in
//! `zoom::event`; revisions are assigned by the journal.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Where an item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Websocket,
    Reconcile,
}

/// An item on its way into the journal: everything but the revision, which only
/// the journal can decide (it knows what was seen before).
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// Natural key (docs/contract.md §3.4).
    pub id: String,
    /// Full event name, e.g. `contact_center.recording_completed`.
    pub event: String,
    /// Milliseconds since the epoch, from Zoom or the item's own time.
    pub event_ts: i64,
    pub source: Source,
    /// RFC 3339 with milliseconds, UTC.
    pub received_at: String,
    /// `payload` exactly as Zoom sent it.
    pub payload: Box<RawValue>,
    /// For editable items (notes): a fingerprint of the editable content. A known
    /// key with a different fingerprint is a new revision; `None` means first-wins.
    pub version: Option<[u8; 32]>,
}

/// The forwarded record as serialized to sinks.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    pub id: &'a str,
    pub revision: u32,
    pub event: &'a str,
    pub event_ts: i64,
    pub source: Source,
    pub received_at: &'a str,
    pub payload: &'a RawValue,
}

impl NewRecord {
    /// Serializes the record as forwarded, with the revision the journal chose.
    pub fn to_json(&self, revision: u32) -> Vec<u8> {
        let record = Record {
            id: &self.id,
            revision,
            event: &self.event,
            event_ts: self.event_ts,
            source: self.source,
            received_at: &self.received_at,
            payload: &self.payload,
        };
        // Serializing borrowed strings, integers and a RawValue cannot fail.
        serde_json::to_vec(&record).unwrap_or_default()
    }
}

/// The few fields a sink needs to address a stored record without parsing the
/// payload.
#[derive(Debug, Deserialize)]
pub struct RecordHeader<'a> {
    #[serde(borrow)]
    pub id: std::borrow::Cow<'a, str>,
    pub revision: u32,
    #[serde(borrow)]
    pub event: std::borrow::Cow<'a, str>,
    /// When the daemon read or synthesized the record, just before persisting it.
    #[serde(borrow, default)]
    pub received_at: Option<std::borrow::Cow<'a, str>>,
}

impl RecordHeader<'_> {
    /// Seconds since `received_at` (the delivery latency when called at a
    /// sink's 2xx); `None` if it is missing or unreadable.
    pub fn age_seconds(&self) -> Option<f64> {
        let at: jiff::Timestamp = self.received_at.as_deref()?.parse().ok()?;
        let age = jiff::Timestamp::now().duration_since(at);
        Some(age.as_secs_f64().max(0.0))
    }

    /// `webhook-id`: the natural key for revision 1, `id~N` for revision N.
    pub fn webhook_id(&self) -> String {
        if self.revision <= 1 {
            self.id.to_string()
        } else {
            format!("{}~{}", self.id, self.revision)
        }
    }
}

/// Now as RFC 3339 with milliseconds in UTC, the `received_at` format.
pub fn now_rfc3339() -> String {
    crate::clock::rfc3339_ms(jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_the_contract_shape_with_payload_verbatim() {
        let record = NewRecord {
            id: "recording_completed:r1".into(),
            event: "contact_center.recording_completed".into(),
            event_ts: 1732440000000,
            source: Source::Websocket,
            received_at: "2026-11-24T10:00:00.123Z".into(),
            payload: RawValue::from_string(r#"{"b": 1, "a":  "x"}"#.into()).unwrap(),
            version: None,
        };
        let json = String::from_utf8(record.to_json(2)).unwrap();
        assert_eq!(
            json,
            r#"{"id":"recording_completed:r1","revision":2,"event":"contact_center.recording_completed","event_ts":1732440000000,"source":"websocket","received_at":"2026-11-24T10:00:00.123Z","payload":{"b": 1, "a":  "x"}}"#
        );
        let header: RecordHeader = serde_json::from_str(&json).unwrap();
        assert_eq!(header.webhook_id(), "recording_completed:r1~2");
    }

    #[test]
    fn received_at_has_milliseconds_and_z() {
        let now = now_rfc3339();
        assert_eq!(now.len(), "2026-11-24T10:00:00.123Z".len(), "{now}");
        assert!(now.ends_with('Z'));
    }
}
