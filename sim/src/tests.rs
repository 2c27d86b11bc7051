//! Contract tests for the simulator over real sockets on 127.0.0.1: the token
//! endpoint through raw HTTP/1.1, the subscription through tokio-tungstenite, and
//! the fault controls. Tests that measure time run on a paused clock, where the
//! simulator must not make time jump on its own. Scenario tests live beside the
//! generator in `scenario.rs`; REST tests in `rest_tests.rs`, which borrows the
//! helpers marked `pub(super)` here.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::ConnectionEventKind::{self, Attempt, Closed, Live};
use super::scenario::{self, ScenarioOptions};
use super::{HandshakeMode, SimConfig, Simulator, ws};

pub(super) type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Guard against a hang; never the thing that makes a test pass.
const PATIENCE: Duration = Duration::from_secs(10);

pub(super) async fn sim() -> Simulator {
    Simulator::start(SimConfig::default())
        .await
        .expect("simulator starts")
}

/// A minimal HTTP/1.1 POST to `/oauth/token{query}`; returns status and JSON body.
async fn post_token(
    sim: &Simulator,
    credentials: Option<(&str, &str)>,
    query: &str,
    form: &str,
) -> (u16, Value) {
    let mut request = format!(
        "POST /oauth/token{query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        sim.addr(),
        form.len()
    );
    if !form.is_empty() {
        request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    if let Some((id, secret)) = credentials {
        let basic = STANDARD.encode(format!("{id}:{secret}"));
        request.push_str(&format!("Authorization: Basic {basic}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(form);

    let mut stream = TcpStream::connect(sim.addr()).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    let response = String::from_utf8(response).expect("utf-8 response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let (_, body) = response.split_once("\r\n\r\n").expect("header end");
    (status, serde_json::from_str(body).expect("JSON body"))
}

fn demo_credentials() -> Option<(&'static str, &'static str)> {
    Some(("sim-client", "sim-secret"))
}

pub(super) async fn token(sim: &Simulator) -> String {
    let query = "?grant_type=account_credentials&account_id=sim-account";
    let (status, body) = post_token(sim, demo_credentials(), query, "").await;
    assert_eq!(status, 200, "{body}");
    body["access_token"]
        .as_str()
        .expect("token string")
        .to_owned()
}

async fn connect(sim: &Simulator, subscription: Option<&str>, token: Option<&str>) -> Client {
    let mut url = sim.websocket_url();
    {
        let mut query = url.query_pairs_mut();
        if let Some(subscription) = subscription {
            query.append_pair("subscriptionId", subscription);
        }
        if let Some(token) = token {
            query.append_pair("access_token", token);
        }
    }
    // Nagle off, as on the simulator's side: two small frames in a row (a
    // heartbeat and a ping) must not wait ~40 ms of real time for an ACK while a
    // paused clock runs ahead.
    let (client, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
        .await
        .expect("websocket upgrade");
    client
}

/// The next message of any kind; `None` when the stream ended or failed.
async fn next_message(client: &mut Client) -> Option<Message> {
    match tokio::time::timeout(PATIENCE, client.next()).await {
        Ok(Some(Ok(message))) => Some(message),
        Ok(Some(Err(_)) | None) => None,
        Err(_) => panic!("no message within {PATIENCE:?}"),
    }
}

/// The next text frame, parsed.
pub(super) async fn next_frame(client: &mut Client) -> Value {
    loop {
        match next_message(client).await {
            Some(Message::Text(text)) => {
                return serde_json::from_str(&text).expect("frame is JSON");
            }
            Some(Message::Ping(_) | Message::Pong(_)) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

pub(super) async fn connect_live(sim: &Simulator) -> Client {
    let token = token(sim).await;
    let mut client = connect(sim, Some("sim-subscription"), Some(&token)).await;
    let first = next_frame(&mut client).await;
    assert_eq!(
        first,
        json!({"module": "build_connection", "success": true, "content": ws::CONNECTED, "header": {}})
    );
    client
}

fn event(n: u64) -> Value {
    json!({
        "event": "contact_center.engagement_note_added",
        "event_ts": 1_790_000_000_000u64 + n,
        "payload": {"account_id": "sim-account", "object": {"note_id": format!("n{n}"), "note": "héllo \"quoted\""}},
    })
}

/// The body carried by a `message` frame whose content is a JSON string.
pub(super) fn decode_message(frame: &Value) -> Value {
    assert_eq!(frame["module"], "message");
    assert_eq!(frame["success"], true);
    let content = frame["content"].as_str().expect("content is a string");
    serde_json::from_str(content).expect("content holds JSON")
}

// ---- OAuth ------------------------------------------------------------------

#[tokio::test]
async fn issues_tokens_for_query_or_form_parameters() {
    let sim = sim().await;
    let query = "?grant_type=account_credentials&account_id=sim-account";
    let (status, from_query) = post_token(&sim, demo_credentials(), query, "").await;
    assert_eq!(status, 200, "{from_query}");
    let form = "grant_type=account_credentials&account_id=sim-account";
    let (status, from_form) = post_token(&sim, demo_credentials(), "", form).await;
    assert_eq!(status, 200, "{from_form}");

    for body in [&from_query, &from_form] {
        let token = body["access_token"].as_str().expect("token");
        assert_eq!(token.len(), 40);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 3600);
        assert!(
            body["scope"]
                .as_str()
                .expect("scope")
                .split(' ')
                .any(|s| s == "contact_center:read:admin")
        );
        assert_eq!(body["api_url"], format!("http://{}", sim.addr()));
    }
    assert_ne!(from_query["access_token"], from_form["access_token"]);
    assert_eq!(sim.tokens_issued(), 2);
}

#[tokio::test]
async fn rejects_bad_client_credentials_with_401() {
    let sim = sim().await;
    let query = "?grant_type=account_credentials&account_id=sim-account";
    let expected =
        json!({"reason": "Invalid client_id or client_secret", "error": "invalid_client"});
    for credentials in [
        Some(("sim-client", "wrong")),
        Some(("other", "sim-secret")),
        None,
    ] {
        let (status, body) = post_token(&sim, credentials, query, "").await;
        assert_eq!((status, &body), (401, &expected), "{credentials:?}");
    }
    assert_eq!(sim.tokens_issued(), 0);
}

#[tokio::test]
async fn rejects_wrong_grant_or_account_with_400() {
    let sim = sim().await;
    for query in [
        "?grant_type=client_credentials&account_id=sim-account",
        "?account_id=sim-account",
        "?grant_type=account_credentials&account_id=someone-else",
        "?grant_type=account_credentials",
    ] {
        let (status, body) = post_token(&sim, demo_credentials(), query, "").await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].is_string() && body["reason"].is_string(),
            "{body}"
        );
    }
    assert_eq!(sim.tokens_issued(), 0);
}

// ---- WebSocket ----------------------------------------------------------------

#[tokio::test]
async fn valid_connection_gets_build_connection_success_and_heartbeat_acks() {
    let sim = sim().await;
    let mut client = connect_live(&sim).await;
    sim.wait_live().await;
    assert!(sim.is_live());
    for n in 1..=2 {
        client
            .send(Message::text(r#"{"module":"heartbeat"}"#))
            .await
            .expect("send heartbeat");
        let ack = next_frame(&mut client).await;
        assert_eq!(
            ack,
            json!({"module": "heartbeat", "success": true, "content": "live", "header": {}})
        );
        assert_eq!(sim.heartbeats_received(), n);
    }
    assert_eq!(sim.connections_accepted(), 1);
    assert_eq!(sim.handshakes_completed(), 1);
}

#[tokio::test]
async fn wait_live_resolves_when_a_client_connects() {
    let sim = sim().await;
    assert!(!sim.is_live());
    let token = token(&sim).await;
    let url = sim.websocket_url();
    let connecting = tokio::spawn(async move {
        let url = format!("{url}?subscriptionId=sim-subscription&access_token={token}");
        tokio_tungstenite::connect_async(url)
            .await
            .map(|(client, _)| client)
    });
    tokio::time::timeout(PATIENCE, sim.wait_live())
        .await
        .expect("live in time");
    assert!(sim.is_live());
    drop(connecting.await);
}

#[tokio::test]
async fn event_frame_content_is_the_body_as_a_json_string() {
    let sim = sim().await;
    let mut client = connect_live(&sim).await;
    assert!(sim.emit(event(1)));
    let frame = next_frame(&mut client).await;
    assert_eq!(frame["header"], json!({}));
    assert_eq!(decode_message(&frame), event(1));
    let history = sim.history();
    assert_eq!(history.len(), 1);
    assert!(history[0].live);
    assert_eq!(history[0].body, event(1));
    // `content` is exactly the string inside the frame: what the daemon hashes.
    assert_eq!(frame["content"].as_str(), Some(history[0].content.as_str()));
}

#[tokio::test]
async fn emit_content_as_object_sends_the_object_itself() {
    let sim = sim().await;
    let mut client = connect_live(&sim).await;
    assert!(sim.emit_content_as_object(event(2)));
    let frame = next_frame(&mut client).await;
    assert_eq!(frame["module"], "message");
    assert_eq!(frame["content"], event(2));
    let history = sim.history();
    assert_eq!(
        history[0].content,
        serde_json::to_string(&event(2)).expect("serializes")
    );
}

#[tokio::test]
async fn send_raw_text_arrives_verbatim() {
    let sim = sim().await;
    let mut client = connect_live(&sim).await;
    assert!(sim.send_raw_text("{\"module\":\"message\",\"content\":".to_owned()));
    match next_message(&mut client).await {
        Some(Message::Text(text)) => {
            assert_eq!(text.as_str(), "{\"module\":\"message\",\"content\":")
        }
        other => panic!("expected raw text, got {other:?}"),
    }
    assert!(sim.history().is_empty());
}

/// Reads until the server closes; returns the close frame (code, reason) if any.
async fn expect_failure_then_close(client: &mut Client, content: &str) -> (CloseCode, String) {
    let frame = next_frame(client).await;
    assert_eq!(
        frame,
        json!({"module": "build_connection", "success": false, "content": content, "header": {}})
    );
    match next_message(client).await {
        Some(Message::Close(Some(close))) => (close.code, close.reason.to_string()),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn refused_handshakes_get_success_false_and_no_events() {
    let sim = sim().await;
    let good = token(&sim).await;
    let cases: [(Option<&str>, Option<&str>, &str); 5] = [
        (
            Some("sim-subscription"),
            Some("not-a-token"),
            "Invalid Token",
        ),
        (Some("sim-subscription"), None, "token is empty"),
        (Some("sim-subscription"), Some(""), "token is empty"),
        (
            Some("other-subscription"),
            Some(&good),
            "Subscription not found",
        ),
        (None, Some(&good), "subscriptionId is empty"),
    ];
    for (subscription, token, content) in cases {
        let mut client = connect(&sim, subscription, token).await;
        // Whatever is emitted while a refused socket is open never reaches it.
        assert!(!sim.emit(event(3)));
        let (code, reason) = expect_failure_then_close(&mut client, content).await;
        assert_eq!(code, CloseCode::Policy);
        assert_eq!(reason, content);
        assert!(next_message(&mut client).await.is_none());
    }
    assert!(!sim.is_live());
    assert_eq!(sim.connections_accepted(), 5);
    assert_eq!(sim.handshakes_completed(), 0);
}

#[tokio::test]
async fn expired_tokens_are_invalid_and_new_tokens_keep_old_ones_valid() {
    let sim = Simulator::start(SimConfig {
        token_ttl: Duration::ZERO,
        ..SimConfig::default()
    })
    .await
    .expect("start");
    let expired = token(&sim).await;
    let mut client = connect(&sim, Some("sim-subscription"), Some(&expired)).await;
    expect_failure_then_close(&mut client, "Invalid Token").await;
    drop(sim);

    let sim = self::sim().await;
    let older = token(&sim).await;
    let _newer = token(&sim).await;
    let mut client = connect(&sim, Some("sim-subscription"), Some(&older)).await;
    assert_eq!(next_frame(&mut client).await["success"], true);
}

#[tokio::test]
async fn second_connection_evicts_the_first() {
    let sim = sim().await;
    let mut first = connect_live(&sim).await;
    let mut second = connect_live(&sim).await;

    let evicted = next_frame(&mut first).await;
    assert_eq!(
        evicted,
        json!({"module": "build_connection", "success": false, "content": "Connected in another place", "header": {}})
    );
    match next_message(&mut first).await {
        Some(Message::Close(Some(close))) => {
            assert_eq!(close.code, CloseCode::Normal);
            assert_eq!(close.reason.as_str(), "Connected in another place");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert!(next_message(&mut first).await.is_none());

    assert!(sim.is_live());
    assert!(sim.emit(event(4)));
    assert_eq!(decode_message(&next_frame(&mut second).await), event(4));
    assert_eq!(sim.handshakes_completed(), 2);
    // Counted: one eviction, and one period with two sockets open, over once
    // the first is released.
    wait_closed(&sim, 1).await;
    assert_eq!(sim.evictions(), 1);
    let overlaps = sim.overlaps();
    assert_eq!(overlaps.len(), 1, "{overlaps:?}");
    assert!(
        overlaps[0] < std::time::Duration::from_secs(2),
        "{overlaps:?}"
    );
    assert_eq!(sim.overlaps(), overlaps, "over: it no longer grows");
}

#[tokio::test]
async fn events_emitted_while_nothing_is_live_are_never_delivered() {
    let sim = sim().await;
    assert!(!sim.emit(event(10)));

    let mut client = connect_live(&sim).await;
    assert!(sim.emit(event(11)));
    assert_eq!(decode_message(&next_frame(&mut client).await), event(11));

    sim.drop_connection();
    assert!(!sim.is_live());
    assert!(!sim.emit(event(12)));
    // Cut without a close frame: the stream just ends (or errors).
    match next_message(&mut client).await {
        None => {}
        Some(Message::Close(frame)) => panic!("got a close frame {frame:?}"),
        Some(other) => panic!("got {other:?} after the drop"),
    }

    let mut client = connect_live(&sim).await;
    assert!(sim.emit(event(13)));
    assert_eq!(decode_message(&next_frame(&mut client).await), event(13));

    let live: Vec<bool> = sim.history().iter().map(|e| e.live).collect();
    assert_eq!(live, [false, true, false, true]);
}

#[tokio::test]
async fn shutdown_closes_live_sockets_with_going_away() {
    let sim = sim().await;
    let mut client = connect_live(&sim).await;
    let reader = tokio::spawn(async move {
        let mut messages = Vec::new();
        while let Some(message) = next_message(&mut client).await {
            messages.push(message);
        }
        messages
    });
    tokio::time::timeout(PATIENCE, sim.shutdown())
        .await
        .expect("shutdown in time");
    let messages = reader.await.expect("reader");
    let closes: Vec<_> = messages
        .iter()
        .filter_map(|message| match message {
            Message::Close(Some(close)) => Some((close.code, close.reason.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(closes, [(CloseCode::Away, ws::SHUTTING_DOWN.to_owned())]);
}

#[tokio::test]
async fn play_emits_a_scenario_in_order_to_the_live_socket() {
    let sim = sim().await;
    let mut client = connect_live(&sim).await;
    let start = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let events = scenario::generate_with(
        11,
        3,
        start,
        Duration::from_secs(30),
        &ScenarioOptions::for_simulator(&sim),
    );
    let mut seen = Vec::new();
    // A large speedup keeps this under a second of real time.
    scenario::play(&sim, events.clone(), 100_000.0, |index, _| seen.push(index)).await;
    assert_eq!(seen, (0..events.len()).collect::<Vec<_>>());
    for expected in &events {
        assert_eq!(
            decode_message(&next_frame(&mut client).await),
            expected.body
        );
    }
    assert!(sim.history().iter().all(|e| e.live));
    let transcript = events
        .iter()
        .find_map(|e| e.body["payload"]["object"]["transcript_url"].as_str())
        .expect("some transcript");
    assert!(
        transcript.starts_with(&format!("http://{}/v2/contact_center/", sim.addr())),
        "{transcript}"
    );
}

// ---- Fault injection ----------------------------------------------------------

const HEARTBEAT: &str = r#"{"module":"heartbeat"}"#;

fn kinds(sim: &Simulator) -> Vec<ConnectionEventKind> {
    sim.connection_log()
        .iter()
        .map(|event| event.kind)
        .collect()
}

/// Resolves once the simulator has released `n` sockets in all.
async fn wait_closed(sim: &Simulator, n: usize) {
    let mut log = sim.inner.connection_log();
    let closed = log.wait_for(|log| {
        let closed = log.events.iter().filter(|event| event.kind == Closed);
        closed.count() >= n
    });
    tokio::time::timeout(PATIENCE, closed)
        .await
        .expect("sockets released in time")
        .expect("simulator still running");
}

/// What a client hears within some tokio time.
#[derive(Debug)]
enum Heard {
    Message(Message),
    End,
    Nothing,
}

/// The first thing `client` hears within `quiet` of tokio time (virtual under a
/// paused clock). Anything already on its way is heard before the clock may move.
async fn listen(client: &mut Client, quiet: Duration) -> Heard {
    let quiet_period = async {
        settle().await;
        tokio::time::sleep(quiet).await;
        settle().await;
    };
    tokio::select! {
        biased;
        received = client.next() => match received {
            Some(Ok(message)) => Heard::Message(message),
            Some(Err(_)) | None => Heard::End,
        },
        () = quiet_period => Heard::Nothing,
    }
}

/// Lets every task and socket of this runtime run without the clock moving: a
/// paused clock only jumps when the runtime parks with nothing to do, and a task
/// that keeps yielding means there is something to do.
async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

async fn assert_silent(client: &mut Client, quiet: Duration) {
    let started = Instant::now();
    match listen(client, quiet).await {
        Heard::Nothing => assert!(started.elapsed() >= quiet),
        other => panic!("expected silence, got {other:?}"),
    }
}

/// A normal live socket answers [`poke`] with a heartbeat ack and a pong, without
/// the clock moving: what makes the silence of a stalled or half-open one mean
/// something.
async fn expect_poke_answered(client: &mut Client) {
    let started = Instant::now();
    let quiet = Duration::from_secs(60);
    match listen(client, quiet).await {
        Heard::Message(Message::Text(text)) => {
            let ack: Value = serde_json::from_str(&text).expect("JSON ack");
            assert_eq!(ack["content"], "live");
        }
        other => panic!("expected a heartbeat ack, got {other:?}"),
    }
    match listen(client, quiet).await {
        Heard::Message(Message::Pong(payload)) => assert_eq!(&payload[..], b"anyone there?"),
        other => panic!("expected a pong, got {other:?}"),
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
}

/// Sends what a half-open or stalled server must not answer: the application
/// heartbeat and a protocol ping (which tungstenite would answer by itself).
async fn poke(client: &mut Client) {
    client
        .send(Message::text(HEARTBEAT))
        .await
        .expect("send heartbeat");
    client
        .send(Message::Ping(b"anyone there?".to_vec().into()))
        .await
        .expect("send ping");
}

#[tokio::test(start_paused = true)]
async fn half_open_socket_stays_open_and_silent_until_the_client_leaves() {
    let sim = sim().await;
    let mut client = connect_live(&sim).await;
    assert!(sim.emit(event(20)));
    assert_eq!(decode_message(&next_frame(&mut client).await), event(20));
    poke(&mut client).await;
    expect_poke_answered(&mut client).await;

    sim.go_half_open();
    assert!(!sim.is_live());
    assert!(!sim.emit(event(21)));
    assert!(!sim.send_raw_text("{}".to_owned()));
    poke(&mut client).await;
    assert_silent(&mut client, Duration::from_secs(5 * 60)).await;
    assert_eq!(sim.heartbeats_received(), 1);
    // Still held: no `Closed` while the client keeps its end open.
    assert_eq!(kinds(&sim), [Attempt, Live]);
    let live: Vec<bool> = sim.history().iter().map(|e| e.live).collect();
    assert_eq!(live, [true, false]);

    drop(client);
    wait_closed(&sim, 1).await;
    assert_eq!(kinds(&sim), [Attempt, Live, Closed]);
    // Nothing was live to half-open.
    sim.go_half_open();
    assert_eq!(sim.connection_log().len(), 3);
}

#[tokio::test]
async fn shutdown_releases_a_half_open_socket_without_a_close_frame() {
    let sim = sim().await;
    let mut client = connect_live(&sim).await;
    sim.go_half_open();
    let reader = tokio::spawn(async move {
        let mut messages = Vec::new();
        while let Some(message) = next_message(&mut client).await {
            messages.push(message);
        }
        messages
    });
    let inner = std::sync::Arc::clone(&sim.inner);
    tokio::time::timeout(PATIENCE, sim.shutdown())
        .await
        .expect("shutdown in time");
    let messages = reader.await.expect("reader");
    assert!(messages.is_empty(), "{messages:?}");
    let kinds: Vec<_> = inner
        .connection_log()
        .borrow()
        .events
        .iter()
        .map(|event| event.kind)
        .collect();
    assert_eq!(kinds, [Attempt, Live, Closed]);
}

#[tokio::test]
async fn evict_closes_the_live_socket_as_a_second_consumer_would() {
    let sim = sim().await;
    let mut client = connect_live(&sim).await;
    sim.evict();
    assert!(!sim.is_live());
    assert!(!sim.emit(event(22)));
    let (code, reason) = expect_failure_then_close(&mut client, ws::EVICTED).await;
    assert_eq!((code, reason.as_str()), (CloseCode::Normal, ws::EVICTED));
    assert!(next_message(&mut client).await.is_none());
    wait_closed(&sim, 1).await;
    assert_eq!(kinds(&sim), [Attempt, Live, Closed]);
    assert_eq!(sim.handshakes_completed(), 1);
    assert_eq!(sim.evictions(), 1);
    assert!(sim.overlaps().is_empty(), "one socket at a time");
    // Nothing live: a no-op.
    sim.evict();
    assert_eq!(sim.connection_log().len(), 3);
    assert_eq!(sim.evictions(), 1);
}

#[tokio::test]
async fn accept_then_drop_cuts_the_connection_right_after_build_connection_success() {
    let sim = sim().await;
    sim.set_handshake(HandshakeMode::AcceptThenDrop);
    let token = token(&sim).await;
    for _ in 0..2 {
        let mut client = connect(&sim, Some("sim-subscription"), Some(&token)).await;
        assert_eq!(
            next_frame(&mut client).await,
            json!({"module": "build_connection", "success": true, "content": ws::CONNECTED, "header": {}})
        );
        match next_message(&mut client).await {
            None => {}
            other => panic!("expected the connection cut, got {other:?}"),
        }
    }
    wait_closed(&sim, 2).await;
    assert_eq!(kinds(&sim), [Attempt, Closed, Attempt, Closed]);
    assert!(!sim.is_live());
    assert!(!sim.emit(event(23)));
    assert_eq!(sim.connections_accepted(), 2);
    assert_eq!(sim.handshakes_completed(), 0);

    // A request that would be refused is refused as usual.
    let mut client = connect(&sim, Some("sim-subscription"), Some("not-a-token")).await;
    expect_failure_then_close(&mut client, "Invalid Token").await;

    sim.set_handshake(HandshakeMode::Normal);
    let _client = connect_live(&sim).await;
    assert!(sim.is_live());
    assert_eq!(sim.handshakes_completed(), 1);
}

/// `GET /ws` without any upgrade headers; returns the status code.
async fn plain_get_ws(sim: &Simulator) -> u16 {
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        sim.addr()
    );
    let mut stream = TcpStream::connect(sim.addr()).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    String::from_utf8_lossy(&response)
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line")
}

#[tokio::test]
async fn refuse_answers_503_and_every_ws_request_counts_as_an_attempt() {
    let sim = sim().await;
    let token = token(&sim).await;
    let url = format!(
        "{}?subscriptionId=sim-subscription&access_token={token}",
        sim.websocket_url()
    );
    sim.set_handshake(HandshakeMode::Refuse);
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("expected a 503, got {:?}", other.map(|_| ())),
    }
    assert_eq!(sim.connection_attempts(), 1);
    assert_eq!(sim.connections_accepted(), 0);
    assert!(!sim.is_live());

    sim.set_handshake(HandshakeMode::Normal);
    let status = plain_get_ws(&sim).await;
    assert!((400..500).contains(&status), "{status}");
    assert_eq!(sim.connection_attempts(), 2);
    assert_eq!(sim.connections_accepted(), 0);

    let _client = connect_live(&sim).await;
    assert_eq!(sim.connection_attempts(), 3);
    assert_eq!(kinds(&sim), [Attempt, Attempt, Attempt, Live]);
}

#[tokio::test(start_paused = true)]
async fn stall_upgrades_then_stays_silent_for_minutes_and_never_goes_live() {
    let sim = sim().await;
    let token = token(&sim).await;
    // Control: on this paused clock a normal handshake and answers arrive before
    // any time passes, so the silence below is the simulator's doing.
    let mut control = connect(&sim, Some("sim-subscription"), Some(&token)).await;
    match listen(&mut control, Duration::from_secs(60)).await {
        Heard::Message(Message::Text(text)) => assert!(text.contains("build_connection")),
        other => panic!("expected build_connection, got {other:?}"),
    }
    poke(&mut control).await;
    expect_poke_answered(&mut control).await;
    drop(control);
    wait_closed(&sim, 1).await;

    sim.set_handshake(HandshakeMode::Stall);
    let mut client = connect(&sim, Some("sim-subscription"), Some(&token)).await;
    poke(&mut client).await;
    assert!(!sim.emit(event(24)));
    assert_silent(&mut client, Duration::from_secs(10 * 60)).await;
    assert!(!sim.is_live());
    assert_eq!(sim.connections_accepted(), 2);
    assert_eq!(sim.handshakes_completed(), 1);
    assert_eq!(sim.heartbeats_received(), 1);
    assert_eq!(kinds(&sim), [Attempt, Live, Closed, Attempt]);

    // Changing the mode does not rescue a socket that arrived stalled.
    sim.set_handshake(HandshakeMode::Normal);
    assert_silent(&mut client, Duration::from_secs(60)).await;

    drop(client);
    wait_closed(&sim, 2).await;
    assert_eq!(kinds(&sim), [Attempt, Live, Closed, Attempt, Closed]);
}

#[tokio::test]
async fn reject_tokens_refuses_even_issued_tokens_while_the_token_endpoint_works() {
    let sim = sim().await;
    let mut live = connect_live(&sim).await;
    sim.reject_tokens(true);
    let token = token(&sim).await;
    assert!(sim.issued_tokens().contains(&token));
    let mut client = connect(&sim, Some("sim-subscription"), Some(&token)).await;
    let (code, reason) = expect_failure_then_close(&mut client, "Invalid Token").await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Policy, "Invalid Token")
    );
    assert!(next_message(&mut client).await.is_none());
    assert_eq!(sim.handshakes_completed(), 1);
    // The socket that was live before stays live.
    assert!(sim.emit(event(25)));
    assert_eq!(decode_message(&next_frame(&mut live).await), event(25));

    sim.reject_tokens(false);
    let mut client = connect(&sim, Some("sim-subscription"), Some(&token)).await;
    assert_eq!(next_frame(&mut client).await["success"], true);
    assert_eq!(sim.handshakes_completed(), 2);
}

#[tokio::test]
async fn send_token_error_sends_the_newer_wording_and_keeps_the_socket_live() {
    let sim = sim().await;
    assert!(!sim.send_token_error());
    let mut client = connect_live(&sim).await;
    assert!(sim.send_token_error());
    let frame = next_frame(&mut client).await;
    assert_eq!(
        frame,
        json!({"module": "heartbeat", "success": false, "content": "Token is invalid", "header": {}})
    );
    assert!(sim.is_live());
    assert!(sim.emit(event(26)));
    assert_eq!(decode_message(&next_frame(&mut client).await), event(26));
    client
        .send(Message::text(HEARTBEAT))
        .await
        .expect("send heartbeat");
    assert_eq!(next_frame(&mut client).await["content"], "live");
}

#[tokio::test]
async fn reject_credentials_answers_401_to_everyone_until_switched_off() {
    let sim = sim().await;
    let query = "?grant_type=account_credentials&account_id=sim-account";
    let expected =
        json!({"reason": "Invalid client_id or client_secret", "error": "invalid_client"});
    sim.reject_credentials(true);
    let (status, body) = post_token(&sim, demo_credentials(), query, "").await;
    assert_eq!((status, &body), (401, &expected));
    assert_eq!(sim.tokens_issued(), 0);

    sim.reject_credentials(false);
    let (status, body) = post_token(&sim, demo_credentials(), query, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sim.tokens_issued(), 1);
}

#[tokio::test]
async fn send_binary_reaches_the_live_socket_only() {
    let sim = sim().await;
    assert!(!sim.send_binary(vec![1, 2, 3]));
    let mut client = connect_live(&sim).await;
    let bytes = vec![0x00, 0x9f, 0x92, 0x96, 0xff];
    assert!(sim.send_binary(bytes.clone()));
    match next_message(&mut client).await {
        Some(Message::Binary(received)) => assert_eq!(received.as_ref(), bytes.as_slice()),
        other => panic!("expected a binary frame, got {other:?}"),
    }
    assert!(sim.history().is_empty());
}

#[tokio::test(start_paused = true)]
async fn connection_log_shows_a_clients_backoff_in_virtual_time() {
    let sim = sim().await;
    sim.set_handshake(HandshakeMode::Refuse);
    let url = sim.websocket_url();
    let delays = [1, 2, 4].map(Duration::from_secs);
    let client = tokio::spawn(async move {
        for attempt in 0..=delays.len() {
            let refused = tokio_tungstenite::connect_async(url.as_str()).await;
            assert!(refused.is_err(), "attempt {attempt} connected");
            if let Some(delay) = delays.get(attempt) {
                tokio::time::sleep(*delay).await;
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), sim.wait_attempts(4))
        .await
        .expect("four attempts in time");
    client.await.expect("client task");
    // Already reached: resolves at once.
    sim.wait_attempts(2).await;

    let log = sim.connection_log();
    assert!(log.iter().all(|event| event.kind == Attempt));
    let gaps: Vec<Duration> = log.windows(2).map(|pair| pair[1].at - pair[0].at).collect();
    assert_eq!(gaps, delays);
    assert_eq!(sim.connection_attempts(), 4);
}
