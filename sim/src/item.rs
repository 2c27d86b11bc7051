//! What the simulated account's REST API lists, built from its event history:
//! recordings (docs/zoom.md §4.2), engagements with their notes and
//! dispositions (§4.4–4.5) and inbox messages (§4.6).
//!
//! Owns which events make up an item and the mapping from event fields (§3) to
//! REST fields, one pure function per item type ([`recording`], [`engagement`],
//! [`inbox_message`]) plus one that groups a whole history by item. Whether an
//! event reached a socket does not matter here: everything emitted is the
//! account's history, so what no client received is listed all the same. It
//! does not filter, sort or page (`rest` and `page` do), and it never builds a
//! transcript URL: those are whatever the transcript event said.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

const RECORDING_COMPLETED: &str = "contact_center.recording_completed";
const RECORDING_TRANSCRIPT_COMPLETED: &str = "contact_center.recording_transcript_completed";
const ENGAGEMENT_STARTED: &str = "contact_center.engagement_started";
const ENGAGEMENT_ENDED: &str = "contact_center.engagement_ended";
const NOTE_ADDED: &str = "contact_center.engagement_note_added";
const DISPOSITION_ADDED: &str = "contact_center.engagement_disposition_added";
const MESSAGING_TRANSCRIPT_COMPLETED: &str =
    "contact_center.engagement_messaging_transcript_completed";
const INBOX_MESSAGE_RECEIVED: &str = "contact_center.inbox_message_received";
const VOICEMAIL_TRANSCRIPT_COMPLETED: &str = "contact_center.voicemail_transcript_completed";

/// Every recording behind `history` (event bodies in emission order), in order of
/// first appearance. A recording exists once its `recording_completed` or its
/// transcript event was emitted (a transcript implies the recording); the first
/// body of each kind counts.
pub(super) fn recordings(history: &[&Value], api_base: &str) -> Vec<Value> {
    let mut pairs = Grouped::default();
    for body in history {
        match event_name(body) {
            RECORDING_COMPLETED => pairs.first(body, "recording_id"),
            RECORDING_TRANSCRIPT_COMPLETED => pairs.second(body, "recording_id"),
            _ => {}
        }
    }
    pairs
        .into_items()
        .map(|(completed, transcript)| recording(completed, transcript, api_base))
        .collect()
}

/// Every inbox message behind `history`, in order of first appearance; the same
/// rule as [`recordings`] with `inbox_message_received` and its transcript.
pub(super) fn inbox_messages(history: &[&Value], api_base: &str) -> Vec<Value> {
    let mut pairs = Grouped::default();
    for body in history {
        match event_name(body) {
            INBOX_MESSAGE_RECEIVED => pairs.first(body, "message_id"),
            VOICEMAIL_TRANSCRIPT_COMPLETED => pairs.second(body, "message_id"),
            _ => {}
        }
    }
    pairs
        .into_items()
        .map(|(received, transcript)| inbox_message(received, transcript, api_base))
        .collect()
}

/// Every engagement any event of `history` names, in order of first appearance:
/// its id and, once it has ended, its REST item.
pub(super) fn engagements(history: &[&Value]) -> Vec<(String, Option<Value>)> {
    let mut order: Vec<String> = Vec::new();
    let mut bodies: HashMap<String, Vec<&Value>> = HashMap::new();
    for body in history {
        let id = text(object(body), "engagement_id");
        if id.is_empty() {
            continue;
        }
        bodies
            .entry(id.to_owned())
            .or_insert_with(|| {
                order.push(id.to_owned());
                Vec::new()
            })
            .push(body);
    }
    order
        .into_iter()
        .map(|id| {
            let item = bodies.get(&id).and_then(|bodies| engagement(bodies));
            (id, item)
        })
        .collect()
}

