//! zcc-sim: the stand-ins `zcc-relay demo` and the daemon's tests run against,
//! in a crate of its own so that none of them can import the daemon.
//!
//! - the crate root and its private modules: the simulated Zoom (below);
//! - [`sink`]: fake sinks, one module per sink kind ([`sink::http`] today; the
//!   CRM and NATS fakes go beside it);
//! - `s3` (feature `s3`, tests only): an S3 server over a directory.
//!
//! The rest of this page is about the Zoom stand-in.
//!
//! Owns the public face of the simulator: [`SimConfig`], [`Simulator`] (start, URLs,
//! the test-facing controls `emit`/`emit_without_socket`/`drop_connection`/
//! `send_raw_text`, the fault controls for connection-resilience and REST tests,
//! counters, the connection and REST request logs, shutdown), [`EmittedEvent`],
//! [`HandshakeMode`], [`ConnectionEvent`], [`RetryAfter`] and [`RestRequest`]. It
//! serves, on `127.0.0.1:0`, the S2S OAuth token endpoint (`oauth`), the WebSocket
//! event subscription (`ws`) and the ZCC REST listings under `/v2` (`rest`, which
//! lists what `item` builds from the event history, paged by `page`), and the
//! downloads behind every media URL it hands out (`media`: recordings,
//! transcripts, voicemails, with faults and a redirect host); all share
//! one [`state::Inner`], and every connection runs over a `link` that can go dark
//! (half-open). [`scenario`] scripts realistic contact-center traffic to feed
//! through `emit`.
//!
//! Every emitted event is part of the account's history whether or not a socket
//! was live; the REST API lists the recordings, engagements and voicemails behind
//! that history, so an event the socket never delivered is still found by
//! reconciliation, as on Zoom.
//!
//! Nothing in the simulator sleeps or keeps a timer on an idle connection, so it
//! runs under a paused tokio clock (`start_paused`), and every time it records is
//! a `tokio::time::Instant`, virtual under such a clock. The one timer it has is
//! the close grace, armed only while a socket is being closed.
//!
//! It imitates Zoom as described in `docs/zoom.md` §1–5 and §7, including the
//! unpleasant parts (no replay, last connection wins, page tokens that expire,
//! 429s). It cannot import anything from the daemon (a separate crate), so the
//! daemon's own Zoom code is tested against an independent reading of the
//! reference, never against itself.

mod item;
mod link;
mod media;
mod oauth;
mod page;
mod rest;
#[cfg(feature = "s3")]
pub mod s3;
pub mod scenario;
mod server;
pub mod sink;
mod state;
mod ws;

#[cfg(test)]
mod rest_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use url::Url;

pub use self::media::{FileKind, MediaFault, SimFile};
use self::state::{Content, Inner, Outbound, RestFault, Scheme};

/// Credentials and identity of the simulated Zoom account.
#[derive(Clone)]
pub struct SimConfig {
    pub account_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub subscription_id: String,
    /// Lifetime of each issued access token (`expires_in`); Zoom's is one hour.
    pub token_ttl: Duration,
}

impl Default for SimConfig {
    /// Fixed demo credentials, so `zcc-relay demo` can write a config without
    /// asking the simulator first.
    fn default() -> Self {
        SimConfig {
            account_id: "sim-account".to_owned(),
            client_id: "sim-client".to_owned(),
            client_secret: "sim-secret".to_owned(),
            subscription_id: "sim-subscription".to_owned(),
            token_ttl: Duration::from_secs(3600),
        }
    }
}

// Hand-written so a config dumped in a test failure never shows the secret, the
// same rule the daemon follows for real credentials.
impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("account_id", &self.account_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("subscription_id", &self.subscription_id)
            .field("token_ttl", &self.token_ttl)
            .finish()
    }
}

/// One event handed to [`Simulator::emit`] (or its object-content variant).
#[derive(Clone, Debug, PartialEq)]
pub struct EmittedEvent {
    /// The webhook-shaped body (`event`, `event_ts`, `payload`).
    pub body: Value,
    /// The body exactly as it appears inside the frame: for `emit` the text of the
    /// `content` string, for `emit_content_as_object` the compact serialization of
    /// the object (what `serde_json::to_string` gives). This is the "raw event body"
    /// that docs/contract.md §3.4 hashes for unlisted event types.
    pub content: String,
    /// Whether it was handed to a live, authenticated socket. `false` means Zoom
    /// would have lost it: it is never sent later.
    pub live: bool,
    pub at: SystemTime,
}

