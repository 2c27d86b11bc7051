//! Contract tests for the simulated REST API over real sockets on 127.0.0.1,
//! through reqwest: what is listed (everything emitted, socket or not), windows,
//! paging and its tokens, the bearer check and the injected 429s and 5xx. Token
//! expiry runs on a paused clock; the client keeps no idle connections, so it
//! arms no timer that could make that clock jump. The item mapping itself is
//! unit-tested in `item.rs`, parameter rules in `page.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::{Value, json};

use super::item::iso_seconds;
use super::scenario::{self, ScenarioOptions};
use super::tests::{connect_live, decode_message, next_frame, sim, token};
use super::{RetryAfter, SimConfig, Simulator};

/// 2023-11-14T22:13:20Z
const T0: i64 = 1_700_000_000_000;
const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const DAY: i64 = 86_400 * SECOND;

/// A plain-HTTP client on the crate's TLS stack (rustls with ring; no roots, as
/// nothing here is TLS), without a connection pool.
fn client() -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .expect("client")
}

struct Response {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

struct Api {
    http: reqwest::Client,
    base: String,
    bearer: Option<String>,
}

impl Api {
    async fn new(sim: &Simulator) -> Api {
        Api {
            http: client(),
            base: sim.api_base_url().as_str().trim_end_matches('/').to_owned(),
            bearer: Some(token(sim).await),
        }
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Response {
        // Built by hand: the crate's reqwest has no `query` feature.
        let mut url = url::Url::parse(&format!("{}{path}", self.base)).expect("URL");
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self.http.get(url);
        if let Some(bearer) = &self.bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.expect("response");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.expect("JSON body");
        Response {
            status,
            headers,
            body,
        }
    }

    /// A `200` listing's body.
    async fn list(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = self.get(path, query).await;
        assert_eq!(response.status, 200, "{path} {query:?}: {}", response.body);
        response.body
    }
}

const RECORDINGS: &str = "/contact_center/recordings";
const ENGAGEMENTS: &str = "/contact_center/engagements";
const INBOX_MESSAGES: &str = "/contact_center/inboxes/messages";

/// `2023-11-14T22:13:20.250Z`, the event form of a time.
fn iso_millis(millis: i64) -> String {
    let seconds = iso_seconds(millis);
    format!(
        "{}.{:03}Z",
        seconds.trim_end_matches('Z'),
        millis.rem_euclid(1000)
    )
}

fn event(name: &str, object: Value) -> Value {
    json!({
        "event": format!("contact_center.{name}"),
        "event_ts": T0,
        "payload": {"account_id": "sim-account", "object": object},
    })
}

fn recording_completed(id: &str, start_ms: i64, end_ms: i64) -> Value {
    event(
        "recording_completed",
        json!({
            "recording_id": id,
            "engagement_id": format!("eng-{id}"),
            "engagement_direction": "inbound",
            "channel": "voice",
            "recording_start_time_ms": iso_millis(start_ms),
            "recording_end_time_ms": iso_millis(end_ms),
            "recording_type": "automatic",
            "recording_duration": (end_ms - start_ms) / SECOND,
            "users": [{"user_id": "u1", "user_display_name": "Amara Okafor"}],
        }),
    )
}

fn recording_transcript(id: &str, start_ms: i64, end_ms: i64) -> Value {
    let mut body = recording_completed(id, start_ms, end_ms);
    body["event"] = json!("contact_center.recording_transcript_completed");
    body["payload"]["object"]["transcript_url"] = json!(transcript_url(id));
    body
}

fn transcript_url(id: &str) -> String {
    format!("https://api.zoom.us/v2/contact_center/recording/transcripts/download/{id}?type=voice")
}

fn engagement_event(name: &str, id: &str, at_ms: i64, extra: Value) -> Value {
    let mut object = json!({
        "engagement_id": id,
        "engagement_direction": "inbound",
        "channel": "voice",
        "channel_source": "in_app_voice",
        "flow_id": "flow1",
        "flow_name": "Main IVR",
        "date_time_ms": iso_millis(at_ms),
    });
    if let (Some(object), Value::Object(extra)) = (object.as_object_mut(), extra) {
        object.extend(extra);
    }
    event(name, object)
}

fn voicemail(message_id: &str, at_ms: i64) -> Value {
    event(
        "inbox_message_received",
        json!({
            "engagement_id": format!("eng-{message_id}"),
            "channel": "voice",
            "inbox_id": "inbox1",
            "inbox_name": "Support Voicemail",
            "message_id": message_id,
            "consumer_number": "+14155550100",
            "date_time_ms": iso_millis(at_ms),
        }),
    )
}

fn ids(items: &Value, field: &str) -> Vec<String> {
    items
        .as_array()
        .expect("an array")
        .iter()
        .map(|item| item[field].as_str().expect("id").to_owned())
        .collect()
}

fn window(from_ms: i64, to_ms: i64) -> (String, String) {
    (iso_seconds(from_ms), iso_seconds(to_ms))
}

// ---- paging -----------------------------------------------------------------------

#[tokio::test]
async fn pages_through_a_thousand_recordings_collecting_each_exactly_once() {
    let sim = sim().await;
    let n_recordings = 1_010;
    for n in 0..n_recordings {
        let start = T0 + n * MINUTE;
        sim.emit(recording_completed(
            &format!("rec{n:04}"),
            start,
            start + 30 * SECOND,
        ));
    }
    // Outside the window on either side.
    sim.emit(recording_completed("early", T0 - DAY, T0 - DAY + SECOND));
    sim.emit(recording_completed(
        "late",
        T0 + 2 * DAY,
        T0 + 2 * DAY + SECOND,
    ));
    let api = Api::new(&sim).await;
    let (from, to) = window(T0, T0 + DAY);

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let mut query = vec![
            ("from", from.as_str()),
            ("to", to.as_str()),
            ("page_size", "50"),
        ];
        if !token.is_empty() {
            query.push(("next_page_token", token.as_str()));
        }
        let page = api.list(RECORDINGS, &query).await;
        pages += 1;
        assert_eq!(page["total_records"], n_recordings);
        assert_eq!(page["page_size"], 50);
        assert_eq!(
            (page["from"].as_str(), page["to"].as_str()),
            (Some(&*from), Some(&*to))
        );
        let ids = ids(&page["recordings"], "recording_id");
        assert!(ids.len() <= 50);
        seen.extend(ids);
        token = page["next_page_token"].as_str().expect("token").to_owned();
        if token.is_empty() {
            break;
        }
        assert!(pages < 100, "paging does not end");
    }

