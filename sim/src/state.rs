//! The simulated account's shared state: issued tokens, the one live socket of the
//! subscription, the history of emitted events, the connection log, the REST
//! request log, counters, the faults currently switched on and the shutdown token.
//!
//! Owns the rules that span endpoints: token validity (checked by `/ws` and by the
//! REST routes), "one connection per subscription, last wins", "no replay" (on
//! the socket; REST lists the whole history) and the order in which queued REST
//! faults are served.
//! It does not touch sockets or HTTP: a connection task registers an mpsc sender
//! here and everything for that socket goes through it as an [`Outbound`]; the
//! only thing done to a socket directly is switching its link dark, which must
//! take effect before the call that asks for it returns.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use super::link::LinkHandle;
use super::{
    ConnectionEvent, ConnectionEventKind, EmittedEvent, HandshakeMode, RestRequest, RetryAfter,
    SimConfig, ws,
};

/// How an event body is placed in the `message` frame's `content`.
#[derive(Clone, Copy, Debug)]
pub(super) enum Content {
    /// Serialized to a JSON string (double-encoded), as Zoom sends it.
    String,
    /// The object itself.
    Object,
}

/// What the account asks of the connection task that owns the live socket.
#[derive(Debug)]
pub(super) enum Outbound {
    /// Send this text frame as is.
    Text(String),
    /// Send this binary frame as is.
    Binary(Vec<u8>),
    /// A newer connection took over: tell this one and close it.
    Evict,
    /// Drop the TCP connection without a close frame.
    Abort,
    /// The link has gone dark: stop serving, hold the socket until the client
    /// leaves or the simulator stops.
    HalfOpen,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Scheme {
    Http,
    Ws,
}

pub(super) struct Inner {
    pub config: SimConfig,
    pub addr: SocketAddr,
    /// When the simulator started (tokio time); page tokens count from here.
    pub started: Instant,
    http_origin: Url,
    ws_origin: Url,
    /// Cancelled on shutdown; every connection task selects on it.
    pub cancel: CancellationToken,
    /// Tracks connection tasks so `shutdown` can wait for them.
    pub tracker: TaskTracker,
    pub connections_accepted: AtomicU64,
    pub handshakes_completed: AtomicU64,
    pub heartbeats_received: AtomicU64,
    pub tokens_issued: AtomicU64,
    /// Live sockets told "Connected in another place" by a newer one.
    pub evictions: AtomicU64,
    /// Sockets granted `build_connection` success and not yet released.
    open: Mutex<Overlap>,
    next_connection_id: AtomicU64,
    /// Mirrors `State::live.is_some()`, for `wait_live` without polling. Only
    /// written while `state` is locked, so the two never disagree for a reader
    /// that takes the lock.
    live: watch::Sender<bool>,
    /// A watch rather than a field of `State` so `wait_attempts` needs no polling.
    connection_log: watch::Sender<ConnectionLog>,
    state: Mutex<State>,
    /// Download endpoints' controls and counters.
    pub media: super::media::Files,
}

#[derive(Default)]
struct State {
    /// Access token -> expiry. Old tokens stay valid when new ones are issued
    /// (current Zoom docs: "You can generate and use multiple access tokens").
    tokens: HashMap<String, Instant>,
    /// Every token ever issued, expired or not, so tests can prove none of them
    /// reached a log line.
    issued: Vec<String>,
    live: Option<LiveConnection>,
    history: Vec<EmittedEvent>,
    /// Faults switched on by the test; read once per request, when it arrives.
    handshake: HandshakeMode,
    reject_tokens: bool,
    reject_credentials: bool,
    /// What the next REST requests answer instead of their data, in the order
    /// the faults were queued: each entry with how many requests it has left.
    rest_faults: VecDeque<(RestFault, u32)>,
    rest_requests: Vec<RestRequest>,
}

/// A REST answer forced by the test instead of the real one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RestFault {
    /// `429` with this `Retry-After`.
    Throttle(RetryAfter),
    /// This status (meant for 5xx).
    Fail(u16),
}