/// One recording from its `recording_completed` body (or, lacking that, its
/// transcript event, which carries the same fields) and its
/// `recording_transcript_completed` body, if one was emitted. `transcript_url`
/// is empty until then.
pub(super) fn recording(first: &Value, transcript: Option<&Value>, api_base: &str) -> Value {
    let fields = object(first);
    let id = text(fields, "recording_id");
    let channel = match text(fields, "channel") {
        "" => "voice",
        channel => channel,
    };
    let start_ms = time_field(fields, "recording_start_time_ms").or_else(|| event_ms(first));
    let end_ms = time_field(fields, "recording_end_time_ms").or_else(|| event_ms(first));
    let duration = fields
        .get("recording_duration")
        .cloned()
        .unwrap_or_else(|| {
            let millis = end_ms.unwrap_or_default() - start_ms.unwrap_or_default();
            json!((millis / 1000).max(0))
        });
    let agent = fields
        .get("users")
        .and_then(|users| users.get(0))
        .and_then(Value::as_object);
    let consumers: Vec<Value> = fields
        .get("consumers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .map(|consumer| {
            json!({
                "consumer_name": text(consumer, "consumer_display_name"),
                "consumer_number": text(consumer, "consumer_number"),
            })
        })
        .collect();
    let first_consumer = |key: &str| {
        consumers
            .first()
            .and_then(|consumer| consumer[key].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    json!({
        "recording_id": id,
        "engagement_id": text(fields, "engagement_id"),
        "cc_queue_id": text(fields, "cc_queue_id"),
        "queue_name": text(fields, "queue_name"),
        "recording_duration": duration,
        "download_url": format!("{api_base}/contact_center/recording/download/{id}?type={channel}"),
        "transcript_url": transcript_url(transcript),
        "playback_url": format!("{api_base}/contact_center/recording/playback/{id}?type={channel}"),
        "recording_start_time": start_ms.map(iso_seconds).unwrap_or_default(),
        "recording_end_time": end_ms.map(iso_seconds).unwrap_or_default(),
        "user_id": agent.map(|agent| text(agent, "user_id")).unwrap_or_default(),
        "display_name": agent.map(|agent| text(agent, "user_display_name")).unwrap_or_default(),
        "recording_type": text(fields, "recording_type"),
        "channel": channel,
        "channel_type": channel,
        "direction": text(fields, "engagement_direction"),
        "owner_id": text(fields, "owner_id"),
        "owner_name": text(fields, "owner_name"),
        "owner_type": text(fields, "owner_type"),
        "flow_id": text(fields, "flow_id"),
        "flow_name": text(fields, "flow_name"),
        "consumer_name": first_consumer("consumer_name"),
        "consumer_number": first_consumer("consumer_number"),
        "consumers": consumers,
    })
}

/// One engagement from every event naming it, in emission order; `None` until an
/// `engagement_ended` was emitted ("engagements appear only after processing
/// completes", docs/zoom.md §4.4). `start_time` is the `engagement_started`
/// time, else the earliest event's; notes keep the latest text per `note_id`
/// (by `last_modified_time`, an exact re-send changing nothing); dispositions
/// are first-wins per `disposition_id`.
pub(super) fn engagement(bodies: &[&Value]) -> Option<Value> {
    let end_ms = bodies
        .iter()
        .find(|body| event_name(body) == ENGAGEMENT_ENDED)
        .and_then(|body| event_ms(body))?;
    let start_ms = bodies
        .iter()
        .find(|body| event_name(body) == ENGAGEMENT_STARTED)
        .and_then(|body| event_ms(body))
        .or_else(|| bodies.iter().filter_map(|body| event_ms(body)).min())
        .unwrap_or(end_ms);

    let mut id = "";
    let mut direction = "";
    let mut channels = Distinct::default();
    let mut consumers = Distinct::default();
    let mut flows = Distinct::default();
    let mut queues = Distinct::default();
    let mut agents = Distinct::default();
    let mut dispositions = Distinct::default();
    let mut notes: Vec<Note> = Vec::new();
    let mut transcript_url = "";
    for body in bodies {
        let fields = object(body);
        id = first_non_empty(id, text(fields, "engagement_id"));
        direction = first_non_empty(direction, text(fields, "engagement_direction"));
        channels.add(fields, ["channel", "channel_source"]);
        consumers.add(
            fields,
            ["consumer_id", "consumer_display_name", "consumer_number"],
        );
        flows.add(fields, ["flow_id", "flow_name"]);
        queues.add(fields, ["cc_queue_id", "queue_name"]);
        if !text(fields, "user_display_name").is_empty() {
            agents.add_as(
                fields,
                [
                    ("user_id", "user_id"),
                    ("user_display_name", "display_name"),
                ],
            );
        }
        for user in fields
            .get("users")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(user) = user.as_object() {
                agents.add_as(
                    user,
                    [
                        ("user_id", "user_id"),
                        ("user_display_name", "display_name"),
                    ],
                );
            }
        }
        match event_name(body) {
            NOTE_ADDED => Note::merge(&mut notes, fields),
            DISPOSITION_ADDED => dispositions.add(fields, ["disposition_id", "disposition_name"]),
            MESSAGING_TRANSCRIPT_COMPLETED => transcript_url = text(fields, "transcript_url"),
            _ => {}
        }
    }
    let notes: Vec<Value> = notes.into_iter().map(Note::into_item).collect();
    Some(json!({
        "engagement_id": id,
        "start_time": iso_seconds(start_ms),
        "end_time": iso_seconds(end_ms),
        "duration": ((end_ms - start_ms) / 1000).max(0),
        "direction": direction,
        "channels": channels.items,
        "consumers": consumers.items,
        "flows": flows.items,
        "queues": queues.items,
        "agents": agents.items,
        "dispositions": dispositions.items,
        "notes": notes,
        "transcript_url": transcript_url,
    }))
}

