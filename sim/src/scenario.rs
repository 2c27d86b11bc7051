//! Scripted, seeded contact-center activity to feed through the simulator.
//!
//! Owns the shape of plausible ZCC traffic: engagements (voice, video, messaging)
//! with their lifecycle events, recordings and their transcripts, messaging
//! transcripts, notes (including edits and exact re-sends), dispositions,
//! voicemails and their transcripts, and a sprinkling of event types the daemon
//! does not model. Bodies follow docs/zoom.md §3 field for field. The script is
//! a pure function of its inputs (one `StdRng` seeded from `seed`); only
//! [`play`] touches the clock or the simulator.
//!
//! Timing inside an engagement is realistic (rings of seconds, calls of minutes,
//! transcripts minutes after the recording), so a script spans minutes to hours;
//! [`play`]'s `speedup` compresses it. `event_ts` and every `*_time_ms` are
//! `start + offset`, i.e. the scripted moment, not the moment of emission.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use super::{SimConfig, Simulator};

/// Zoom production REST base, used in transcript URLs unless told otherwise.
pub const ZOOM_API_BASE: &str = "https://api.zoom.us/v2";

/// One event of a script: emit `body` at `start + offset`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptedEvent {
    pub offset: Duration,
    pub body: Value,
}

/// Account-level inputs that are not random.
#[derive(Clone, Debug)]
pub struct ScenarioOptions {
    /// `payload.account_id` of every event.
    pub account_id: String,
    /// Base of every `transcript_url`, without a trailing slash, e.g.
    /// `https://api.zoom.us/v2` or a simulator's `http://127.0.0.1:PORT/v2`.
    pub api_base: String,
}

impl Default for ScenarioOptions {
    /// The demo account id of [`SimConfig::default`] and Zoom's production URLs.
    fn default() -> Self {
        ScenarioOptions {
            account_id: SimConfig::default().account_id,
            api_base: ZOOM_API_BASE.to_owned(),
        }
    }
}

impl ScenarioOptions {
    /// The simulator's account id, and transcript URLs on the simulator itself
    /// (`http://127.0.0.1:PORT/v2/contact_center/...`). Those URLs only resolve
    /// once the simulator serves the matching REST routes.
    pub fn for_simulator(sim: &Simulator) -> Self {
        let api_base = sim.api_base_url().as_str().trim_end_matches('/').to_owned();
        ScenarioOptions {
            account_id: sim.config().account_id.clone(),
            api_base,
        }
    }
}

/// [`generate_with`] with [`ScenarioOptions::default`]: account `sim-account`,
/// transcript URLs in Zoom's production form
/// (`https://api.zoom.us/v2/contact_center/recording/transcripts/download/<id>?type=voice`).
pub fn generate(
    seed: u64,
    n_engagements: usize,
    start: SystemTime,
    spacing: Duration,
) -> Vec<ScriptedEvent> {
    generate_with(
        seed,
        n_engagements,
        start,
        spacing,
        &ScenarioOptions::default(),
    )
}

/// `n_engagements` engagements starting about `spacing` apart (each start is
/// jittered by up to half a spacing), their events interleaved and sorted by
/// offset. The same inputs always give the same script.
pub fn generate_with(
    seed: u64,
    n_engagements: usize,
    start: SystemTime,
    spacing: Duration,
    options: &ScenarioOptions,
) -> Vec<ScriptedEvent> {
    let mut rng = StdRng::seed_from_u64(seed);
    let directory = Directory::new(&mut rng);
    let mut script = Script {
        start,
        account_id: &options.account_id,
        api_base: options.api_base.trim_end_matches('/'),
        events: Vec::new(),
    };
    let mut slot = Duration::ZERO;
    for _ in 0..n_engagements {
        let jitter = spacing.mul_f64(rng.random_range(0.0..0.5));
        script.engagement(&mut rng, &directory, slot + jitter);
        slot = slot.saturating_add(spacing);
    }
    // Stable: events at the same offset keep their causal order.
    script.events.sort_by_key(|event| event.offset);
    script.events
}