    assert_eq!(pages, 21);
    assert_eq!(seen.len(), 1_010);
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), 1_010, "an item was listed twice");
    // Newest first.
    assert_eq!(seen.first().map(String::as_str), Some("rec1009"));
    assert_eq!(seen.last().map(String::as_str), Some("rec0000"));
    let requests = sim.rest_requests();
    assert_eq!(requests.len(), 21);
    assert!(
        requests
            .iter()
            .all(|r| r.path == "/v2/contact_center/recordings")
    );
    assert!(!requests[0].query.contains("next_page_token"));
    assert!(
        requests[1..]
            .iter()
            .all(|r| r.query.contains("next_page_token="))
    );
}

#[tokio::test]
async fn window_bounds_are_inclusive_on_the_chosen_date() {
    let sim = sim().await;
    let (from_ms, to_ms) = (T0, T0 + DAY);
    // (id, start, end)
    let recordings = [
        ("before", from_ms - SECOND, from_ms - SECOND + 10 * SECOND),
        ("at-from", from_ms, from_ms + MINUTE),
        ("inside", from_ms + 3_600 * SECOND, from_ms + 3_700 * SECOND),
        // Sub-second parts are cut: listed as starting exactly at `to`.
        ("at-to", to_ms + 999, to_ms + MINUTE),
        ("after", to_ms + SECOND, to_ms + MINUTE),
        ("ends-at-to", to_ms - MINUTE, to_ms),
    ];
    for (id, start, end) in recordings {
        sim.emit(recording_completed(id, start, end));
    }
    let api = Api::new(&sim).await;
    let (from, to) = window(from_ms, to_ms);
    let listed = |body: Value| -> BTreeSet<String> {
        ids(&body["recordings"], "recording_id")
            .into_iter()
            .collect()
    };
    let set = |ids: &[&str]| -> BTreeSet<String> { ids.iter().map(|id| id.to_string()).collect() };

    let by_start = api.list(RECORDINGS, &[("from", &from), ("to", &to)]).await;
    assert_eq!(
        listed(by_start),
        set(&["at-from", "inside", "at-to", "ends-at-to"])
    );

    let start_type = [
        ("from", &*from),
        ("to", &*to),
        ("query_date_type", "recording_start_time"),
    ];
    let explicit = api.list(RECORDINGS, &start_type).await;
    assert_eq!(
        listed(explicit),
        set(&["at-from", "inside", "at-to", "ends-at-to"])
    );

    let end_type = [
        ("from", &*from),
        ("to", &*to),
        ("query_date_type", "recording_end_time"),
    ];
    let by_end = api.list(RECORDINGS, &end_type).await;
    assert_eq!(
        listed(by_end),
        set(&["before", "at-from", "inside", "ends-at-to"])
    );

    // The same instants written with offsets.
    let offsets = [
        ("from", "2023-11-14T14:13:20-08:00"),
        ("to", "2023-11-16T07:13:20+09:00"),
    ];
    let with_offsets = api.list(RECORDINGS, &offsets).await;
    assert_eq!(with_offsets["from"], "2023-11-14T14:13:20-08:00");
    assert_eq!(
        listed(with_offsets),
        set(&["at-from", "inside", "at-to", "ends-at-to"])
    );

    let wrong_type = api
        .get(
            RECORDINGS,
            &[("from", &from), ("to", &to), ("query_date_type", "created")],
        )
        .await;
    assert_eq!(wrong_type.status, 400, "{}", wrong_type.body);
    assert_eq!(wrong_type.body["code"], 300);
}

