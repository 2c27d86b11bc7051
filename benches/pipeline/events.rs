//! The benchmark's traffic: `recording_completed` events shaped as Zoom sends
//! them (docs/zoom.md §3), numbered so the sink can tell which one it got.
//!
//! Event `n` belongs to engagement `n % ENGAGEMENTS`: a thousand engagements
//! in progress at once, so the per-engagement ordering of delivery applies (two
//! events of one engagement are never in flight together) without making a
//! synthetic burst queue behind itself.

use serde_json::{Value, json};
use zcc_relay::record::{NewRecord, Source};

pub const ENGAGEMENTS: usize = 1_000;

/// The webhook-shaped body of event `n` (what the simulator wraps in a frame).
pub fn body(n: usize) -> Value {
    json!({
        "event": "contact_center.recording_completed",
        "event_ts": 1_764_151_200_000u64 + n as u64,
        "payload": {
            "account_id": "sim-account",
            "object": {
                "recording_id": format!("rec-{n:012}"),
                "engagement_id": format!("eng-{:06}", n % ENGAGEMENTS),
                "channel": "voice",
                "recording_start_time_ms": "2026-11-26T10:00:00.000Z",
                "recording_end_time_ms": "2026-11-26T10:05:00.000Z",
                "recording_duration": 300,
                "cc_queue_id": "q-billing",
                "queue_name": "Billing",
                "flow_id": "f-main",
                "flow_name": "Main line",
                "users": [{"user_id": "u-17", "user_display_name": "Amara Okafor"}],
                "consumers": [{
                    "consumer_id": format!("c-{n}"),
                    "consumer_number": "+15550100",
                    "consumer_display_name": "Caller"
                }]
            }
        }
    })
}

/// The WebSocket frame carrying event `n`, exactly as `Simulator::emit` writes
/// it (a `message` frame whose `content` is the body as a JSON string). Built
/// ahead of a timed run and sent with `Simulator::send_raw_text`, so the
/// simulator's own JSON work stays out of the figures (on two cores it would
/// compete with the daemon). Such frames are not in the simulator's history,
/// which only its REST listings read; the benchmark does not measure those.
pub fn frame(n: usize) -> String {
    let content = Value::String(body(n).to_string());
    format!(r#"{{"module":"message","success":true,"content":{content},"header":{{}}}}"#)
}

/// Event `n` as the daemon's source turns it into a record.
pub fn record(n: usize) -> NewRecord {
    zcc_relay::zoom::event::parse_body(
        &body(n).to_string(),
        Source::Websocket,
        "2026-11-26T10:05:00.123Z".into(),
        1_764_151_500_123,
    )
    .expect("the benchmark's event parses")
}