/// Emits `events` through `sim`, each at `offset / speedup` after the call
/// (tokio time, so a paused clock drives it), calling `on_emit(index, event)`
/// right after each emit. `speedup` must be positive and finite; otherwise
/// events go out back to back. Dropping the future stops the playback between
/// two events.
pub async fn play(
    sim: &Simulator,
    events: Vec<ScriptedEvent>,
    speedup: f64,
    mut on_emit: impl FnMut(usize, &ScriptedEvent),
) {
    let started = tokio::time::Instant::now();
    for (index, event) in events.iter().enumerate() {
        if let Some(due) =
            scaled(event.offset, speedup).and_then(|delay| started.checked_add(delay))
        {
            tokio::time::sleep_until(due).await;
        }
        sim.emit(event.body.clone());
        on_emit(index, event);
    }
}

fn scaled(offset: Duration, speedup: f64) -> Option<Duration> {
    if !(speedup.is_finite() && speedup > 0.0) {
        return None;
    }
    Duration::try_from_secs_f64(offset.as_secs_f64() / speedup).ok()
}

// ---- the account's fixed cast -------------------------------------------------

const AGENT_NAMES: [&str; 8] = [
    "Amara Okafor",
    "Jonas Weber",
    "Priya Raman",
    "Lucas Moreau",
    "Mei Tanaka",
    "Diego Alvarez",
    "Sofia Rossi",
    "Noah Fischer",
];
const CONSUMER_NAMES: [&str; 10] = [
    "Emily Carter",
    "Hiroshi Sato",
    "Fatima Zahra",
    "Liam O'Brien",
    "Ana Souza",
    "Oliver Smith",
    "Chen Wei",
    "Isabella Garcia",
    "Mohammed Ali",
    "Hannah Kowalski",
];
const QUEUE_NAMES: [&str; 4] = ["Billing", "Technical Support", "Sales", "Claims"];
const FLOW_NAMES: [&str; 3] = ["Main IVR", "After-hours Flow", "Digital Front Door"];
const INBOX_NAMES: [&str; 2] = ["Support Voicemail", "Billing Voicemail"];
const DISPOSITIONS: [(&str, &str); 6] = [
    ("Resolved", "Issue resolved on first contact"),
    ("Follow-up required", "Agent will call the customer back"),
    ("Escalated", "Escalated to a supervisor"),
    ("Sale", "Customer purchased a product"),
    ("Wrong number", "Caller reached the wrong department"),
    ("Refund issued", "Refund processed for the customer"),
];
const NOTES: [&str; 8] = [
    "Customer asked about the last invoice; explained the pro-rated charge.",
    "Reset the account password and confirmed login works.",
    "Caller wants a callback tomorrow morning.",
    "Shipping address updated; new label sent.",
    "Customer reports intermittent dropouts since Monday.",
    "Offered the annual plan discount, customer will think about it.",
    "Verified identity with date of birth and postcode.",
    "Claim number noted in the CRM, documents requested by email.",
];
const NOTE_EDITS: [&str; 4] = [
    " Update: customer confirmed by email.",
    " Correction: ticket number added.",
    " Edit: supervisor reviewed.",
    " Update: issue reproduced, ticket opened.",
];
const MESSAGING_SOURCES: [&str; 6] = [
    "web_chat",
    "in_app_chat",
    "sms",
    "whatsapp",
    "facebook_messenger",
    "instagram",
];

#[derive(Clone)]
struct Agent {
    user_id: String,
    name: &'static str,
}

#[derive(Clone)]
struct Queue {
    id: String,
    name: &'static str,
}

#[derive(Clone)]
struct Flow {
    id: String,
    name: &'static str,
    number: String,
}

#[derive(Clone)]
struct Inbox {
    id: String,
    name: &'static str,
}

struct Directory {
    agents: Vec<Agent>,
    queues: Vec<Queue>,
    flows: Vec<Flow>,
    inboxes: Vec<Inbox>,
    /// (disposition_id, name, description)
    dispositions: Vec<(String, &'static str, &'static str)>,
}

impl Directory {
    fn new(rng: &mut StdRng) -> Directory {
        Directory {
            agents: AGENT_NAMES
                .iter()
                .map(|name| Agent {
                    user_id: zoom_id(rng),
                    name,
                })
                .collect(),
            queues: QUEUE_NAMES
                .iter()
                .map(|name| Queue {
                    id: zoom_id(rng),
                    name,
                })
                .collect(),
            flows: FLOW_NAMES
                .iter()
                .map(|name| Flow {
                    id: zoom_id(rng),
                    name,
                    number: format!("+1800555{:04}", rng.random_range(0..10_000)),
                })
                .collect(),
            inboxes: INBOX_NAMES
                .iter()
                .map(|name| Inbox {
                    id: zoom_id(rng),
                    name,
                })
                .collect(),
            dispositions: DISPOSITIONS
                .iter()
                .map(|(name, description)| (zoom_id(rng), *name, *description))
                .collect(),
        }
    }
}