/// What the simulator does with a new WebSocket connection, set by
/// [`Simulator::set_handshake`]. Only `Normal` connections can become live or count
/// in [`handshakes_completed`](Simulator::handshakes_completed). `Refuse` and
/// `Stall` apply whatever the request carries; `AcceptThenDrop` only to requests
/// that would otherwise be accepted (so [`Simulator::reject_tokens`] wins over it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HandshakeMode {
    /// Zoom's behaviour: check the request, answer `build_connection`, serve.
    #[default]
    Normal,
    /// Send `build_connection` success, then drop the TCP connection at once,
    /// without a close frame. A request that would be refused is refused as usual.
    AcceptThenDrop,
    /// Upgrade, then send nothing at all, not even `build_connection`, a pong or a
    /// close reply, and read nothing; the socket stays open until the client
    /// closes it or the simulator shuts down.
    Stall,
    /// Answer the HTTP upgrade request with `503 Service Unavailable`.
    Refuse,
}

/// One entry of [`Simulator::connection_log`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionEvent {
    /// Tokio time, so under a paused clock the gaps between attempts are the
    /// client's virtual backoff delays.
    pub at: Instant,
    pub kind: ConnectionEventKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionEventKind {
    /// A `/ws` request arrived (whatever became of it, including a `503`).
    Attempt,
    /// A socket was granted `build_connection` success and became live.
    Live,
    /// The simulator released an upgraded socket, whatever the reason: refused or
    /// dropped handshake, drop, eviction, client gone, shutdown. A `503` or a
    /// request that was no upgrade never had a socket and has no `Closed`.
    Closed,
}

/// What a throttled REST answer ([`Simulator::throttle_next`]) says in its
/// `Retry-After` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// Delta seconds, e.g. `Retry-After: 2`.
    Seconds(u64),
    /// An HTTP date, e.g. `Retry-After: Sun, 06 Nov 1994 08:49:37 GMT` (whole
    /// seconds; as Zoom does for daily limits).
    Date(SystemTime),
    /// No `Retry-After` header at all, as users report seeing.
    None,
}

/// One request under `/v2`, whatever it was answered with (data, 4xx, or a
/// fault), in arrival order; see [`Simulator::rest_requests`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestRequest {
    /// E.g. `/v2/contact_center/recordings`.
    pub path: String,
    /// The raw query string without `?`, empty when there was none.
    pub query: String,
    /// Tokio time of arrival (virtual under a paused clock).
    pub at: Instant,
}