/// One voicemail from its `inbox_message_received` body (or, lacking that, its
/// transcript event) and its `voicemail_transcript_completed` body, if one was
/// emitted. The received event has no duration or consumer name, so those come
/// from the transcript (0 and empty until then), like `transcript_url`.
pub(super) fn inbox_message(first: &Value, transcript: Option<&Value>, api_base: &str) -> Value {
    let fields = object(first);
    let later = transcript.map(object);
    // A field of the first body, else of the transcript.
    let field = |key: &str| -> String {
        let value = first_non_empty(
            text(fields, key),
            later.map(|t| text(t, key)).unwrap_or_default(),
        );
        value.to_owned()
    };
    let id = field("message_id");
    let duration = fields
        .get("message_duration")
        .or_else(|| later.and_then(|t| t.get("message_duration")))
        .cloned()
        .unwrap_or_else(|| json!(0));
    let status = match field("status").as_str() {
        "" => "normal".to_owned(),
        status => status.to_owned(),
    };
    json!({
        "message_id": id,
        "inbox_id": field("inbox_id"),
        "inbox_name": field("inbox_name"),
        "engagement_id": field("engagement_id"),
        "created_at": event_ms(first).map(iso_seconds).unwrap_or_default(),
        "flow_id": field("flow_id"),
        "flow_name": field("flow_name"),
        "cc_queue_id": field("cc_queue_id"),
        "queue_name": field("queue_name"),
        "message_type": "voicemail",
        "download_url": format!("{api_base}/contact_center/inbox/message/download/{id}?type=voicemail"),
        "playback_url": format!("{api_base}/contact_center/inbox/message/playback/{id}?type=voicemail"),
        "transcript_url": transcript_url(transcript),
        "message_duration": duration,
        "consumer_number": field("consumer_number"),
        "consumer_id": field("consumer_id"),
        "consumer_display_name": field("consumer_display_name"),
        "status": status,
    })
}

/// Milliseconds since the epoch of an ISO-8601 instant with `Z` or an offset.
pub(super) fn parse_millis(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(jiff::Timestamp::as_millisecond)
}