#[tokio::test]
async fn rejects_windows_longer_than_31_days_and_half_windows() {
    let sim = sim().await;
    sim.emit(recording_completed("r", T0, T0 + MINUTE));
    let api = Api::new(&sim).await;
    for path in [RECORDINGS, ENGAGEMENTS, INBOX_MESSAGES] {
        let (from, to) = window(T0, T0 + 31 * DAY + SECOND);
        let response = api.get(path, &[("from", &from), ("to", &to)]).await;
        assert_eq!(response.status, 400, "{path}: {}", response.body);
        assert_eq!(response.body["code"], 300);
        let message = response.body["message"].as_str().expect("message");
        assert!(message.contains("31 days"), "{message}");

        let (from, to) = window(T0, T0 + 31 * DAY);
        let response = api.get(path, &[("from", &from), ("to", &to)]).await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);

        let response = api.get(path, &[("from", &from)]).await;
        assert_eq!(
            (response.status, &response.body["code"]),
            (400, &json!(300))
        );
    }
    let (from, to) = window(T0, T0 + 31 * DAY);
    let exactly = api.list(RECORDINGS, &[("from", &from), ("to", &to)]).await;
    assert_eq!(ids(&exactly["recordings"], "recording_id"), ["r"]);
}

#[tokio::test(start_paused = true)]
async fn page_tokens_expire_after_15_minutes_and_only_fit_their_own_query() {
    let sim = sim().await;
    for n in 0..4 {
        sim.emit(recording_completed(
            &format!("r{n}"),
            T0 + n * MINUTE,
            T0 + n * MINUTE + SECOND,
        ));
    }
    let api = Api::new(&sim).await;
    let (from, to) = window(T0, T0 + DAY);
    let query = |token: &str, page_size: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("from", from.clone()),
            ("to", to.clone()),
            ("page_size", page_size.to_owned()),
            ("next_page_token", token.to_owned()),
        ]
    };
    let get = |query: Vec<(&'static str, String)>| {
        let api = &api;
        async move {
            let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            api.get(RECORDINGS, &pairs).await
        }
    };
    let expect_400 = |response: Response, fragment: &str| {
        assert_eq!(response.status, 400, "{}", response.body);
        assert_eq!(response.body["code"], 300);
        let message = response.body["message"].as_str().expect("message");
        assert!(message.contains(fragment), "{message}");
    };

    let first = get(query("", "1")).await;
    assert_eq!(ids(&first.body["recordings"], "recording_id"), ["r3"]);
    let token = first.body["next_page_token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert!(!token.is_empty());

    // Other parameters, another endpoint, or no token at all.
    expect_400(get(query(&token, "2")).await, "same query parameters");
    let other_from = [
        ("from", iso_seconds(T0 - SECOND)),
        ("to", to.clone()),
        ("page_size", "1".to_owned()),
        ("next_page_token", token.clone()),
    ];
    expect_400(get(other_from.to_vec()).await, "same query parameters");
    let on_engagements = api
        .get(
            ENGAGEMENTS,
            &[
                ("from", &from),
                ("to", &to),
                ("page_size", "1"),
                ("next_page_token", &token),
            ],
        )
        .await;
    expect_400(on_engagements, "same query parameters");
    expect_400(
        get(query("bm90LWEtdG9rZW4", "1")).await,
        "Invalid `next_page_token`",
    );

    tokio::time::advance(Duration::from_secs(15 * 60 - 1)).await;
    let second = get(query(&token, "1")).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(ids(&second.body["recordings"], "recording_id"), ["r2"]);
    let later_token = second.body["next_page_token"]
        .as_str()
        .expect("token")
        .to_owned();

    tokio::time::advance(Duration::from_secs(1)).await;
    expect_400(get(query(&token, "1")).await, "expired");
    // The token issued a second ago is fresh.
    let third = get(query(&later_token, "1")).await;
    assert_eq!(ids(&third.body["recordings"], "recording_id"), ["r1"]);

    tokio::time::advance(Duration::from_secs(15 * 60)).await;
    expect_400(get(query(&later_token, "1")).await, "expired");
}

