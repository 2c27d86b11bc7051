//! `GET /ws`: the WebSocket event subscription (zoom-reference §2) and the task
//! that owns one socket.
//!
//! Owns the frame texts, the handshake (`build_connection` success or failure),
//! heartbeat acks, eviction and abrupt drops as seen on the wire. Which socket is
//! live, token validity and event history belong to `state`; this module only
//! carries out the [`Outbound`] orders `state` queues for its socket.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::Value;
use tokio::sync::mpsc;

use super::state::{Inner, Outbound};

/// `content` of the `build_connection` success frame. Zoom's exact text is
/// unconfirmed (zoom-reference §2.3); clients must branch on `success`.
pub(super) const CONNECTED: &str = "Connection established";
/// Sent to the older socket when a newer one takes the subscription, both as a
/// `build_connection` failure frame and as the close reason.
pub(super) const EVICTED: &str = "Connected in another place";
/// Close reason when the simulator shuts down.
pub(super) const SHUTTING_DOWN: &str = "Server shutting down";

/// How long a closing socket waits for the client's close reply before the TCP
/// connection is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// One server frame. Written by hand rather than via a derived struct so field
/// order matches Zoom's (`module` first) and building it cannot fail.
pub(super) fn frame(module: &str, success: bool, content: &Value) -> String {
    let module = Value::String(module.to_owned());
    format!(r#"{{"module":{module},"success":{success},"content":{content},"header":{{}}}}"#)
}

fn string_frame(module: &str, success: bool, content: &str) -> String {
    frame(module, success, &Value::String(content.to_owned()))
}

/// Upgrades every request, valid or not: Zoom reports handshake problems in the
/// first frame, not as an HTTP status.
pub(super) async fn upgrade(
    State(inner): State<Arc<Inner>>,
    RawQuery(query): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    inner.connections_accepted.fetch_add(1, Ordering::Relaxed);
    let mut subscription_id = None;
    let mut access_token = None;
    for (key, value) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match &*key {
            "subscriptionId" => subscription_id = Some(value.into_owned()),
            "access_token" => access_token = Some(value.into_owned()),
            _ => {}
        }
    }
    let tracker = inner.tracker.clone();
    upgrade.on_upgrade(move |socket| {
        tracker.track_future(run(inner, socket, subscription_id, access_token))
    })
}

/// How a live connection's loop ended, i.e. what is still owed to the client.
enum Ending {
    Shutdown,
    Evicted,
    Aborted,
    ClientGone,
}

async fn run(
    inner: Arc<Inner>,
    mut socket: WebSocket,
    subscription_id: Option<String>,
    access_token: Option<String>,
) {
    if let Err(refusal) = inner.check_handshake(subscription_id.as_deref(), access_token.as_deref())
    {
        tracing::debug!(reason = %refusal, "zoom simulator: handshake refused");
        let reason = refusal.to_string();
        let refused = string_frame("build_connection", false, &reason);
        if socket.send(Message::Text(refused.into())).await.is_ok() {
            close(&mut socket, close_code::POLICY, &reason).await;
        }
        return;
    }

    // Registered before the success frame is written: an event emitted from
    // here on is queued behind that frame, so a client never sees an event
    // before `build_connection` success, and a test that emits right after
    // `wait_live` cannot lose the event to a race.
    let (outbound_tx, mut outbound) = mpsc::unbounded_channel();
    let id = inner.register(outbound_tx);
    let connected = string_frame("build_connection", true, CONNECTED);
    if socket.send(Message::Text(connected.into())).await.is_err() {
        inner.unregister(id);
        return;
    }
    tracing::debug!(connection = id, "zoom simulator: connection live");

    let ending = loop {
        tokio::select! {
            () = inner.cancel.cancelled() => break Ending::Shutdown,
            order = outbound.recv() => match order {
                Some(Outbound::Text(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break Ending::ClientGone;
                    }
                }
                Some(Outbound::Evict) => break Ending::Evicted,
                // `None`: the account forgot this connection without an order,
                // which only `drop_live` does, and it sends `Abort` first.
                Some(Outbound::Abort) | None => break Ending::Aborted,
            },
            received = socket.recv() => match received {
                Some(Ok(Message::Text(text))) => {
                    if is_heartbeat(&text) {
                        inner.heartbeats_received.fetch_add(1, Ordering::Relaxed);
                        let ack = string_frame("heartbeat", true, "live");
                        if socket.send(Message::Text(ack.into())).await.is_err() {
                            break Ending::ClientGone;
                        }
                    }
                    // Anything else a client says is ignored, as far as anyone
                    // has observed Zoom doing.
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break Ending::ClientGone,
                // Pings are answered by the protocol layer; binary is ignored.
                Some(Ok(_)) => {}
            },
        }
    };
    inner.unregister(id);

    match ending {
        Ending::Shutdown => close(&mut socket, close_code::AWAY, SHUTTING_DOWN).await,
        Ending::Evicted => {
            let evicted = string_frame("build_connection", false, EVICTED);
            if socket.send(Message::Text(evicted.into())).await.is_ok() {
                close(&mut socket, close_code::NORMAL, EVICTED).await;
            }
        }
        // Returning drops the socket and with it the TCP connection: the client
        // sees a reset or EOF and no close frame.
        Ending::Aborted | Ending::ClientGone => {}
    }
    tracing::debug!(connection = id, "zoom simulator: connection closed");
}

fn is_heartbeat(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .is_ok_and(|frame| frame.get("module").and_then(Value::as_str) == Some("heartbeat"))
}

/// Sends a close frame and waits briefly for the client's reply, so the client
/// reads a clean close with `reason` rather than a reset.
async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let drain = async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    // A client that never answers costs at most the grace period.
    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
}