/// Zoom-style id: 16 random bytes as 22 URL-safe base64 characters.
fn zoom_id(rng: &mut StdRng) -> String {
    let bytes: [u8; 16] = rng.random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A uuid-shaped id (Zoom uses these for tasks).
fn uuid_like(rng: &mut StdRng) -> String {
    let hex = hex::encode(rng.random::<[u8; 16]>());
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A uniformly chosen element. Only called on the non-empty tables above.
fn pick<T: Clone>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())].clone()
}

/// A duration uniformly in `[low_secs, high_secs)`, millisecond resolution.
fn seconds(rng: &mut StdRng, low_secs: u64, high_secs: u64) -> Duration {
    Duration::from_millis(rng.random_range(low_secs * 1000..high_secs * 1000))
}

// ---- one engagement ----------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Channel {
    Voice,
    Video,
    Messaging,
}

impl Channel {
    fn name(self) -> &'static str {
        match self {
            Channel::Voice => "voice",
            Channel::Video => "video",
            Channel::Messaging => "messaging",
        }
    }
}

enum Outcome {
    Answered,
    Voicemail,
    /// The consumer hung up before anyone answered.
    Abandoned,
}

struct Engagement {
    id: String,
    direction: &'static str,
    channel: Channel,
    channel_source: &'static str,
    flow: Flow,
    queue: Queue,
    agent: Agent,
    consumer_id: String,
    consumer_name: &'static str,
    consumer_number: String,
}

impl Engagement {
    /// Fields every engagement event carries.
    fn base(&self) -> Map<String, Value> {
        object(json!({
            "engagement_id": self.id,
            "engagement_direction": self.direction,
            "channel": self.channel.name(),
            "channel_source": self.channel_source,
            "flow_id": self.flow.id,
            "flow_name": self.flow.name,
        }))
    }

    /// The "engagement + flow + queue + agent + consumer" field set (§3.7).
    fn routing(&self) -> Map<String, Value> {
        let mut fields = self.base();
        fields.extend(object(json!({
            "cc_queue_id": self.queue.id,
            "queue_name": self.queue.name,
            "flow_number": self.flow.number,
            "user_id": self.agent.user_id,
            "user_display_name": self.agent.name,
            "consumer_id": self.consumer_id,
            "consumer_display_name": self.consumer_name,
            "consumer_number": self.consumer_number,
        })));
        fields
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn with(mut fields: Map<String, Value>, extra: Value) -> Value {
    fields.extend(object(extra));
    Value::Object(fields)
}

struct Script<'a> {
    start: SystemTime,
    account_id: &'a str,
    api_base: &'a str,
    events: Vec<ScriptedEvent>,
}

impl Script<'_> {
    fn at(&self, offset: Duration) -> SystemTime {
        self.start + offset
    }

    fn push(&mut self, offset: Duration, event: &str, object: Value) {
        let body = json!({
            "event": format!("contact_center.{event}"),
            "event_ts": epoch_millis(self.at(offset)),
            "payload": { "account_id": self.account_id, "object": object },
        });
        self.events.push(ScriptedEvent { offset, body });
    }