// ---- auth and faults ----------------------------------------------------------------

#[tokio::test]
async fn answers_401_without_a_valid_bearer_token() {
    let sim = Simulator::start(SimConfig {
        token_ttl: Duration::ZERO,
        ..SimConfig::default()
    })
    .await
    .expect("start");
    let expired = Api::new(&sim).await;
    let mut missing = Api::new(&sim).await;
    missing.bearer = None;
    let mut unknown = Api::new(&sim).await;
    unknown.bearer = Some("not-a-token".to_owned());
    let expected = json!({"code": 124, "message": "Invalid access token."});
    for api in [&missing, &unknown, &expired] {
        for path in [
            RECORDINGS,
            ENGAGEMENTS,
            "/contact_center/engagements/e1",
            "/contact_center/engagements/e1/recordings",
            INBOX_MESSAGES,
            "/contact_center/no_such_thing",
        ] {
            let response = api.get(path, &[]).await;
            assert_eq!(
                (response.status, &response.body),
                (401, &expected),
                "{path}"
            );
            assert!(response.headers.contains_key("x-zm-trackingid"));
        }
    }
    assert_eq!(sim.rest_requests().len(), 18);

    let sim = self::sim().await;
    let api = Api::new(&sim).await;
    assert_eq!(api.get(RECORDINGS, &[]).await.status, 200);
    let unknown_path = api.get("/contact_center/no_such_thing", &[]).await;
    assert_eq!(unknown_path.status, 404);
}