/// A running simulated Zoom. Dropping it stops the server as well; `shutdown`
/// additionally waits until every connection task has finished.
pub struct Simulator {
    inner: Arc<Inner>,
    server: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner::new(config, addr)?);
        media::spawn_redirect_host(Arc::clone(&inner)).await?;
        let server = server::spawn(listener, Arc::clone(&inner));
        tracing::debug!(%addr, "zoom simulator listening");
        Ok(Simulator {
            inner,
            server: Some(server),
        })
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://127.0.0.1:PORT/oauth/token`
    pub fn oauth_url(&self) -> Url {
        self.url(Scheme::Http, "/oauth/token")
    }

    /// `http://127.0.0.1:PORT/v2`
    pub fn api_base_url(&self) -> Url {
        self.url(Scheme::Http, "/v2")
    }

    /// `ws://127.0.0.1:PORT/ws` (the client appends `subscriptionId` and `access_token`).
    pub fn websocket_url(&self) -> Url {
        self.url(Scheme::Ws, "/ws")
    }

    fn url(&self, scheme: Scheme, path: &str) -> Url {
        let mut url = self.inner.origin(scheme);
        url.set_path(path);
        url
    }

    /// Sends one event the way Zoom does: a `message` frame whose `content` is the
    /// body serialized as a JSON string. Records it in [`history`](Self::history)
    /// and returns whether it went to a live socket; when none is live the event
    /// is lost to the socket for good, as on Zoom (the REST API still lists the
    /// recording, engagement or voicemail it stands for).
    pub fn emit(&self, body: Value) -> bool {
        self.inner.emit(body, Content::String)
    }

    /// Like [`emit`](Self::emit), but `content` is the JSON object itself, which
    /// some clients report seeing.
    pub fn emit_content_as_object(&self, body: Value) -> bool {
        self.inner.emit(body, Content::Object)
    }

    /// Records `body` in [`history`](Self::history) as if it had been emitted
    /// while no socket was live, even if one is: it is never sent, so only the
    /// REST API shows what it stands for. For "missed" events without dropping
    /// the connection.
    pub fn emit_without_socket(&self, body: Value) {
        self.inner.emit_without_socket(body);
    }

    /// The next `n` REST requests (anything under `/v2`, before the token is
    /// checked) answer `429`
    /// `{"code":429,"message":"You have reached the maximum per-second rate limit for this API. Try again later."}`
    /// with `retry_after`. Queues behind faults set earlier.
    pub fn throttle_next(&self, n: u32, retry_after: RetryAfter) {
        self.inner
            .queue_rest_fault(RestFault::Throttle(retry_after), n);
    }

    /// The next `n` REST requests answer `status` (meant for 5xx) with
    /// `{"code":status,"message":...}`; an impossible status becomes `500`.
    /// Queues behind faults set earlier.
    pub fn fail_next(&self, n: u32, status: u16) {
        self.inner.queue_rest_fault(RestFault::Fail(status), n);
    }

    /// Sizes of the audio files served from now on (recordings, voicemails);
    /// transcripts are short documents of their own size.
    pub fn set_media_sizes(&self, recording_bytes: u64, voicemail_bytes: u64) {
        self.inner.media.set_sizes(recording_bytes, voicemail_bytes);
    }

    /// The file a download URL for `id` serves: content type, size, sha256.
    pub fn media_file(&self, kind: FileKind, id: &str) -> SimFile {
        self.inner.media.file(kind, id)
    }

    /// The next `n` downloads answer `fault` instead of the file (after any
    /// queued before; downloads of unknown or deleted ids are not counted).
    pub fn media_fault(&self, fault: MediaFault, n: u32) {
        self.inner.media.queue_fault(fault, n);
    }

    /// From now on every download of `id` answers `404`, as for a recording
    /// that was deleted.
    pub fn delete_media(&self, id: &str) {
        self.inner.media.delete(id);
    }

    /// Downloads answer `302` to another host on 127.0.0.1, which serves the
    /// file without checking anything (a signed storage URL's stand-in).
    pub fn redirect_media(&self, on: bool) {
        self.inner.media.set_redirect(on);
    }

    /// The next `n` listing requests for engagement recordings or inbox
    /// messages leave every item out, as while Zoom is still processing.
    pub fn hide_media_from_listings(&self, n: u32) {
        self.inner.media.hide_from_listings(n);
    }

    /// Download requests that reached a download route (the redirect host's not included).
    pub fn media_downloads(&self) -> u64 {
        self.inner.media.downloads.load(Ordering::Relaxed)
    }

    /// Requests the redirect host received, and how many carried an
    /// `Authorization` header.
    pub fn redirect_host_requests(&self) -> (u64, u64) {
        let media = &self.inner.media;
        (
            media.redirect_requests.load(Ordering::Relaxed),
            media.redirect_authorized.load(Ordering::Relaxed),
        )
    }

    /// Every REST request so far, in order, for counting calls and pages.
    pub fn rest_requests(&self) -> Vec<RestRequest> {
        self.inner.rest_requests()
    }

    /// Sends `text` verbatim as one text frame to the live socket (for malformed
    /// input tests). Not recorded in history. Returns whether a socket was live.
    pub fn send_raw_text(&self, text: String) -> bool {
        self.inner.send_live(Outbound::Text(text))
    }

    /// Sends `bytes` as one binary frame to the live socket (Zoom sends none).
    /// Returns whether a socket was live.
    pub fn send_binary(&self, bytes: Vec<u8>) -> bool {
        self.inner.send_live(Outbound::Binary(bytes))
    }

    /// Sends the live socket the token-error frame in the wording Zoom used from
    /// late 2025 (docs/zoom.md §2.3),
    /// `{"module":"heartbeat","success":false,"content":"Token is invalid","header":{}}`,
    /// and leaves the socket open and live. Returns whether a socket was live.
    pub fn send_token_error(&self) -> bool {
        self.inner
            .send_live(Outbound::Text(ws::token_error_frame()))
    }

    /// Cuts the live socket without a close frame: the TCP connection is dropped,
    /// as when a network path dies. The subscription is no longer live at return.
    pub fn drop_connection(&self) {
        self.inner.drop_live();
    }

    /// Turns the live socket into a half-open one as the client sees it: from
    /// return on it sends nothing (no heartbeat acks, no events, no close, no
    /// pongs) and reads nothing, but the TCP connection stays open until the
    /// client closes it or the simulator shuts down (then it is dropped without a
    /// close frame). Nothing is live at return, so later events are lost.
    pub fn go_half_open(&self) {
        self.inner.half_open_live();
    }

    /// Does to the live socket what a second consumer of the subscription would:
    /// a `build_connection` failure frame "Connected in another place", then a
    /// close with that reason. Nothing is live at return.
    pub fn evict(&self) {
        self.inner.evict_live();
    }

    /// How connections arriving from now on are treated; see [`HandshakeMode`].
    /// Sockets already open keep the mode they arrived under.
    pub fn set_handshake(&self, mode: HandshakeMode) {
        self.inner.set_handshake(mode);
    }

    /// While on, every WebSocket handshake (even with a token the simulator just
    /// issued) gets `build_connection` failure "Invalid Token" and a close, as
    /// when Zoom has revoked the token. The token endpoint keeps issuing tokens.
    pub fn reject_tokens(&self, on: bool) {
        self.inner.reject_tokens(on);
    }

    /// While on, `/oauth/token` answers everyone `401`
    /// `{"reason":"Invalid client_id or client_secret","error":"invalid_client"}`,
    /// as after the app's secret was rotated.
    pub fn reject_credentials(&self, on: bool) {
        self.inner.reject_credentials(on);
    }

    /// Every event emitted so far, sent or not: the account's history, which the
    /// REST API lists from.
    pub fn history(&self) -> Vec<EmittedEvent> {
        self.inner.history()
    }

    /// Every `/ws` request, including upgrades refused with `503` and requests
    /// that were no upgrade at all.
    pub fn connection_attempts(&self) -> u64 {
        self.inner.connection_log().borrow().attempts
    }

    /// Every `/ws` attempt, live socket and release so far, in order.
    pub fn connection_log(&self) -> Vec<ConnectionEvent> {
        self.inner.connection_log().borrow().events.clone()
    }

    /// Resolves once [`connection_attempts`](Self::connection_attempts) is at
    /// least `n`.
    pub async fn wait_attempts(&self, n: u64) {
        let mut log = self.inner.connection_log();
        // An error means the sender is gone, which cannot happen while `self`
        // holds `inner`.
        let _ = log.wait_for(|log| log.attempts >= n).await;
    }

    /// WebSocket upgrades accepted, including ones whose handshake then failed,
    /// stalled or was dropped (but not `503`s).
    pub fn connections_accepted(&self) -> u64 {
        self.inner.connections_accepted.load(Ordering::Relaxed)
    }

    /// Sockets that received `build_connection` success.
    pub fn handshakes_completed(&self) -> u64 {
        self.inner.handshakes_completed.load(Ordering::Relaxed)
    }

    /// Live sockets evicted by a newer one ("Connected in another place").
    pub fn evictions(&self) -> u64 {
        self.inner.evictions.load(Ordering::Relaxed)
    }

    /// The periods during which two or more of the subscription's sockets were
    /// connected at once (from the newer one's `build_connection` success to
    /// the release of all but one), the current one included.
    pub fn overlaps(&self) -> Vec<std::time::Duration> {
        self.inner.overlaps()
    }

    pub fn heartbeats_received(&self) -> u64 {
        self.inner.heartbeats_received.load(Ordering::Relaxed)
    }

    /// The value of every access token issued so far (for leak checks).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.inner.issued_tokens()
    }

    pub fn tokens_issued(&self) -> u64 {
        self.inner.tokens_issued.load(Ordering::Relaxed)
    }

    /// Resolves once a socket for the subscription is live (it has been granted
    /// `build_connection` success; events emitted from now on reach it, after that
    /// frame). Resolves at once if one already is.
    pub async fn wait_live(&self) {
        let mut live = self.inner.live_watch();
        // An error means the sender is gone, which cannot happen while `self`
        // holds `inner`; returning is the only sensible answer either way.
        let _ = live.wait_for(|live| *live).await;
    }

    pub fn is_live(&self) -> bool {
        *self.inner.live_watch().borrow()
    }

    /// Stops accepting, closes live sockets with a 1001 "going away" close frame
    /// and waits for the server and every connection task to finish.
    pub async fn shutdown(mut self) {
        self.inner.cancel.cancel();
        if let Some(server) = self.server.take()
            && let Err(error) = server.await
        {
            tracing::warn!(%error, "zoom simulator server task failed");
        }
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

impl Drop for Simulator {
    // A test that fails halfway drops the simulator without `shutdown`; cancelling
    // here keeps its sockets from outliving it.
    fn drop(&mut self) {
        self.inner.cancel.cancel();
    }
}