    fn engagement(&mut self, rng: &mut StdRng, directory: &Directory, t0: Duration) {
        let channel = match rng.random_range(0..100) {
            0..70 => Channel::Voice,
            70..85 => Channel::Video,
            _ => Channel::Messaging,
        };
        let inbound = match channel {
            Channel::Voice => rng.random_bool(0.8),
            Channel::Video => true,
            Channel::Messaging => rng.random_bool(0.9),
        };
        let channel_source = match channel {
            Channel::Voice => pick(rng, &["in_app_voice", "web_voice", "voice"]),
            Channel::Video => pick(rng, &["in_app_video", "web_video"]),
            Channel::Messaging => pick(rng, &MESSAGING_SOURCES),
        };
        let engagement = Engagement {
            id: zoom_id(rng),
            direction: if inbound { "inbound" } else { "outbound" },
            channel,
            channel_source,
            flow: pick(rng, &directory.flows),
            queue: pick(rng, &directory.queues),
            agent: pick(rng, &directory.agents),
            consumer_id: zoom_id(rng),
            consumer_name: pick(rng, &CONSUMER_NAMES),
            consumer_number: format!("+1415555{:04}", rng.random_range(0..10_000)),
        };
        let outcome = if channel == Channel::Voice && inbound && rng.random_bool(0.2) {
            Outcome::Voicemail
        } else if rng.random_bool(0.05) {
            Outcome::Abandoned
        } else {
            Outcome::Answered
        };

        let mut started = engagement.base();
        if rng.random_bool(0.1) {
            started.insert("transfer_from".into(), "zoom_phone".into());
            started.insert("transfer_from_id".into(), zoom_id(rng).into());
        }
        started.insert("date_time_ms".into(), iso_millis(self.at(t0)).into());
        self.push(t0, "engagement_started", Value::Object(started));

        if rng.random_bool(0.3) {
            let at = t0 + seconds(rng, 0, 2);
            let task = json!({
                "task_id": uuid_like(rng),
                "engagement_id": engagement.id,
                "channel": channel.name(),
                "flow_id": engagement.flow.id,
                "flow_name": engagement.flow.name,
                "cc_queue_id": engagement.queue.id,
                "queue_name": engagement.queue.name,
                "date_time_ms": iso_millis(self.at(at)),
            });
            self.push(at, "task_created", task);
        }

        match outcome {
            Outcome::Answered => self.answered(rng, directory, &engagement, t0),
            Outcome::Voicemail => self.voicemail(rng, directory, &engagement, t0),
            Outcome::Abandoned => {
                let end = t0 + seconds(rng, 5, 60);
                self.ended(&engagement, end);
            }
        }
    }

    fn ended(&mut self, engagement: &Engagement, at: Duration) {
        let ended = with(
            engagement.base(),
            json!({ "date_time_ms": iso_millis(self.at(at)) }),
        );
        self.push(at, "engagement_ended", ended);
    }

    fn answered(
        &mut self,
        rng: &mut StdRng,
        directory: &Directory,
        engagement: &Engagement,
        t0: Duration,
    ) {
        let messaging = engagement.channel == Channel::Messaging;
        let answered = t0
            + if messaging {
                seconds(rng, 5, 60)
            } else {
                seconds(rng, 2, 25)
            };
        let user_answered = with(
            engagement.routing(),
            json!({ "date_time_ms": iso_millis(self.at(answered)) }),
        );
        self.push(answered, "engagement_user_answered", user_answered);
        if rng.random_bool(0.4) {
            let at = answered + seconds(rng, 0, 1);
            self.status_changed(&engagement.agent, "Ready", "Occupied", at);
        }

        let talk = if messaging {
            seconds(rng, 60, 1200)
        } else {
            seconds(rng, 30, 900)
        };
        let end = answered + talk;
        self.ended(engagement, end);
        if rng.random_bool(0.6) {
            let at = end + seconds(rng, 0, 2);
            let wrap_up = with(
                engagement.routing(),
                json!({ "date_time_ms": iso_millis(self.at(at)) }),
            );
            self.push(at, "engagement_wrap_up_started", wrap_up);
        }

        if messaging {
            let at = end + seconds(rng, 10, 120);
            let transcript = with(
                engagement.base(),
                json!({
                    "transcript_url": format!(
                        "{}/contact_center/engagements/transcripts/download/{}",
                        self.api_base, engagement.id
                    ),
                    "date_time_ms": iso_millis(self.at(at)),
                }),
            );
            self.push(at, "engagement_messaging_transcript_completed", transcript);
        } else {
            // Occasionally the agent stopped and restarted recording: two
            // recordings of one engagement, each with its own id.
            if rng.random_bool(0.1) {
                let split = talk.mul_f64(rng.random_range(0.3..0.7));
                self.recording(rng, engagement, answered, answered + split);
                self.recording(rng, engagement, answered + split, end);
            } else {
                self.recording(rng, engagement, answered, end);
            }
        }

        let notes_from = answered;
        let notes_until = end + Duration::from_secs(120);
        for _ in 0..rng.random_range(1..=3) {
            let at = notes_from + (notes_until - notes_from).mul_f64(rng.random_range(0.0..1.0));
            self.note(rng, engagement, at);
        }
        let n_dispositions = rng.random_range(1..=2);
        self.dispositions(rng, directory, engagement, end, n_dispositions);
        if rng.random_bool(0.4) {
            let at = end + seconds(rng, 30, 180);
            self.status_changed(&engagement.agent, "Wrap Up", "Ready", at);
        }
    }