#[tokio::test]
async fn throttles_with_retry_after_in_both_forms_then_serves() {
    let sim = sim().await;
    sim.emit(recording_completed("r", T0, T0 + MINUTE));
    let api = Api::new(&sim).await;
    let (from, to) = window(T0, T0 + DAY);
    let query = [("from", from.as_str()), ("to", to.as_str())];
    let throttled = json!({
        "code": 429,
        "message": "You have reached the maximum per-second rate limit for this API. Try again later.",
    });
    let retry_after = |response: &Response| {
        response
            .headers
            .get(RETRY_AFTER)
            .map(|value| value.to_str().expect("ASCII").to_owned())
    };

    sim.throttle_next(1, RetryAfter::Seconds(2));
    sim.throttle_next(
        1,
        RetryAfter::Date(UNIX_EPOCH + Duration::from_secs(1_790_000_000)),
    );
    sim.throttle_next(2, RetryAfter::None);
    sim.fail_next(1, 503);

    let response = api.get(RECORDINGS, &query).await;
    assert_eq!((response.status, &response.body), (429, &throttled));
    assert_eq!(retry_after(&response).as_deref(), Some("2"));

    let response = api.get(RECORDINGS, &query).await;
    assert_eq!((response.status, &response.body), (429, &throttled));
    assert_eq!(
        retry_after(&response).as_deref(),
        Some("Mon, 21 Sep 2026 14:13:20 GMT")
    );

    for _ in 0..2 {
        let response = api.get(RECORDINGS, &query).await;
        assert_eq!((response.status, retry_after(&response)), (429, None));
    }

    let response = api.get(RECORDINGS, &query).await;
    assert_eq!(response.status, 503);
    assert_eq!(response.body["code"], 503);

    let page = api.list(RECORDINGS, &query).await;
    assert_eq!(ids(&page["recordings"], "recording_id"), ["r"]);
    let requests = sim.rest_requests();
    assert_eq!(requests.len(), 6);
    assert!(requests.windows(2).all(|pair| pair[0].at <= pair[1].at));

    // Faults come before the token check: a throttled client learns nothing else.
    let mut anonymous = Api::new(&sim).await;
    anonymous.bearer = None;
    sim.throttle_next(1, RetryAfter::Seconds(1));
    assert_eq!(anonymous.get(RECORDINGS, &query).await.status, 429);
    assert_eq!(anonymous.get(RECORDINGS, &query).await.status, 401);
}

// ---- what is listed -------------------------------------------------------------

#[tokio::test]
async fn transcript_urls_appear_only_after_their_transcript_events() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let (from, to) = window(T0 - DAY, T0 + DAY);
    let query = [("from", from.as_str()), ("to", to.as_str())];

    sim.emit(recording_completed("rec", T0, T0 + MINUTE));
    let before = api.list(RECORDINGS, &query).await;
    assert_eq!(before["recordings"][0]["transcript_url"], "");
    sim.emit(recording_transcript("rec", T0, T0 + MINUTE));
    let after = api.list(RECORDINGS, &query).await;
    assert_eq!(after["total_records"], 1);
    assert_eq!(
        after["recordings"][0]["transcript_url"],
        transcript_url("rec")
    );

    sim.emit(voicemail("vm", T0));
    let before = api.list(INBOX_MESSAGES, &query).await;
    assert_eq!(before["messages"][0]["transcript_url"], "");
    let vm_url =
        "https://api.zoom.us/v2/contact_center/voicemail/transcripts/download/vm?type=voice";
    sim.emit(event(
        "voicemail_transcript_completed",
        json!({"message_id": "vm", "transcript_url": vm_url, "message_duration": 31,
               "date_time_ms": iso_millis(T0 + MINUTE)}),
    ));
    let after = api.list(INBOX_MESSAGES, &query).await;
    assert_eq!(after["messages"][0]["transcript_url"], vm_url);
    assert_eq!(after["messages"][0]["message_duration"], 31);
    assert_eq!(after["messages"][0]["message_type"], "voicemail");

    let engagement = "/contact_center/engagements/chat";
    sim.emit(engagement_event(
        "engagement_started",
        "chat",
        T0,
        json!({}),
    ));
    sim.emit(engagement_event(
        "engagement_ended",
        "chat",
        T0 + MINUTE,
        json!({}),
    ));
    assert_eq!(api.list(engagement, &[]).await["transcript_url"], "");
    let chat_url = "https://api.zoom.us/v2/contact_center/engagements/transcripts/download/chat";
    sim.emit(engagement_event(
        "engagement_messaging_transcript_completed",
        "chat",
        T0 + 2 * MINUTE,
        json!({"transcript_url": chat_url}),
    ));
    assert_eq!(api.list(engagement, &[]).await["transcript_url"], chat_url);
}

