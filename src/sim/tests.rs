//! Contract tests for the simulator over real sockets on 127.0.0.1: the token
//! endpoint through raw HTTP/1.1, the subscription through tokio-tungstenite.
//! Scenario tests live beside the generator in `scenario.rs`.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::scenario::{self, ScenarioOptions};
use super::{SimConfig, Simulator, ws};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Guard against a hang; never the thing that makes a test pass.
const PATIENCE: Duration = Duration::from_secs(10);

async fn sim() -> Simulator {
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

async fn token(sim: &Simulator) -> String {
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
    let (client, _) = tokio_tungstenite::connect_async(url.as_str())
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
async fn next_frame(client: &mut Client) -> Value {
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

async fn connect_live(sim: &Simulator) -> Client {
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
fn decode_message(frame: &Value) -> Value {
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