struct LiveConnection {
    id: u64,
    outbound: mpsc::UnboundedSender<Outbound>,
    link: LinkHandle,
}

/// Every `/ws` request and what became of it, in order.
/// How many of the subscription's sockets are open at once, and the periods
/// during which more than one was (two consumers connected at the same time).
#[derive(Debug, Default)]
struct Overlap {
    open: usize,
    since: Option<Instant>,
    periods: Vec<std::time::Duration>,
}

#[derive(Debug, Default)]
pub(super) struct ConnectionLog {
    /// The number of `Attempt` entries in `events`, kept so waiters need not count.
    pub attempts: u64,
    pub events: Vec<ConnectionEvent>,
}

/// How a `/ws` request is to be treated: the faults switched on when it arrived.
/// Taken once, so a test that changes a fault right after connecting cannot race
/// the connection task.
#[derive(Clone, Copy, Debug)]
pub(super) struct Admission {
    pub mode: HandshakeMode,
    pub reject_tokens: bool,
}

/// Why a WebSocket handshake is refused; the `Display` text is the failure
/// frame's `content`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum HandshakeError {
    /// Zoom's answer when the token is missing from the URL (forum /t/69974).
    #[error("token is empty")]
    TokenEmpty,
    /// Unknown or expired token.
    #[error("Invalid Token")]
    InvalidToken,
    #[error("subscriptionId is empty")]
    SubscriptionEmpty,
    #[error("Subscription not found")]
    UnknownSubscription,
}