    fn recording(
        &mut self,
        rng: &mut StdRng,
        engagement: &Engagement,
        from: Duration,
        until: Duration,
    ) {
        let recording_id = zoom_id(rng);
        let (owner_id, owner_name, owner_type) = if rng.random_bool(0.85) {
            (
                engagement.agent.user_id.as_str(),
                engagement.agent.name,
                "user",
            )
        } else {
            (engagement.queue.id.as_str(), engagement.queue.name, "queue")
        };
        let recording = object(json!({
            "recording_id": recording_id,
            "engagement_id": engagement.id,
            "engagement_direction": engagement.direction,
            "channel": engagement.channel.name(),
            "recording_start_time_ms": iso_millis(self.at(from)),
            "recording_end_time_ms": iso_millis(self.at(until)),
            "recording_type": if rng.random_bool(0.85) { "automatic" } else { "on_demand" },
            "recording_duration": (until - from).as_secs(),
            "flow_id": engagement.flow.id,
            "flow_name": engagement.flow.name,
            "cc_queue_id": engagement.queue.id,
            "queue_name": engagement.queue.name,
            "owner_id": owner_id,
            "owner_name": owner_name,
            "owner_type": owner_type,
            "users": [{
                "user_id": engagement.agent.user_id,
                "user_display_name": engagement.agent.name,
            }],
            "consumers": [{
                "consumer_id": engagement.consumer_id,
                "consumer_number": engagement.consumer_number,
                "consumer_display_name": engagement.consumer_name,
            }],
        }));
        let completed_at = until + seconds(rng, 2, 20);
        self.push(
            completed_at,
            "recording_completed",
            Value::Object(recording.clone()),
        );
        // Transcripts are of the audio, so `type=voice` for video recordings too.
        let transcript_url = format!(
            "{}/contact_center/recording/transcripts/download/{recording_id}?type=voice",
            self.api_base
        );
        let transcript_at = completed_at + seconds(rng, 30, 300);
        self.push(
            transcript_at,
            "recording_transcript_completed",
            with(recording, json!({ "transcript_url": transcript_url })),
        );
    }

    /// One note; sometimes edited later (same `note_id`, new text, later
    /// `last_modified_time`), sometimes re-sent verbatim.
    fn note(&mut self, rng: &mut StdRng, engagement: &Engagement, at: Duration) {
        let text = pick(rng, &NOTES);
        let note = with(
            engagement.routing(),
            json!({
                "note_id": zoom_id(rng),
                "note": text,
                "last_modified_time": iso_seconds(self.at(at)),
                "date_time_ms": iso_millis(self.at(at)),
            }),
        );
        self.push(at, "engagement_note_added", note.clone());
        if rng.random_bool(0.15) {
            let resent = self.events.len().saturating_sub(1);
            if let Some(original) = self.events.get(resent).cloned() {
                self.events.push(ScriptedEvent {
                    offset: at + seconds(rng, 1, 60),
                    body: original.body,
                });
            }
        }
        if rng.random_bool(0.25) {
            // At least 10 s later, so the edit is visible at seconds precision.
            let edited_at = at + seconds(rng, 10, 600);
            let mut edited = object(note);
            edited.insert(
                "note".into(),
                format!("{text}{}", pick(rng, &NOTE_EDITS)).into(),
            );
            edited.insert(
                "last_modified_time".into(),
                iso_seconds(self.at(edited_at)).into(),
            );
            edited.insert("date_time_ms".into(), iso_millis(self.at(edited_at)).into());
            self.push(edited_at, "engagement_note_added", Value::Object(edited));
        }
    }

