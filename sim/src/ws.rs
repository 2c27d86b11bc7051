//! `GET /ws`: the WebSocket event subscription (docs/zoom.md §2) and the task
//! that owns one socket.
//!
//! Owns the frame texts, the handshake (`build_connection` success or failure,
//! and the faulty handshakes of [`HandshakeMode`]), heartbeat acks, eviction,
//! abrupt drops and holding half-open sockets as seen on the wire. Which socket is
//! live, token validity, the faults switched on and event history belong to
//! `state`; this module only carries out the [`Outbound`] orders `state` queues
//! for its socket. Making a socket silent is `link`'s job, below the protocol.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::mpsc;

use super::link::LinkHandle;
use super::state::{Admission, HandshakeError, Inner, Outbound};
use super::{ConnectionEventKind, HandshakeMode};

/// `content` of the `build_connection` success frame. Zoom's exact text is
/// unconfirmed (docs/zoom.md §2.3); clients must branch on `success`.
pub(super) const CONNECTED: &str = "Connection established";
/// Sent to the older socket when a newer one takes the subscription, both as a
/// `build_connection` failure frame and as the close reason.
pub(super) const EVICTED: &str = "Connected in another place";
/// Close reason when the simulator shuts down.
pub(super) const SHUTTING_DOWN: &str = "Server shutting down";
/// The token-error wording ZoomNet started seeing in October 2025 (docs/zoom.md
/// §2.3), sent on an open socket rather than in the handshake.
pub(super) const TOKEN_IS_INVALID: &str = "Token is invalid";

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

pub(super) fn token_error_frame() -> String {
    string_frame("heartbeat", false, TOKEN_IS_INVALID)
}

/// Upgrades every request, valid or not: Zoom reports handshake problems in the
/// first frame, not as an HTTP status. Only [`HandshakeMode::Refuse`] answers
/// with a status.
pub(super) async fn upgrade(
    State(inner): State<Arc<Inner>>,
    ConnectInfo(link): ConnectInfo<LinkHandle>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Taken before the upgrade is checked, so even a request that is no upgrade
    // counts as an attempt: a client bug that loses its upgrade headers should
    // show up in a test as attempts that never connect.
    let admission = inner.admit();
    if admission.mode == HandshakeMode::Refuse {
        tracing::debug!("zoom simulator: upgrade refused with 503");
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
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
    let request = Request {
        subscription_id,
        access_token,
        admission,
        link,
    };
    let tracker = inner.tracker.clone();
    upgrade.on_upgrade(move |socket| tracker.track_future(run(inner, socket, request)))
}

/// What a connection task needs to know about the request it came from.
struct Request {
    subscription_id: Option<String>,
    access_token: Option<String>,
    admission: Admission,
    link: LinkHandle,
}

/// How a live connection's loop ended, i.e. what is still owed to the client.
enum Ending {
    Shutdown,
    Evicted,
    Aborted,
    ClientGone,
    HalfOpen,
}

async fn run(inner: Arc<Inner>, socket: WebSocket, request: Request) {
    if serve(&inner, socket, request).await {
        inner.released();
    }
    // After `serve` has dropped the socket: "closed" means the TCP connection is
    // gone on the simulator's side.
    inner.record(ConnectionEventKind::Closed);
}

/// Serves one socket; true if it was registered as live (and is released
/// now that this returns).
async fn serve(inner: &Inner, mut socket: WebSocket, request: Request) -> bool {
    let Request {
        subscription_id,
        access_token,
        admission,
        link,
    } = request;
    if admission.mode == HandshakeMode::Stall {
        // Dark before the first frame could be written, so the client sees the
        // 101 and then nothing, whatever it sends.
        link.go_dark();
        tracing::debug!("zoom simulator: handshake stalled");
        hold_dark(inner, &mut socket).await;
        return false;
    }

    let verdict = if admission.reject_tokens {
        Err(HandshakeError::InvalidToken)
    } else {
        inner.check_handshake(subscription_id.as_deref(), access_token.as_deref())
    };
    if let Err(refusal) = verdict {
        tracing::debug!(reason = %refusal, "zoom simulator: handshake refused");
        let reason = refusal.to_string();
        let refused = string_frame("build_connection", false, &reason);
        if socket.send(Message::Text(refused.into())).await.is_ok() {
            close(&mut socket, close_code::POLICY, &reason).await;
        }
        return false;
    }

    if admission.mode == HandshakeMode::AcceptThenDrop {
        let connected = string_frame("build_connection", true, CONNECTED);
        // Whether or not the frame went out, returning drops the TCP connection
        // without a close frame.
        let _ = socket.send(Message::Text(connected.into())).await;
        tracing::debug!("zoom simulator: connection dropped right after the handshake");
        return false;
    }

    // Registered before the success frame is written: an event emitted from
    // here on is queued behind that frame, so a client never sees an event
    // before `build_connection` success, and a test that emits right after
    // `wait_live` cannot lose the event to a race.
    let (outbound_tx, mut outbound) = mpsc::unbounded_channel();
    let id = inner.register(outbound_tx, link.clone());
    let connected = string_frame("build_connection", true, CONNECTED);
    if socket.send(Message::Text(connected.into())).await.is_err() {
        inner.unregister(id);
        return true;
    }
    tracing::debug!(connection = id, "zoom simulator: connection live");

    let ending = loop {
        tokio::select! {
            // Orders before reads: a client that is evicted while its heartbeat
            // is in flight gets the eviction, not an ack, as the next frame.
            biased;
            () = inner.cancel.cancelled() => break Ending::Shutdown,
            order = outbound.recv() => match order {
                Some(Outbound::Text(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break Ending::ClientGone;
                    }
                }
                Some(Outbound::Binary(bytes)) => {
                    if socket.send(Message::Binary(bytes.into())).await.is_err() {
                        break Ending::ClientGone;
                    }
                }
                Some(Outbound::Evict) => break Ending::Evicted,
                Some(Outbound::HalfOpen) => break Ending::HalfOpen,
                // `None`: the account forgot this connection without an order,
                // which it never does (every `take_live` caller sends one).
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
        // Half-opened while its order was still queued behind the shutdown: a
        // close frame would be swallowed, and waiting for its reply would only
        // hold up `shutdown` for the grace period.
        Ending::Shutdown if link.is_dark() => {}
        Ending::Shutdown => close(&mut socket, close_code::AWAY, SHUTTING_DOWN).await,
        Ending::Evicted => {
            let evicted = string_frame("build_connection", false, EVICTED);
            if socket.send(Message::Text(evicted.into())).await.is_ok() {
                close(&mut socket, close_code::NORMAL, EVICTED).await;
            }
        }
        // The link went dark in `half_open_live`, before the order was queued.
        Ending::HalfOpen => hold_dark(inner, &mut socket).await,
        // Returning drops the socket and with it the TCP connection: the client
        // sees a reset or EOF and no close frame.
        Ending::Aborted | Ending::ClientGone => {}
    }
    tracing::debug!(connection = id, "zoom simulator: connection closed");
    true
}

/// Holds a socket whose link is dark until the client leaves or the simulator
/// stops; returning drops it without a close frame. Reading goes on only so the
/// client's leaving is noticed: a dark link delivers no bytes, just end-of-stream
/// or an error. No timer is armed, so a paused clock can run ahead freely.
async fn hold_dark(inner: &Inner, socket: &mut WebSocket) {
    loop {
        tokio::select! {
            () = inner.cancel.cancelled() => return,
            received = socket.recv() => match received {
                // Only frames already buffered before the link went dark; they
                // are ignored like everything else the client says now.
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
        }
    }
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