impl Inner {
    pub fn new(config: SimConfig, addr: SocketAddr) -> std::io::Result<Inner> {
        let origin = |scheme: &str| {
            Url::parse(&format!("{scheme}://{addr}/"))
                .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))
        };
        Ok(Inner {
            config,
            addr,
            started: Instant::now(),
            http_origin: origin("http")?,
            ws_origin: origin("ws")?,
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            connections_accepted: AtomicU64::new(0),
            handshakes_completed: AtomicU64::new(0),
            heartbeats_received: AtomicU64::new(0),
            tokens_issued: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            open: Mutex::new(Overlap::default()),
            next_connection_id: AtomicU64::new(1),
            live: watch::Sender::new(false),
            connection_log: watch::Sender::new(ConnectionLog::default()),
            state: Mutex::new(State::default()),
            media: super::media::Files::default(),
        })
    }

    // A panic while the lock is held (only possible in a test thread) must not
    // turn every later call into a second panic; the state stays consistent
    // because no method leaves it half-updated before a panic point.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `scheme://127.0.0.1:PORT/`
    pub fn origin(&self, scheme: Scheme) -> Url {
        match scheme {
            Scheme::Http => self.http_origin.clone(),
            Scheme::Ws => self.ws_origin.clone(),
        }
    }

    /// Mints a new opaque token valid for `config.token_ttl`.
    pub fn issue_token(&self) -> String {
        let mut bytes = [0u8; 30];
        rand::rng().fill(&mut bytes);
        // 30 random bytes -> exactly 40 URL-safe characters.
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let expires_at = now + self.config.token_ttl;
        let mut state = self.state();
        // Expired tokens can never become valid again; dropping them here keeps
        // the map from growing over a long demo.
        state.tokens.retain(|_, expiry| *expiry > now);
        state.tokens.insert(token.clone(), expires_at);
        state.issued.push(token.clone());
        drop(state);
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
        token
    }

    pub fn issued_tokens(&self) -> Vec<String> {
        self.state().issued.clone()
    }

    pub fn token_is_valid(&self, token: &str) -> bool {
        self.state()
            .tokens
            .get(token)
            .is_some_and(|expiry| *expiry > Instant::now())
    }

    /// Checks a `/ws` request's query parameters, in the order Zoom appears to:
    /// token presence, token validity, then the subscription.
    pub fn check_handshake(
        &self,
        subscription_id: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<(), HandshakeError> {
        let token = access_token.filter(|token| !token.is_empty());
        let Some(token) = token else {
            return Err(HandshakeError::TokenEmpty);
        };
        if !self.token_is_valid(token) {
            return Err(HandshakeError::InvalidToken);
        }
        match subscription_id.filter(|id| !id.is_empty()) {
            None => Err(HandshakeError::SubscriptionEmpty),
            Some(id) if id != self.config.subscription_id => {
                Err(HandshakeError::UnknownSubscription)
            }
            Some(_) => Ok(()),
        }
    }

    /// Records a `/ws` request and returns how it is to be treated.
    pub fn admit(&self) -> Admission {
        let state = self.state();
        let admission = Admission {
            mode: state.handshake,
            reject_tokens: state.reject_tokens,
        };
        drop(state);
        self.record(ConnectionEventKind::Attempt);
        admission
    }

    pub fn record(&self, kind: ConnectionEventKind) {
        let event = ConnectionEvent {
            at: Instant::now(),
            kind,
        };
        self.connection_log.send_modify(|log| {
            if kind == ConnectionEventKind::Attempt {
                log.attempts += 1;
            }
            log.events.push(event);
        });
    }

    pub fn connection_log(&self) -> watch::Receiver<ConnectionLog> {
        self.connection_log.subscribe()
    }

    pub fn set_handshake(&self, mode: HandshakeMode) {
        self.state().handshake = mode;
    }

    pub fn reject_tokens(&self, on: bool) {
        self.state().reject_tokens = on;
    }

    pub fn reject_credentials(&self, on: bool) {
        self.state().reject_credentials = on;
    }

    pub fn credentials_rejected(&self) -> bool {
        self.state().reject_credentials
    }

    /// Makes `outbound` the subscription's live connection and returns its id.
    /// A previous live connection is told to close ("Connected in another place").
    pub fn register(&self, outbound: mpsc::UnboundedSender<Outbound>, link: LinkHandle) -> u64 {
        let id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        let previous = state.live.replace(LiveConnection { id, outbound, link });
        // Counted and logged before "live" is published, so a waiter on
        // `wait_live` sees both.
        self.handshakes_completed.fetch_add(1, Ordering::Relaxed);
        self.record(ConnectionEventKind::Live);
        self.live.send_replace(true);
        drop(state);
        {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            open.open += 1;
            if open.open == 2 {
                open.since = Some(Instant::now());
            }
        }
        if let Some(previous) = previous {
            // A send error means that task already ended; nothing left to evict.
            if previous.outbound.send(Outbound::Evict).is_ok() {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(
                evicted = previous.id,
                by = id,
                "zoom simulator: connection evicted"
            );
        }
        id
    }

    /// A socket [`register`](Self::register)ed earlier is released (its TCP
    /// connection dropped on the simulator's side).
    pub fn released(&self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.open = open.open.saturating_sub(1);
        if open.open < 2
            && let Some(since) = open.since.take()
        {
            open.periods.push(since.elapsed());
        }
    }

    /// Every period during which two or more sockets were open, the current
    /// one included.
    pub fn overlaps(&self) -> Vec<std::time::Duration> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mut periods = open.periods.clone();
        periods.extend(open.since.map(|since| since.elapsed()));
        periods
    }

    /// Forgets connection `id` if it is still the live one (an evicted
    /// connection must not unregister its successor).
    pub fn unregister(&self, id: u64) {
        let mut state = self.state();
        if state.live.as_ref().is_some_and(|live| live.id == id) {
            state.live = None;
            self.live.send_replace(false);
        }
    }

    pub fn live_watch(&self) -> watch::Receiver<bool> {
        self.live.subscribe()
    }

    pub fn emit(&self, body: Value, mode: Content) -> bool {
        // `Value`'s Display is its compact JSON serialization and cannot fail.
        let content = body.to_string();
        let frame = match mode {
            Content::String => ws::frame("message", true, &Value::String(content.clone())),
            Content::Object => ws::frame("message", true, &body),
        };
        let mut state = self.state();
        // Sent and recorded under one lock so history order is delivery order.
        let live = state
            .live
            .as_ref()
            .is_some_and(|live| live.outbound.send(Outbound::Text(frame)).is_ok());
        state.history.push(EmittedEvent {
            body,
            content,
            live,
            at: SystemTime::now(),
        });
        live
    }

    /// Queues `order` for the live socket; returns whether one was live.
    pub fn send_live(&self, order: Outbound) -> bool {
        self.state()
            .live
            .as_ref()
            .is_some_and(|live| live.outbound.send(order).is_ok())
    }

    pub fn drop_live(&self) {
        if let Some(live) = self.take_live() {
            // A send error means that task already ended; nothing left to cut.
            let _ = live.outbound.send(Outbound::Abort);
            tracing::debug!(connection = live.id, "zoom simulator: connection dropped");
        }
    }

    /// What a second connection does to the first, without a second connection.
    pub fn evict_live(&self) {
        if let Some(live) = self.take_live() {
            if live.outbound.send(Outbound::Evict).is_ok() {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(connection = live.id, "zoom simulator: connection evicted");
        }
    }

    pub fn half_open_live(&self) {
        if let Some(live) = self.take_live() {
            // Dark before this returns, so not even a heartbeat ack the task is
            // writing at this moment reaches the client; the order only tells
            // the task to stop serving.
            live.link.go_dark();
            let _ = live.outbound.send(Outbound::HalfOpen);
            tracing::debug!(connection = live.id, "zoom simulator: connection half-open");
        }
    }

    /// Forgets the live connection, if any. Nothing is live when this returns,
    /// so no event emitted afterwards can be queued behind the caller's order.
    fn take_live(&self) -> Option<LiveConnection> {
        let mut state = self.state();
        let live = state.live.take()?;
        self.live.send_replace(false);
        Some(live)
    }

    /// Records `body` as emitted while nothing was live, even if a socket is:
    /// it is never sent, so only REST can show it.
    pub fn emit_without_socket(&self, body: Value) {
        let content = body.to_string();
        self.state().history.push(EmittedEvent {
            body,
            content,
            live: false,
            at: SystemTime::now(),
        });
    }

    pub fn history(&self) -> Vec<EmittedEvent> {
        self.state().history.clone()
    }

    /// Runs `read` over the history without copying it. `read` must not call
    /// back into `Inner` (the lock is held).
    pub fn read_history<R>(&self, read: impl FnOnce(&[EmittedEvent]) -> R) -> R {
        read(&self.state().history)
    }

    /// Queues `fault` for the next `n` REST requests, after any queued before.
    pub fn queue_rest_fault(&self, fault: RestFault, n: u32) {
        if n > 0 {
            self.state().rest_faults.push_back((fault, n));
        }
    }

    /// The fault this REST request must answer with, if any is queued.
    pub fn take_rest_fault(&self) -> Option<RestFault> {
        let mut state = self.state();
        let (fault, left) = state.rest_faults.front_mut()?;
        let fault = *fault;
        *left -= 1;
        if *left == 0 {
            state.rest_faults.pop_front();
        }
        Some(fault)
    }

    /// Logs a REST request; returns how many came before it.
    pub fn record_rest_request(&self, path: String, query: String) -> usize {
        let mut state = self.state();
        state.rest_requests.push(RestRequest {
            path,
            query,
            at: Instant::now(),
        });
        state.rest_requests.len() - 1
    }

    pub fn rest_requests(&self) -> Vec<RestRequest> {
        self.state().rest_requests.clone()
    }
}