    fn dispositions(
        &mut self,
        rng: &mut StdRng,
        directory: &Directory,
        engagement: &Engagement,
        end: Duration,
        count: usize,
    ) {
        let first = rng.random_range(0..directory.dispositions.len());
        for n in 0..count {
            // Consecutive catalogue entries: distinct ids within the engagement.
            let (id, name, description) =
                &directory.dispositions[(first + n) % directory.dispositions.len()];
            let at = end + seconds(rng, 5, 120);
            let disposition = with(
                engagement.routing(),
                json!({
                    "disposition_id": id,
                    "disposition_name": name,
                    "disposition_description": description,
                    "status": "active",
                    "last_modified_time": iso_seconds(self.at(at)),
                    "modified_by": engagement.agent.user_id,
                    "date_time_ms": iso_millis(self.at(at)),
                }),
            );
            self.push(at, "engagement_disposition_added", disposition);
        }
    }

    fn voicemail(
        &mut self,
        rng: &mut StdRng,
        directory: &Directory,
        engagement: &Engagement,
        t0: Duration,
    ) {
        let message_duration = seconds(rng, 5, 90);
        let end = t0 + seconds(rng, 15, 40) + message_duration;
        self.ended(engagement, end);

        let inbox = pick(rng, &directory.inboxes);
        let message_id = zoom_id(rng);
        let received_at = end + seconds(rng, 1, 10);
        let received = json!({
            "engagement_id": engagement.id,
            "engagement_direction": engagement.direction,
            "channel": "voice",
            "cc_queue_id": engagement.queue.id,
            "queue_name": engagement.queue.name,
            "flow_id": engagement.flow.id,
            "flow_name": engagement.flow.name,
            "flow_number": engagement.flow.number,
            "consumer_number": engagement.consumer_number,
            "inbox_id": inbox.id,
            "inbox_name": inbox.name,
            "message_id": message_id,
            "date_time_ms": iso_millis(self.at(received_at)),
        });
        self.push(received_at, "inbox_message_received", received);

        let transcribed_at = received_at + seconds(rng, 20, 180);
        let transcript = json!({
            "message_id": message_id,
            "inbox_id": inbox.id,
            "inbox_name": inbox.name,
            "engagement_id": engagement.id,
            "date_time_ms": iso_millis(self.at(transcribed_at)),
            "flow_id": engagement.flow.id,
            "flow_name": engagement.flow.name,
            "queue_name": engagement.queue.name,
            "cc_queue_id": engagement.queue.id,
            "transcript_url": format!(
                "{}/contact_center/voicemail/transcripts/download/{message_id}?type=voice",
                self.api_base
            ),
            "message_duration": message_duration.as_secs(),
            "consumer_number": engagement.consumer_number,
            "consumer_id": engagement.consumer_id,
            "consumer_display_name": engagement.consumer_name,
            "status": "normal",
        });
        self.push(transcribed_at, "voicemail_transcript_completed", transcript);

        // An agent working the inbox sometimes documents the callback.
        if rng.random_bool(0.3) {
            let at = transcribed_at + seconds(rng, 60, 900);
            self.note(rng, engagement, at);
            self.dispositions(rng, directory, engagement, at, 1);
        }
    }

    fn status_changed(&mut self, agent: &Agent, from: &str, to: &str, at: Duration) {
        let status = json!({
            "user_id": agent.user_id,
            "user_display_name": agent.name,
            "previous_status_name": from,
            "current_status_name": to,
            "date_time_ms": iso_millis(self.at(at)),
        });
        self.push(at, "user_status_changed", status);
    }
}

// ---- time formatting ----------------------------------------------------------