/// `2022-02-15T08:12:15Z`, the form of REST times (truncated to the second).
pub(super) fn iso_seconds(millis: i64) -> String {
    jiff::Timestamp::from_millisecond(millis)
        .map(|time| time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// When the event happened: `date_time_ms`, else `event_ts`.
fn event_ms(body: &Value) -> Option<i64> {
    time_field(object(body), "date_time_ms").or_else(|| body.get("event_ts")?.as_i64())
}

fn time_field(fields: &Map<String, Value>, key: &str) -> Option<i64> {
    parse_millis(fields.get(key)?.as_str()?)
}

fn event_name(body: &Value) -> &str {
    body.get("event")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn object(body: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    body.get("payload")
        .and_then(|payload| payload.get("object"))
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn text<'a>(fields: &'a Map<String, Value>, key: &str) -> &'a str {
    fields.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn first_non_empty<'a>(current: &'a str, candidate: &'a str) -> &'a str {
    if current.is_empty() {
        candidate
    } else {
        current
    }
}

fn transcript_url(transcript: Option<&Value>) -> String {
    transcript
        .map(|body| text(object(body), "transcript_url").to_owned())
        .unwrap_or_default()
}

/// Items made of a first event and a later one sharing an id field, in order of
/// first appearance; the first body of each kind counts.
#[derive(Default)]
struct Grouped<'a> {
    order: Vec<String>,
    pairs: HashMap<String, (Option<&'a Value>, Option<&'a Value>)>,
}

impl<'a> Grouped<'a> {
    fn entry(
        &mut self,
        body: &Value,
        id_field: &str,
    ) -> Option<&mut (Option<&'a Value>, Option<&'a Value>)> {
        let id = text(object(body), id_field);
        if id.is_empty() {
            return None;
        }
        if !self.pairs.contains_key(id) {
            self.order.push(id.to_owned());
        }
        Some(self.pairs.entry(id.to_owned()).or_default())
    }

    fn first(&mut self, body: &'a Value, id_field: &str) {
        if let Some(pair) = self.entry(body, id_field) {
            pair.0.get_or_insert(body);
        }
    }

    fn second(&mut self, body: &'a Value, id_field: &str) {
        if let Some(pair) = self.entry(body, id_field) {
            pair.1.get_or_insert(body);
        }
    }

    /// `(first or else second, second)` per item.
    fn into_items(self) -> impl Iterator<Item = (&'a Value, Option<&'a Value>)> {
        let Grouped { order, mut pairs } = self;
        order.into_iter().filter_map(move |id| {
            let (first, second) = pairs.remove(&id)?;
            Some((first.or(second)?, second))
        })
    }
}

/// A list of sub-objects (`channels[]`, `agents[]`, ...) without repeats, keyed
/// on their first field; the first occurrence wins, later ones only fill in
/// fields it lacked.
#[derive(Default)]
struct Distinct {
    items: Vec<Value>,
}

impl Distinct {
    fn add<const N: usize>(&mut self, fields: &Map<String, Value>, keys: [&str; N]) {
        self.add_as(fields, keys.map(|key| (key, key)));
    }

    /// Like `add`, renaming each `(event field, REST field)`.
    fn add_as<const N: usize>(&mut self, fields: &Map<String, Value>, keys: [(&str, &str); N]) {
        let Some(((first_key, first_name), _)) = keys.split_first() else {
            return;
        };
        let key = text(fields, first_key);
        if key.is_empty() {
            return;
        }
        let position = self
            .items
            .iter()
            .position(|item| item[*first_name].as_str() == Some(key));
        let item = match position {
            Some(position) => &mut self.items[position],
            None => {
                self.items.push(Value::Object(Map::new()));
                let last = self.items.len() - 1;
                &mut self.items[last]
            }
        };
        for (from, to) in keys {
            let value = text(fields, from);
            let known = item[to].as_str().is_some_and(|known| !known.is_empty());
            if !known {
                item[to] = Value::String(value.to_owned());
            }
        }
    }
}

/// The current state of one note.
struct Note {
    note_id: String,
    user_id: String,
    note: String,
    last_modified_time: String,
    modified_ms: Option<i64>,
}

impl Note {
    /// A later `last_modified_time` (or an equal one, emitted later) replaces the
    /// text; an older one, arriving out of order, does not.
    fn merge(notes: &mut Vec<Note>, fields: &Map<String, Value>) {
        let note_id = text(fields, "note_id");
        if note_id.is_empty() {
            return;
        }
        let next = Note {
            note_id: note_id.to_owned(),
            user_id: text(fields, "user_id").to_owned(),
            note: text(fields, "note").to_owned(),
            last_modified_time: text(fields, "last_modified_time").to_owned(),
            modified_ms: time_field(fields, "last_modified_time"),
        };
        match notes.iter_mut().find(|note| note.note_id == note_id) {
            None => notes.push(next),
            Some(note) => {
                let older = matches!(
                    (next.modified_ms, note.modified_ms),
                    (Some(next), Some(current)) if next < current
                );
                if !older {
                    *note = next;
                }
            }
        }
    }

    fn into_item(self) -> Value {
        json!({
            "user_id": self.user_id,
            "note_id": self.note_id,
            "note": self.note,
            "last_modified_time": self.last_modified_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: &str = "http://sim/v2";

    fn event(name: &str, event_ts: i64, object: Value) -> Value {
        json!({
            "event": format!("contact_center.{name}"),
            "event_ts": event_ts,
            "payload": {"account_id": "acct", "object": object},
        })
    }

    fn recording_completed() -> Value {
        event(
            "recording_completed",
            1_700_000_400_000,
            json!({
                "recording_id": "rec1",
                "engagement_id": "eng1",
                "engagement_direction": "inbound",
                "channel": "voice",
                "recording_start_time_ms": "2023-11-14T22:13:20.250Z",
                "recording_end_time_ms": "2023-11-14T22:15:30.999Z",
                "recording_type": "automatic",
                "recording_duration": 130,
                "flow_id": "flow1",
                "flow_name": "Main IVR",
                "cc_queue_id": "q1",
                "queue_name": "Billing",
                "owner_id": "u1",
                "owner_name": "Amara Okafor",
                "owner_type": "user",
                "users": [{"user_id": "u1", "user_display_name": "Amara Okafor"}],
                "consumers": [{"consumer_id": "c1", "consumer_number": "+14155550100", "consumer_display_name": "Emily Carter"}],
            }),
        )
    }

    fn with_field(mut body: Value, key: &str, value: Value) -> Value {
        body["payload"]["object"][key] = value;
        body
    }

    fn check(actual: Value, expected: Value) {
        assert_eq!(
            actual, expected,
            "\nactual:   {actual:#}\nexpected: {expected:#}"
        );
    }

    #[test]
    fn recording_uses_rest_names_and_waits_for_its_transcript() {
        let completed = recording_completed();
        let expected = json!({
            "recording_id": "rec1",
            "engagement_id": "eng1",
            "cc_queue_id": "q1",
            "queue_name": "Billing",
            "recording_duration": 130,
            "download_url": "http://sim/v2/contact_center/recording/download/rec1?type=voice",
            "transcript_url": "",
            "playback_url": "http://sim/v2/contact_center/recording/playback/rec1?type=voice",
            "recording_start_time": "2023-11-14T22:13:20Z",
            "recording_end_time": "2023-11-14T22:15:30Z",
            "user_id": "u1",
            "display_name": "Amara Okafor",
            "recording_type": "automatic",
            "channel": "voice",
            "channel_type": "voice",
            "direction": "inbound",
            "owner_id": "u1",
            "owner_name": "Amara Okafor",
            "owner_type": "user",
            "flow_id": "flow1",
            "flow_name": "Main IVR",
            "consumer_name": "Emily Carter",
            "consumer_number": "+14155550100",
            "consumers": [{"consumer_name": "Emily Carter", "consumer_number": "+14155550100"}],
        });
        check(recording(&completed, None, API), expected.clone());

        let url =
            "https://api.zoom.us/v2/contact_center/recording/transcripts/download/rec1?type=voice";
        let transcript = with_field(completed.clone(), "transcript_url", json!(url));
        let transcript = with_field(transcript, "recording_id", json!("rec1"));
        let mut with_transcript = expected;
        with_transcript["transcript_url"] = json!(url);
        check(
            recording(&completed, Some(&transcript), API),
            with_transcript,
        );
    }

    #[test]
    fn recording_falls_back_to_event_time_and_computed_duration() {
        let bare = event(
            "recording_completed",
            1_700_000_000_000,
            json!({"recording_id": "r", "channel": "video"}),
        );
        let item = recording(&bare, None, API);
        assert_eq!(item["recording_start_time"], "2023-11-14T22:13:20Z");
        assert_eq!(item["recording_end_time"], "2023-11-14T22:13:20Z");
        assert_eq!(item["recording_duration"], 0);
        assert_eq!(item["user_id"], "");
        assert_eq!(item["consumers"], json!([]));
        assert_eq!(
            item["download_url"],
            "http://sim/v2/contact_center/recording/download/r?type=video"
        );
    }

    #[test]
    fn recordings_group_by_id_and_a_transcript_alone_implies_the_recording() {
        let a = recording_completed();
        let a_again = with_field(a.clone(), "queue_name", json!("changed"));
        let b_transcript = event(
            "recording_transcript_completed",
            1_700_000_000_000,
            json!({"recording_id": "rec2", "transcript_url": "https://t/rec2"}),
        );
        let a_transcript = event(
            "recording_transcript_completed",
            1_700_000_000_000,
            json!({"recording_id": "rec1", "transcript_url": "https://t/rec1"}),
        );
        let unrelated = event("engagement_ended", 1, json!({"engagement_id": "eng1"}));
        let history = [&a, &unrelated, &b_transcript, &a_again, &a_transcript];
        let items = recordings(&history, API);
        let summary: Vec<(&str, &str, &str)> = items
            .iter()
            .map(|item| {
                (
                    item["recording_id"].as_str().unwrap_or_default(),
                    item["queue_name"].as_str().unwrap_or_default(),
                    item["transcript_url"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("rec1", "Billing", "https://t/rec1"),
                ("rec2", "", "https://t/rec2")
            ]
        );
    }

    fn engagement_event(name: &str, at: &str, extra: Value) -> Value {
        let mut object = json!({
            "engagement_id": "eng1",
            "engagement_direction": "inbound",
            "channel": "voice",
            "channel_source": "in_app_voice",
            "flow_id": "flow1",
            "flow_name": "Main IVR",
            "date_time_ms": at,
        });
        if let (Some(object), Value::Object(extra)) = (object.as_object_mut(), extra) {
            object.extend(extra);
        }
        event(name, 0, object)
    }

    fn routing(extra: Value) -> Value {
        let mut fields = json!({
            "cc_queue_id": "q1",
            "queue_name": "Billing",
            "user_id": "u1",
            "user_display_name": "Amara Okafor",
            "consumer_id": "c1",
            "consumer_display_name": "Emily Carter",
            "consumer_number": "+14155550100",
        });
        if let (Some(fields), Value::Object(extra)) = (fields.as_object_mut(), extra) {
            fields.extend(extra);
        }
        fields
    }

    fn note(id: &str, text: &str, modified: &str) -> Value {
        engagement_event(
            "engagement_note_added",
            "2023-11-14T22:20:00.000Z",
            routing(json!({"note_id": id, "note": text, "last_modified_time": modified})),
        )
    }

    #[test]
    fn engagement_is_absent_until_it_ends_then_gathers_everything_about_it() {
        let started = engagement_event("engagement_started", "2023-11-14T22:13:20.500Z", json!({}));
        let answered = engagement_event(
            "engagement_user_answered",
            "2023-11-14T22:13:30.000Z",
            routing(json!({})),
        );
        let first_note = note("n1", "first text", "2023-11-14T22:20:00Z");
        let resent = first_note.clone();
        let edited = note("n1", "edited text", "2023-11-14T22:25:00Z");
        let stale = note("n1", "stale text", "2023-11-14T22:21:00Z");
        let second_note = note("n2", "other", "2023-11-14T22:22:00Z");
        let disposition = |id: &str, name: &str| {
            engagement_event(
                "engagement_disposition_added",
                "2023-11-14T22:23:00.000Z",
                routing(json!({"disposition_id": id, "disposition_name": name})),
            )
        };
        let resolved = disposition("d1", "Resolved");
        let resolved_again = disposition("d1", "Renamed");
        let sale = disposition("d2", "Sale");
        let ended = engagement_event("engagement_ended", "2023-11-14T22:18:20.999Z", json!({}));
        let transcript = engagement_event(
            "engagement_messaging_transcript_completed",
            "2023-11-14T22:19:00.000Z",
            json!({"transcript_url": "https://t/eng1"}),
        );

        let open = [&started, &answered, &first_note];
        assert_eq!(engagement(&open), None);

        let bodies = [
            &started,
            &answered,
            &first_note,
            &resent,
            &edited,
            &stale,
            &second_note,
            &resolved,
            &resolved_again,
            &sale,
            &ended,
            &transcript,
        ];
        let expected = json!({
            "engagement_id": "eng1",
            "start_time": "2023-11-14T22:13:20Z",
            "end_time": "2023-11-14T22:18:20Z",
            "duration": 300,
            "direction": "inbound",
            "channels": [{"channel": "voice", "channel_source": "in_app_voice"}],
            "consumers": [{"consumer_id": "c1", "consumer_display_name": "Emily Carter", "consumer_number": "+14155550100"}],
            "flows": [{"flow_id": "flow1", "flow_name": "Main IVR"}],
            "queues": [{"cc_queue_id": "q1", "queue_name": "Billing"}],
            "agents": [{"user_id": "u1", "display_name": "Amara Okafor"}],
            "dispositions": [
                {"disposition_id": "d1", "disposition_name": "Resolved"},
                {"disposition_id": "d2", "disposition_name": "Sale"},
            ],
            "notes": [
                {"user_id": "u1", "note_id": "n1", "note": "edited text", "last_modified_time": "2023-11-14T22:25:00Z"},
                {"user_id": "u1", "note_id": "n2", "note": "other", "last_modified_time": "2023-11-14T22:22:00Z"},
            ],
            "transcript_url": "https://t/eng1",
        });
        check(engagement(&bodies).expect("ended"), expected);
    }

    #[test]
    fn engagement_without_a_start_event_starts_at_its_earliest_event() {
        let note = note("n1", "x", "2023-11-14T22:20:00Z");
        let ended = engagement_event("engagement_ended", "2023-11-14T22:30:00.000Z", json!({}));
        let item = engagement(&[&ended, &note]).expect("ended");
        assert_eq!(item["start_time"], "2023-11-14T22:20:00Z");
        assert_eq!(item["duration"], 600);
        assert_eq!(item["transcript_url"], "");
    }

    #[test]
    fn engagements_collect_every_event_that_names_one() {
        let ended = engagement_event("engagement_ended", "2023-11-14T22:30:00.000Z", json!({}));
        let recording = recording_completed();
        let other = event(
            "engagement_started",
            0,
            json!({"engagement_id": "eng2", "date_time_ms": "2023-11-14T22:31:00.000Z"}),
        );
        let status = event(
            "user_status_changed",
            0,
            json!({"user_id": "u9", "user_display_name": "X"}),
        );
        let listed = engagements(&[&recording, &status, &other, &ended]);
        let ids: Vec<(&str, bool)> = listed
            .iter()
            .map(|(id, item)| (id.as_str(), item.is_some()))
            .collect();
        assert_eq!(ids, [("eng1", true), ("eng2", false)]);
        // The recording's `users[]` makes its agent one of the engagement's.
        let item = listed[0].1.as_ref().expect("ended");
        assert_eq!(
            item["agents"],
            json!([{"user_id": "u1", "display_name": "Amara Okafor"}])
        );
        assert_eq!(item["start_time"], "2023-11-14T22:20:00Z");
    }

    #[test]
    fn inbox_message_takes_duration_and_transcript_from_the_transcript_event() {
        let received = event(
            "inbox_message_received",
            0,
            json!({
                "engagement_id": "eng1",
                "engagement_direction": "inbound",
                "channel": "voice",
                "cc_queue_id": "q1",
                "queue_name": "Billing",
                "flow_id": "flow1",
                "flow_name": "Main IVR",
                "flow_number": "+18005550000",
                "consumer_number": "+14155550100",
                "inbox_id": "inbox1",
                "inbox_name": "Support Voicemail",
                "message_id": "m1",
                "date_time_ms": "2023-11-14T22:13:20.700Z",
            }),
        );
        let expected = json!({
            "message_id": "m1",
            "inbox_id": "inbox1",
            "inbox_name": "Support Voicemail",
            "engagement_id": "eng1",
            "created_at": "2023-11-14T22:13:20Z",
            "flow_id": "flow1",
            "flow_name": "Main IVR",
            "cc_queue_id": "q1",
            "queue_name": "Billing",
            "message_type": "voicemail",
            "download_url": "http://sim/v2/contact_center/inbox/message/download/m1?type=voicemail",
            "playback_url": "http://sim/v2/contact_center/inbox/message/playback/m1?type=voicemail",
            "transcript_url": "",
            "message_duration": 0,
            "consumer_number": "+14155550100",
            "consumer_id": "",
            "consumer_display_name": "",
            "status": "normal",
        });
        check(inbox_message(&received, None, API), expected.clone());

        let transcript = event(
            "voicemail_transcript_completed",
            0,
            json!({
                "message_id": "m1",
                "inbox_id": "inbox1",
                "transcript_url": "https://t/m1",
                "message_duration": 42,
                "consumer_id": "c1",
                "consumer_display_name": "Emily Carter",
                "status": "normal",
                "date_time_ms": "2023-11-14T22:16:00.000Z",
            }),
        );
        let mut complete = expected;
        complete["transcript_url"] = json!("https://t/m1");
        complete["message_duration"] = json!(42);
        complete["consumer_id"] = json!("c1");
        complete["consumer_display_name"] = json!("Emily Carter");
        check(inbox_message(&received, Some(&transcript), API), complete);

        let listed = inbox_messages(&[&transcript, &received], API);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["created_at"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn times_parse_with_z_or_offset_and_print_as_utc_seconds() {
        assert_eq!(
            parse_millis("2023-11-14T22:13:20.250Z"),
            Some(1_700_000_000_250)
        );
        assert_eq!(
            parse_millis("2023-11-14T14:13:20-08:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_millis("2023-11-14"), None);
        assert_eq!(parse_millis(""), None);
        assert_eq!(iso_seconds(1_700_000_000_999), "2023-11-14T22:13:20Z");
    }
}
