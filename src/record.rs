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
    /// The record's Zoom-neutral view, computed by whoever read Zoom's shape
    /// (`zoom::view`); stored with the record.
    pub view: View,
}

/// What the rest of the daemon knows about a record without reading Zoom's
/// JSON: computed once when the record is built (`zoom::view::of`, the only
/// place that knows the payload's field names), stored beside the record in
/// the journal and handed to the media stage, the lanes and the sinks. It is
/// also what a CRM sink's interaction aggregate folds (DESIGN.md §3.5).
///
/// Every field is optional: an event that does not carry it leaves it out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// The event name without `contact_center.` (`engagement_note_added`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engagement_id: Option<String>,
    /// `inbound` or `outbound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// `voice`, `video`, `messaging`, `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// `web_chat`, `sms`, `whatsapp`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_source: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<Party>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<Consumer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<Party>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<Party>,
    /// Start and end of the engagement (or of the item, e.g. a recording; the
    /// lifecycle events `engagement_started` / `_ended` give their own time),
    /// as Zoom wrote them (RFC 3339) or milliseconds rendered as RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note_id: Option<String>,
    /// The note's text, verbatim (not trimmed: an edit is compared exactly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<Party>,
    /// The note's or disposition's `last_modified_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// The files this record asks the media stage for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<MediaRef>,
}

/// Someone or something with an id and a display name (agent, queue, flow,
/// disposition).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Party {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The customer side of an engagement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The kinds of file the media stage fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Recording,
    RecordingTranscript,
    MessagingTranscript,
    Voicemail,
    VoicemailTranscript,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Recording => "recording",
            MediaKind::RecordingTranscript => "recording_transcript",
            MediaKind::MessagingTranscript => "messaging_transcript",
            MediaKind::Voicemail => "voicemail",
            MediaKind::VoicemailTranscript => "voicemail_transcript",
        }
    }
}

/// One file a record asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef {
    pub kind: MediaKind,
    /// The item's own id (recording, engagement or message id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The download URL when the record carries one; without it the media
    /// stage looks a recording or a voicemail up by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Why the file cannot be fetched (a field the record lacks); it goes to
    /// `media_errors` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unusable: Option<String>,
}

/// One entry of a forwarded record's `media` (DESIGN.md §3.3): a file the
/// media stage stored (`media::store` makes them, the media stage appends them
/// to the record, and the rest of the daemon reads them back).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MediaEntry {
    /// `recording`, `recording_transcript`, … ([`MediaKind::as_str`]).
    pub kind: String,
    /// The object's absolute URL in the store.
    pub location: String,
    /// A signed link, where the store can sign; a credential while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default)]
    pub content_type: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub sha256: String,
}

impl std::fmt::Debug for MediaEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaEntry")
            .field("kind", &self.kind)
            .field("location", &self.location)
            .field("url", &self.url.as_ref().map(|_| "[signed link redacted]"))
            .field("content_type", &self.content_type)
            .field("size", &self.size)
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// The `media` entries of a forwarded record's JSON (none when it has no
/// `media` key or the bytes are not a record).
pub fn media_entries(record: &[u8]) -> Vec<MediaEntry> {
    #[derive(Deserialize)]
    struct WithMedia {
        #[serde(default)]
        media: Vec<MediaEntry>,
    }
    serde_json::from_slice::<WithMedia>(record)
        .map(|r| r.media)
        .unwrap_or_default()
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
    /// The record's `event_ts` (ms since the epoch).
    #[serde(default)]
    pub event_ts: i64,
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
            view: View::default(),
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