fn since_epoch(time: SystemTime) -> Duration {
    // Scripts start at "now" or a fixed recent date; a time before 1970 is a
    // caller bug, shown as the epoch rather than a panic.
    time.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn epoch_millis(time: SystemTime) -> u64 {
    u64::try_from(since_epoch(time).as_millis()).unwrap_or(u64::MAX)
}

/// `2022-02-15T08:12:15.986Z`, the form of Zoom's `*_time_ms` fields.
fn iso_millis(time: SystemTime) -> String {
    let since = since_epoch(time);
    format!("{}.{:03}Z", civil(since.as_secs()), since.subsec_millis())
}

/// `2022-02-15T08:12:15Z`, the form of `last_modified_time`.
fn iso_seconds(time: SystemTime) -> String {
    format!("{}Z", civil(since_epoch(time).as_secs()))
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for seconds since the epoch; Howard Hinnant's
/// `civil_from_days`, because no date crate is a dependency of this module.
fn civil(epoch_secs: u64) -> String {
    let days = epoch_secs / 86_400;
    let secs_of_day = epoch_secs % 86_400;
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs_of_day / 3_600,
        secs_of_day % 3_600 / 60,
        secs_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    use super::*;

    fn check_civil(epoch_secs: u64, expected: &str) {
        assert_eq!(civil(epoch_secs), expected, "epoch {epoch_secs}");
    }

    #[test]
    fn formats_utc_dates_like_zoom() {
        check_civil(0, "1970-01-01T00:00:00");
        check_civil(951_782_400, "2000-02-29T00:00:00");
        check_civil(1_644_912_735, "2022-02-15T08:12:15");
        check_civil(1_709_251_199, "2024-02-29T23:59:59");
        check_civil(4_102_444_800, "2100-01-01T00:00:00");
        let time = UNIX_EPOCH + Duration::from_millis(1_644_912_735_986);
        assert_eq!(iso_millis(time), "2022-02-15T08:12:15.986Z");
        assert_eq!(iso_seconds(time), "2022-02-15T08:12:15Z");
        assert_eq!(epoch_millis(time), 1_644_912_735_986);
    }

    fn start() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_790_000_000)
    }

    fn event_name(event: &ScriptedEvent) -> &str {
        event.body["event"].as_str().unwrap_or_default()
    }

    fn object_of(event: &ScriptedEvent) -> &Map<String, Value> {
        event.body["payload"]["object"]
            .as_object()
            .expect("object is an object")
    }

    #[test]
    fn same_seed_gives_the_same_script() {
        let a = generate(7, 25, start(), Duration::from_secs(30));
        let b = generate(7, 25, start(), Duration::from_secs(30));
        assert_eq!(a, b);
        let c = generate(8, 25, start(), Duration::from_secs(30));
        assert_ne!(a, c);
    }

    #[test]
    fn script_is_sorted_and_shaped_like_zoom_events() {
        let events = generate(42, 40, start(), Duration::from_secs(20));
        assert!(events.windows(2).all(|w| w[0].offset <= w[1].offset));
        let is_iso_millis =
            |text: &str| text.len() == 24 && text.ends_with('Z') && text.as_bytes()[19] == b'.';
        for (index, event) in events.iter().enumerate() {
            let body = &event.body;
            assert!(event_name(event).starts_with("contact_center."));
            // `event_ts` is the scripted moment, except for an exact re-send,
            // which repeats an earlier body verbatim.
            let scripted_ts = epoch_millis(start() + event.offset);
            if body["event_ts"].as_u64() != Some(scripted_ts) {
                assert!(events[..index].iter().any(|e| e.body == *body), "{body}");
            }
            assert_eq!(body["payload"]["account_id"], "sim-account");
            for (key, value) in object_of(event) {
                if key.ends_with("_time_ms") {
                    let text = value.as_str().expect("time fields are strings");
                    assert!(is_iso_millis(text), "{key}: {text}");
                }
                if key == "last_modified_time" {
                    let text = value.as_str().expect("string");
                    assert_eq!(text.len(), 20, "{text}");
                }
                if key.ends_with("_id") && key != "transfer_from_id" {
                    assert!(!value.as_str().unwrap_or_default().is_empty(), "{key}");
                }
            }
        }
    }

    #[test]
    fn script_has_the_expected_variety() {
        let events = generate(3, 60, start(), Duration::from_secs(45));
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for event in &events {
            *counts.entry(event_name(event)).or_default() += 1;
        }
        for name in [
            "engagement_started",
            "engagement_user_answered",
            "engagement_ended",
            "recording_completed",
            "recording_transcript_completed",
            "engagement_messaging_transcript_completed",
            "engagement_note_added",
            "engagement_disposition_added",
            "inbox_message_received",
            "voicemail_transcript_completed",
            "user_status_changed",
            "engagement_wrap_up_started",
            "task_created",
        ] {
            let full = format!("contact_center.{name}");
            assert!(
                counts.contains_key(full.as_str()),
                "no {name} in {counts:?}"
            );
        }
        assert_eq!(counts["contact_center.engagement_started"], 60);
        assert_eq!(counts["contact_center.engagement_ended"], 60);

        let channels: BTreeSet<&str> = events
            .iter()
            .filter(|e| event_name(e) == "contact_center.engagement_started")
            .filter_map(|e| object_of(e)["channel"].as_str())
            .collect();
        assert_eq!(channels, BTreeSet::from(["messaging", "video", "voice"]));

        // Every recording gets exactly one transcript, later, with a URL naming it.
        let by_id = |name: &str, id_field: &str| -> HashMap<String, Vec<&ScriptedEvent>> {
            let mut map: HashMap<String, Vec<&ScriptedEvent>> = HashMap::new();
            for event in events.iter().filter(|e| event_name(e) == name) {
                let id = object_of(event)[id_field].as_str().unwrap_or_default();
                map.entry(id.to_owned()).or_default().push(event);
            }
            map
        };
        let recordings = by_id("contact_center.recording_completed", "recording_id");
        let transcripts = by_id(
            "contact_center.recording_transcript_completed",
            "recording_id",
        );
        assert_eq!(
            recordings.keys().collect::<BTreeSet<_>>(),
            transcripts.keys().collect::<BTreeSet<_>>()
        );
        for (id, transcript) in &transcripts {
            assert_eq!(transcript.len(), 1);
            assert!(transcript[0].offset > recordings[id][0].offset);
            let url = object_of(transcript[0])["transcript_url"]
                .as_str()
                .unwrap_or_default();
            assert_eq!(
                url,
                format!(
                    "https://api.zoom.us/v2/contact_center/recording/transcripts/download/{id}?type=voice"
                )
            );
        }
        let voicemails = by_id("contact_center.inbox_message_received", "message_id");
        let voicemail_transcripts = by_id(
            "contact_center.voicemail_transcript_completed",
            "message_id",
        );
        assert_eq!(
            voicemails.keys().collect::<BTreeSet<_>>(),
            voicemail_transcripts.keys().collect::<BTreeSet<_>>()
        );

        // Notes: some exact re-sends and some edits (same note_id, new text,
        // later last_modified_time).
        let notes = by_id("contact_center.engagement_note_added", "note_id");
        let mut resends = 0;
        let mut edits = 0;
        for versions in notes.values() {
            let first = versions[0];
            for later in &versions[1..] {
                if later.body == first.body {
                    resends += 1;
                } else {
                    edits += 1;
                    let old = object_of(first);
                    let new = object_of(later);
                    assert_ne!(old["note"], new["note"]);
                    assert!(
                        new["last_modified_time"].as_str() > old["last_modified_time"].as_str()
                    );
                }
            }
        }
        assert!(resends > 0, "no re-sent note");
        assert!(edits > 0, "no edited note");

        // Dispositions are distinct within an engagement.
        let mut disposition_keys = BTreeSet::new();
        for event in events
            .iter()
            .filter(|e| event_name(e) == "contact_center.engagement_disposition_added")
        {
            let object = object_of(event);
            let key = (
                object["engagement_id"].as_str().unwrap_or_default(),
                object["disposition_id"].as_str().unwrap_or_default(),
            );
            assert!(
                disposition_keys.insert(key),
                "duplicate disposition {key:?}"
            );
        }
    }

    #[test]
    fn transcript_urls_follow_the_api_base() {
        let options = ScenarioOptions {
            account_id: "acct".to_owned(),
            api_base: "http://127.0.0.1:9/v2/".to_owned(),
        };
        let events = generate_with(5, 30, start(), Duration::from_secs(10), &options);
        let urls: Vec<&str> = events
            .iter()
            .filter_map(|e| e.body["payload"]["object"]["transcript_url"].as_str())
            .collect();
        assert!(!urls.is_empty());
        assert!(
            urls.iter()
                .all(|url| url.starts_with("http://127.0.0.1:9/v2/contact_center/")),
            "{urls:?}"
        );
        assert!(
            events
                .iter()
                .all(|e| e.body["payload"]["account_id"] == "acct")
        );
    }

    #[test]
    fn speedup_scales_offsets_and_guards_nonsense() {
        assert_eq!(
            scaled(Duration::from_secs(60), 60.0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(scaled(Duration::from_secs(60), 0.0), None);
        assert_eq!(scaled(Duration::from_secs(60), f64::NAN), None);
        assert_eq!(scaled(Duration::from_secs(60), -1.0), None);
    }
}