#[tokio::test]
async fn engagements_appear_only_once_ended() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let (from, to) = window(T0, T0 + DAY);
    let query = [("from", from.as_str()), ("to", to.as_str())];
    let detail = "/contact_center/engagements/e1";
    let agent = json!({"user_id": "u1", "user_display_name": "Amara Okafor"});
    let note = |text: &str, modified_ms: i64| {
        let mut fields = agent.clone();
        fields["note_id"] = json!("n1");
        fields["note"] = json!(text);
        fields["last_modified_time"] = json!(iso_seconds(modified_ms));
        engagement_event("engagement_note_added", "e1", modified_ms, fields)
    };

    sim.emit(engagement_event(
        "engagement_started",
        "e1",
        T0 + MINUTE,
        json!({}),
    ));
    sim.emit(engagement_event(
        "engagement_user_answered",
        "e1",
        T0 + 2 * MINUTE,
        agent.clone(),
    ));
    sim.emit(recording_completed(
        "rec-e1",
        T0 + 2 * MINUTE,
        T0 + 5 * MINUTE,
    ));
    sim.emit(note("first", T0 + 3 * MINUTE));
    assert_eq!(
        api.list(ENGAGEMENTS, &query).await["engagements"],
        json!([])
    );
    let open = api.get(detail, &[]).await;
    assert_eq!((open.status, &open.body), (200, &json!({})));
    let unknown = api.get("/contact_center/engagements/nobody", &[]).await;
    assert_eq!(unknown.status, 404);

    sim.emit(engagement_event(
        "engagement_ended",
        "e1",
        T0 + 6 * MINUTE,
        json!({}),
    ));
    sim.emit(note("edited", T0 + 7 * MINUTE));
    let mut disposition = agent.clone();
    disposition["disposition_id"] = json!("d1");
    disposition["disposition_name"] = json!("Resolved");
    sim.emit(engagement_event(
        "engagement_disposition_added",
        "e1",
        T0 + 7 * MINUTE,
        disposition,
    ));
    // Starts before `from`, so it is not listed even though it ends inside.
    sim.emit(engagement_event(
        "engagement_started",
        "early",
        T0 - SECOND,
        json!({}),
    ));
    sim.emit(engagement_event(
        "engagement_ended",
        "early",
        T0 + MINUTE,
        json!({}),
    ));

    let listed = api.list(ENGAGEMENTS, &query).await;
    assert_eq!(listed["total_records"], 1);
    assert_eq!(listed["timezone"], "UTC");
    let item = &listed["engagements"][0];
    assert_eq!(item["engagement_id"], "e1");
    assert_eq!(item["start_time"], iso_seconds(T0 + MINUTE));
    assert_eq!(item["end_time"], iso_seconds(T0 + 6 * MINUTE));
    assert_eq!(item["direction"], "inbound");
    assert_eq!(
        item["channels"],
        json!([{"channel": "voice", "channel_source": "in_app_voice"}])
    );
    assert_eq!(
        item["agents"],
        json!([{"user_id": "u1", "display_name": "Amara Okafor"}])
    );
    assert_eq!(
        item["notes"],
        json!([{"user_id": "u1", "note_id": "n1", "note": "edited",
                "last_modified_time": iso_seconds(T0 + 7 * MINUTE)}])
    );
    assert_eq!(
        item["dispositions"],
        json!([{"disposition_id": "d1", "disposition_name": "Resolved"}])
    );
    assert_eq!(api.list(detail, &[]).await, *item);

    // The recording's engagement is its own (`eng-rec-e1`), so e1 has none.
    let none = api
        .list("/contact_center/engagements/e1/recordings", &[])
        .await;
    assert_eq!(none["recordings"], json!([]));
    let own = api
        .list("/contact_center/engagements/eng-rec-e1/recordings", &[])
        .await;
    assert_eq!(ids(&own["recordings"], "recording_id"), ["rec-e1"]);
}

#[tokio::test]
async fn lists_events_emitted_without_a_socket_while_one_is_live() {
    let sim = sim().await;
    let mut client = connect_live(&sim).await;
    let api = Api::new(&sim).await;

    assert!(sim.emit(recording_completed("sent", T0, T0 + MINUTE)));
    sim.emit_without_socket(recording_completed("missed", T0 + MINUTE, T0 + 2 * MINUTE));
    sim.emit_without_socket(voicemail("missed-vm", T0 + MINUTE));
    assert!(sim.emit(recording_completed(
        "sent-after",
        T0 + 2 * MINUTE,
        T0 + 3 * MINUTE
    )));
    assert!(sim.is_live());

    // The socket saw only what was sent, in order.
    let first = decode_message(&next_frame(&mut client).await);
    assert_eq!(first["payload"]["object"]["recording_id"], "sent");
    let second = decode_message(&next_frame(&mut client).await);
    assert_eq!(second["payload"]["object"]["recording_id"], "sent-after");
    let live: Vec<bool> = sim.history().iter().map(|event| event.live).collect();
    assert_eq!(live, [true, false, false, true]);

    let (from, to) = window(T0, T0 + DAY);
    let query = [("from", from.as_str()), ("to", to.as_str())];
    let recordings = api.list(RECORDINGS, &query).await;
    assert_eq!(
        ids(&recordings["recordings"], "recording_id"),
        ["sent-after", "missed", "sent"]
    );
    let messages = api.list(INBOX_MESSAGES, &query).await;
    assert_eq!(ids(&messages["messages"], "message_id"), ["missed-vm"]);
}

#[tokio::test]
async fn lists_what_a_scenario_played_to_nobody() {
    let sim = sim().await;
    let start = UNIX_EPOCH + Duration::from_millis(T0 as u64);
    let events = scenario::generate_with(
        9,
        40,
        start,
        Duration::from_secs(60),
        &ScenarioOptions::for_simulator(&sim),
    );
    scenario::play(&sim, events.clone(), f64::INFINITY, |_, _| {}).await;
    assert!(sim.history().iter().all(|event| !event.live));

    let count = |name: &str, id_field: &str| -> usize {
        let ids: BTreeSet<&str> = events
            .iter()
            .filter(|e| e.body["event"] == format!("contact_center.{name}"))
            .filter_map(|e| e.body["payload"]["object"][id_field].as_str())
            .collect();
        ids.len()
    };
    let api = Api::new(&sim).await;
    let (from, to) = window(T0 - DAY, T0 + 2 * DAY);
    let query = [
        ("from", from.as_str()),
        ("to", to.as_str()),
        ("page_size", "300"),
    ];
    let recordings = api.list(RECORDINGS, &query).await;
    assert_eq!(
        recordings["total_records"],
        count("recording_completed", "recording_id")
    );
    let transcribed = recordings["recordings"]
        .as_array()
        .expect("array")
        .iter()
        .all(|item| {
            item["transcript_url"]
                .as_str()
                .is_some_and(|url| !url.is_empty())
        });
    assert!(transcribed, "every scripted recording has its transcript");
    let engagements = api.list(ENGAGEMENTS, &query).await;
    assert_eq!(engagements["total_records"], 40);
    let messages = api.list(INBOX_MESSAGES, &query).await;
    assert_eq!(
        messages["total_records"],
        count("inbox_message_received", "message_id")
    );
    assert!(count("inbox_message_received", "message_id") > 0);
}
