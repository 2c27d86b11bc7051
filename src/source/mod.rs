//! The Zoom WebSocket connection: connect, wait for `build_connection`,
//! heartbeat, read event frames into the journal, and reconnect on every kind of
//! failure with backoff.
//!
//! Only this module talks to the WebSocket. It hands each event body to the
//! journal and goes on reading; the journal answers once the record is on disk.
//! It does not deliver anything, and it never logs the connection URL (the
//! access token is in it).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::{Instant, MissedTickBehavior, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::clock;
use crate::config::WebsocketSettings;
use crate::journal::{AppendOutcome, Journal, JournalError};
use crate::lease::ledger::{self, Ledger};
use crate::record::{Source as Origin, now_rfc3339};
use crate::service::Heartbeat;
use crate::telemetry::stats::Stats;
use crate::zoom::auth::{Token, TokenCache};
use crate::zoom::event;
use crate::zoom::frame::{self, Frame};

/// The least headroom above `max_frame_bytes` (see [`message_cap`]).
pub const MIN_MESSAGE_HEADROOM: usize = 1024 * 1024;

/// tungstenite's own limit: `max_frame_bytes` plus as much again (at least
/// [`MIN_MESSAGE_HEADROOM`]; 8 MiB by default). A message up to it is read
/// whole, refused and counted by us while the socket stays up; a larger one is
/// refused by tungstenite before it is buffered (counted too, and it costs the
/// connection: tungstenite cannot skip the rest of a message).
pub fn message_cap(max_frame_bytes: usize) -> usize {
    max_frame_bytes.saturating_add(max_frame_bytes.max(MIN_MESSAGE_HEADROOM))
}

/// At most one "refused a WebSocket frame" line per this interval; the lines
/// not written are counted in the next one.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How much of a refused frame a log line shows.
const LOG_EXCERPT: usize = 200;

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;
/// An event handed to the journal, waiting for its commit.
type PendingAppend = BoxFuture<'static, (Ingested, AppendReply)>;
type AppendReply =
    Result<Result<AppendOutcome, JournalError>, tokio::sync::oneshot::error::RecvError>;

/// What the source remembers of an event until its commit returns.
struct Ingested {
    event: String,
    id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot persist events")]
    Journal(#[from] JournalError),
}

/// Why one connection ended; decides the next delay and the log line.
#[derive(Debug)]
enum End {
    Cancelled,
    /// Network trouble, a close, silence past `idle_timeout`: retry with backoff.
    Dropped(String),
    /// `build_connection` said no for a reason other than the token.
    Refused(String),
    /// Zoom said the token is bad: a new one is fetched before the next attempt.
    TokenRejected(String),
    /// "Connected in another place": someone else holds the subscription.
    Evicted(String),
    /// The token endpoint refused our credentials.
    Credentials(String),
    /// The token is about to expire: reconnect now with a fresh one.
    TokenExpiring,
}

impl End {
    fn reason(&self) -> String {
        match self {
            End::Cancelled => "stopping".into(),
            End::TokenExpiring => "access token about to expire".into(),
            End::Dropped(reason) | End::Refused(reason) | End::TokenRejected(reason) => {
                reason.clone()
            }
            End::Evicted(reason) => format!("evicted: {reason}"),
            End::Credentials(reason) => format!("credentials rejected: {reason}"),
        }
    }
}

/// Where the connection stands; published on a watch channel for status
/// displays. Transitions: Connecting → AwaitingBuildConnection → Live →
/// BackingOff → Connecting …, and Stopped at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    Connecting,
    AwaitingBuildConnection,
    Live {
        since_ms: u64,
    },
    BackingOff {
        reason: String,
        retry_at_ms: u64,
    },
    /// `[standby]`: closed because this relay does not hold the lease (or
    /// holds it with less than a third of `ttl` left).
    Standby,
    Stopped,
}

/// One connection, from its `build_connection` to its end: the live loop's
/// whole state, owned here or borrowed from `Source::run` (the backoff and the
/// heartbeat outlive a connection).
struct Session<'a> {
    socket: Socket,
    token: Token,
    cancel: &'a CancellationToken,
    backoff: &'a mut Backoff,
    heartbeat: &'a mut Heartbeat,
    /// Commits of the events read so far, not yet counted.
    pending: FuturesUnordered<PendingAppend>,
    /// The last moment a healthy frame showed the socket live.
    last_seen_ms: u64,
}

pub struct Source {
    pub settings: WebsocketSettings,
    pub websocket_url: url::Url,
    pub subscription_id: String,
    pub tokens: TokenCache,
    pub journal: Journal,
    pub stats: Stats,
    pub tls: Arc<rustls::ClientConfig>,
    pub state: tokio::sync::watch::Sender<ConnectionState>,
    /// `[standby]`: asked before every connect; `None` connects freely.
    pub lease: Option<crate::lease::Gate>,
    /// The last moment the socket was known live (ms), for the lease bucket.
    pub live: Option<tokio::sync::watch::Sender<u64>>,
    /// `[standby]`: the pair's note ledger, which numbers a note version
    /// before it is appended.
    pub ledger: Option<Ledger>,
}

impl Source {
    /// Runs until `cancel` fires (Ok) or the journal fails (Err). `heartbeat`
    /// beats in the live loop's `select!` and during the waits bounded by their
    /// own timeouts (token request, connect, backoff).
    pub async fn run(
        &self,
        cancel: CancellationToken,
        heartbeat: &mut Heartbeat,
    ) -> Result<(), SourceError> {
        let mut backoff = Backoff::new(self.settings.reconnect_min, self.settings.reconnect_max);
        let mut rng = StdRng::from_os_rng();
        loop {
            // Without the lease (or with too little of it left) the socket
            // stays closed: two relays must never fight over the subscription.
            if let Some(gate) = &self.lease {
                let mut gate = gate.clone();
                while !gate.may_connect() {
                    self.state.send_replace(ConnectionState::Standby);
                    tokio::select! {
                        _ = cancel.cancelled() => {
                            self.state.send_replace(ConnectionState::Stopped);
                            return Ok(());
                        }
                        _ = gate.changed() => {}
                        _ = heartbeat.tick() => {}
                    }
                }
            }
            self.state.send_replace(ConnectionState::Connecting);
            let end = self.session(&cancel, &mut backoff, heartbeat).await?;
            if matches!(end, End::Evicted(_)) {
                self.stats.evicted();
            }
            let delay = match &end {
                End::Cancelled => {
                    self.state.send_replace(ConnectionState::Stopped);
                    return Ok(());
                }
                End::TokenExpiring => Duration::ZERO,
                End::Evicted(_) | End::Credentials(_) => backoff.max(),
                End::Dropped(_) | End::Refused(_) | End::TokenRejected(_) => backoff.next(&mut rng),
            };
            let retry_in = humantime::format_duration(round_ms(delay)).to_string();
            self.state.send_replace(ConnectionState::BackingOff {
                reason: end.reason(),
                retry_at_ms: clock::now_ms() + delay.as_millis() as u64,
            });
            match &end {
                End::Cancelled => {}
                End::TokenExpiring => {
                    tracing::info!("access token about to expire; reconnecting with a fresh one")
                }
                End::Dropped(reason) => {
                    tracing::warn!(reason = %reason, retry_in = %retry_in, "Zoom WebSocket disconnected")
                }
                End::Refused(reason) => {
                    tracing::warn!(reason = %reason, retry_in = %retry_in, "Zoom refused the WebSocket connection")
                }
                End::TokenRejected(reason) => {
                    tracing::warn!(reason = %reason, retry_in = %retry_in, "Zoom rejected the access token; fetching a new one")
                }
                // The lease has moved on (this relay was frozen or cut off):
                // the new leader's connection took the subscription, as it
                // should. The gate keeps this socket closed.
                End::Evicted(reason)
                    if self.lease.as_ref().is_some_and(|gate| !gate.may_connect()) =>
                {
                    tracing::info!(reason = %reason, "the Zoom subscription went to the new lease holder; not reconnecting")
                }
                End::Evicted(reason) if self.lease.is_some() => tracing::error!(
                    reason = %reason,
                    retry_in = %retry_in,
                    alarm = true,
                    "ALARM: Zoom gave this subscription to another connection while this relay holds the lease: a consumer outside the pair (another integration, a relay with another lease bucket) uses the same subscription id"
                ),
                End::Evicted(reason) => tracing::error!(
                    reason = %reason,
                    retry_in = %retry_in,
                    "another consumer took this Zoom subscription (a second zcc-relay or another integration uses the same subscription id); only one connection per subscription receives events"
                ),
                End::Credentials(reason) => tracing::error!(
                    error = %reason,
                    retry_in = %retry_in,
                    "Zoom rejected the app credentials; check zoom.account_id, zoom.client_id and the client secret"
                ),
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = heartbeat.during(sleep(delay)) => {}
            }
        }
    }

    async fn session(
        &self,
        cancel: &CancellationToken,
        backoff: &mut Backoff,
        heartbeat: &mut Heartbeat,
    ) -> Result<End, SourceError> {
        let token = tokio::select! {
            _ = cancel.cancelled() => return Ok(End::Cancelled),
            token = heartbeat.during(self.tokens.token()) => token,
        };
        let token = match token {
            Ok(token) => token,
            Err(e) if e.is_credentials_problem() => return Ok(End::Credentials(e.to_string())),
            Err(e) => return Ok(End::Dropped(format!("cannot get an access token: {e}"))),
        };
        let socket = tokio::select! {
            _ = cancel.cancelled() => return Ok(End::Cancelled),
            connected = heartbeat.during(self.connect(&token)) => match connected {
                Ok(socket) => socket,
                Err(end) => return Ok(end),
            },
        };
        let mut session = Session {
            socket,
            token,
            cancel,
            backoff,
            heartbeat,
            pending: FuturesUnordered::new(),
            last_seen_ms: 0,
        };
        let end = self.live(&mut session).await;
        // Whatever was read before the end still gets counted; the journal
        // commits it regardless of the socket.
        while let Some((ingested, result)) = session.pending.next().await {
            self.count(&ingested, result)?;
        }
        end
    }

    /// TCP + TLS + upgrade, then the `build_connection` verdict, all within
    /// `connect_timeout`.
    async fn connect(&self, token: &Token) -> Result<Socket, End> {
        let mut url = self.websocket_url.clone();
        url.query_pairs_mut()
            .append_pair("subscriptionId", &self.subscription_id)
            .append_pair("access_token", token.expose());
        let connector = match url.scheme() {
            "wss" => Connector::Rustls(self.tls.clone()),
            _ => Connector::Plain,
        };
        let cap = message_cap(self.settings.max_frame_bytes);
        let config = WebSocketConfig::default()
            .max_message_size(Some(cap))
            .max_frame_size(Some(cap));
        let limit = self.settings.connect_timeout;
        let handshake = async {
            let (mut socket, _) = tokio_tungstenite::connect_async_tls_with_config(
                url.as_str(),
                Some(config),
                true,
                Some(connector),
            )
            .await
            .map_err(|e| End::Dropped(redact(format!("connect failed: {e}"), token)))?;
            self.state
                .send_replace(ConnectionState::AwaitingBuildConnection);
            let first = loop {
                match socket.next().await {
                    Some(Ok(Message::Text(text))) => break text,
                    Some(Ok(Message::Close(frame))) => return Err(closed(frame.as_ref())),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        return Err(End::Dropped(redact(format!("read failed: {e}"), token)));
                    }
                    None => {
                        return Err(End::Dropped(
                            "connection closed before build_connection".into(),
                        ));
                    }
                }
            };
            match Frame::parse(first.as_str()) {
                Ok(Frame::BuildConnection { success: true, .. }) => Ok(socket),
                Ok(frame @ Frame::BuildConnection { success: false, .. }) => {
                    Err(verdict(&frame, &self.tokens, token).await)
                }
                Ok(other) => Err(End::Dropped(format!(
                    "expected build_connection first, got {other:?}"
                ))),
                Err(e) => Err(End::Dropped(format!("unreadable first frame: {e}"))),
            }
        };
        match timeout(limit, handshake).await {
            Ok(result) => result,
            Err(_) => Err(End::Dropped(format!(
                "no build_connection within connect_timeout ({})",
                humantime::format_duration(limit)
            ))),
        }
    }

    /// The socket is live: record it in the gap ledger, run it, and record the
    /// last moment it was known live when it ends.
    async fn live(&self, session: &mut Session<'_>) -> Result<End, SourceError> {
        let since = clock::now_ms();
        self.journal.went_live(since).await?;
        self.state
            .send_replace(ConnectionState::Live { since_ms: since });
        self.stats.connected();
        tracing::info!(subscription = %self.subscription_id, "connected to Zoom WebSocket");
        session.last_seen_ms = since;
        if let Some(live) = &self.live {
            live.send_replace(since);
        }
        let end = self.live_loop(session).await?;
        // A clean stop was live until now; otherwise the last frame is the last
        // moment we know of, and the gap to reconcile starts there.
        let until = if matches!(end, End::Cancelled) {
            clock::now_ms()
        } else {
            session.last_seen_ms
        };
        self.journal.still_live(until).await?;
        Ok(end)
    }

    async fn live_loop(&self, session: &mut Session<'_>) -> Result<End, SourceError> {
        let Session {
            socket,
            token,
            cancel,
            backoff,
            heartbeat: liveness,
            pending,
            last_seen_ms,
        } = session;
        let settings = &self.settings;
        let mut refusals = RefusalLog::default();
        let mut last_recorded = Instant::now();
        let mut heartbeat = tokio::time::interval_at(
            Instant::now() + settings.heartbeat_interval,
            settings.heartbeat_interval,
        );
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let idle = sleep(settings.idle_timeout);
        tokio::pin!(idle);
        let refresh = sleep_until(token.refresh_at());
        tokio::pin!(refresh);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = timeout(Duration::from_secs(1), socket.close(None)).await;
                    return Ok(End::Cancelled);
                }
                Some((ingested, result)) = pending.next(), if !pending.is_empty() => {
                    self.count(&ingested, result)?;
                }
                _ = liveness.tick() => {
                    if let Some(n_refused) = refusals.flush(Instant::now()) {
                        tracing::warn!(refused = n_refused, "refused more WebSocket frames (lines not written)");
                    }
                }
                _ = heartbeat.tick() => {
                    if let Err(e) = socket.send(Message::text(frame::HEARTBEAT)).await {
                        return Ok(End::Dropped(redact(format!("heartbeat send failed: {e}"), token)));
                    }
                }
                _ = &mut idle => {
                    return Ok(End::Dropped(format!(
                        "no frame for idle_timeout ({}); connection presumed dead",
                        humantime::format_duration(settings.idle_timeout)
                    )));
                }
                _ = &mut refresh => {
                    let _ = timeout(Duration::from_secs(1), socket.close(None)).await;
                    return Ok(End::TokenExpiring);
                }
                message = socket.next() => {
                    idle.as_mut().reset(Instant::now() + settings.idle_timeout);
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(bytes))) => {
                            self.refuse(&mut refusals, "binary frame", &format!("{} bytes", bytes.len()));
                            continue;
                        }
                        Some(Ok(Message::Close(frame))) => return Ok(closed(frame.as_ref())),
                        Some(Ok(_)) => continue, // ping/pong: tungstenite answers pings itself
                        Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(e))) => {
                            let limit = message_cap(settings.max_frame_bytes);
                            self.refuse(&mut refusals, "message over the limit", &format!(
                                "{e} (twice websocket.max_frame_bytes, at least 1 MiB more: {limit} bytes); reconnecting"
                            ));
                            return Ok(End::Dropped(format!(
                                "a message above {limit} bytes (websocket.max_frame_bytes plus headroom) cannot be skipped"
                            )));
                        }
                        Some(Err(e)) => return Ok(End::Dropped(redact(format!("read failed: {e}"), token))),
                        None => return Ok(End::Dropped("connection closed by peer".into())),
                    };
                    if text.len() > settings.max_frame_bytes {
                        self.refuse(
                            &mut refusals,
                            "oversized frame",
                            &format!("{} bytes > websocket.max_frame_bytes ({})", text.len(), settings.max_frame_bytes),
                        );
                        continue;
                    }
                    match Frame::parse(text.as_str()) {
                        Ok(Frame::Message { body }) => {
                            backoff.reset();
                            self.seen_live(last_seen_ms, &mut last_recorded).await?;
                            if let Some(append) = self.ingest(&body, &mut refusals, cancel).await? {
                                pending.push(append);
                            }
                        }
                        Ok(frame @ Frame::Heartbeat { success: true, .. }) if !frame.is_token_error() => {
                            backoff.reset();
                            self.stats.heartbeat_reply();
                            self.seen_live(last_seen_ms, &mut last_recorded).await?;
                        }
                        Ok(frame @ (Frame::Heartbeat { .. } | Frame::BuildConnection { .. })) => {
                            if frame.is_eviction() || frame.is_token_error() {
                                let _ = timeout(Duration::from_secs(1), socket.close(None)).await;
                                return Ok(verdict(&frame, &self.tokens, token).await);
                            }
                            if let Frame::BuildConnection { success: false, content } = &frame {
                                return Ok(End::Refused(content.clone()));
                            }
                            tracing::debug!(?frame, "ignoring control frame");
                        }
                        Ok(Frame::Unknown { module }) => self.refuse(&mut refusals, "unknown module", &module),
                        Err(e) => self.refuse(&mut refusals, &e.to_string(), text.as_str()),
                    }
                }
            }
        }
    }

    /// A healthy frame: the socket is live now. The journal hears of it at most
    /// once per heartbeat interval (a commit is cheap, but not free).
    async fn seen_live(
        &self,
        last_seen_ms: &mut u64,
        last_recorded: &mut Instant,
    ) -> Result<(), SourceError> {
        *last_seen_ms = clock::now_ms();
        if let Some(live) = &self.live {
            live.send_replace(*last_seen_ms);
        }
        if last_recorded.elapsed() >= self.settings.heartbeat_interval {
            *last_recorded = Instant::now();
            self.journal.still_live(*last_seen_ms).await?;
        }
        Ok(())
    }

    /// Parses one event body and queues it for the journal. Returns the commit
    /// to wait for, or `None` if the body was refused.
    async fn ingest(
        &self,
        body: &str,
        refusals: &mut RefusalLog,
        cancel: &CancellationToken,
    ) -> Result<Option<PendingAppend>, SourceError> {
        let received_ms = jiff::Timestamp::now().as_millisecond();
        let record = match event::parse_body(body, Origin::Websocket, now_rfc3339(), received_ms) {
            Ok(record) => record,
            Err(e) => {
                self.refuse(refusals, &e.to_string(), body);
                return Ok(None);
            }
        };
        let ingested = Ingested {
            event: record.event.clone(),
            id: record.id.clone(),
        };
        self.stats.received(&ingested.event);
        let rx = ledger::submit(self.ledger.as_ref(), &self.journal, record, Some(cancel)).await?;
        Ok(Some(rx.map(move |result| (ingested, result)).boxed()))
    }

    /// Counts a commit's outcome. The debug line is the daemon's own word that
    /// a record is on disk (the crash tests hold it to that).
    fn count(&self, ingested: &Ingested, result: AppendReply) -> Result<(), SourceError> {
        let Ingested { event, id } = ingested;
        match result.map_err(|_| JournalError::Closed)? {
            Ok(AppendOutcome::Stored { seq, revision, .. }) => {
                self.stats.persisted(event);
                tracing::debug!(event = %event, record_id = %id, seq, revision, "persisted");
                Ok(())
            }
            Ok(AppendOutcome::Duplicate) => {
                self.stats.duplicate(event);
                tracing::debug!(event = %event, record_id = %id, "duplicate suppressed");
                Ok(())
            }
            Err(e) => Err(SourceError::Journal(e)),
        }
    }

    /// Counts a refused frame (always) and logs it (at most once per
    /// [`REFUSAL_LOG_INTERVAL`]: a flood of bad frames must not make journald
    /// drop the daemon's other lines).
    fn refuse(&self, refusals: &mut RefusalLog, why: &str, excerpt: &str) {
        self.stats.bad_frame();
        let Some(not_logged) = refusals.note(Instant::now()) else {
            return;
        };
        let excerpt: String = excerpt.chars().take(LOG_EXCERPT).collect();
        if not_logged == 0 {
            tracing::warn!(error = why, frame = %excerpt, "refused a WebSocket frame");
        } else {
            tracing::warn!(error = why, frame = %excerpt, not_logged, "refused a WebSocket frame (and more since the last line)");
        }
    }
}

/// The rate limit of the refused-frame warning: the first refusal of an
/// interval is logged, the rest are counted and reported with the next line.
#[derive(Debug, Default)]
struct RefusalLog {
    last_line: Option<Instant>,
    not_logged: u64,
}

impl RefusalLog {
    /// A refusal at `now`: `Some(refusals not logged since the last line)` when
    /// this one is to be logged, `None` when it is only counted.
    fn note(&mut self, now: Instant) -> Option<u64> {
        match self.last_line {
            Some(at) if now < at + REFUSAL_LOG_INTERVAL => {
                self.not_logged += 1;
                None
            }
            _ => {
                self.last_line = Some(now);
                Some(std::mem::take(&mut self.not_logged))
            }
        }
    }

    /// The count to report once the interval after the last line is over (so
    /// the tail of a burst is reported without waiting for another refusal).
    fn flush(&mut self, now: Instant) -> Option<u64> {
        match self.last_line {
            Some(at) if self.not_logged > 0 && now >= at + REFUSAL_LOG_INTERVAL => {
                self.last_line = Some(now);
                Some(std::mem::take(&mut self.not_logged))
            }
            _ => None,
        }
    }
}

/// What a failed `build_connection` (or a token-error frame) means for us.
async fn verdict(frame: &Frame, tokens: &TokenCache, token: &Token) -> End {
    let content = match frame {
        Frame::BuildConnection { content, .. } | Frame::Heartbeat { content, .. } => {
            content.clone()
        }
        other => format!("{other:?}"),
    };
    if frame.is_eviction() {
        End::Evicted(content)
    } else if frame.is_token_error() {
        tokens.invalidate(token).await;
        End::TokenRejected(content)
    } else {
        End::Refused(content)
    }
}

fn closed(frame: Option<&tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> End {
    match frame {
        Some(frame) if frame::is_eviction_text(frame.reason.as_str()) => {
            End::Evicted(frame.reason.to_string())
        }
        Some(frame) => End::Dropped(format!(
            "closed by Zoom (code {}, reason {:?})",
            u16::from(frame.code),
            frame.reason.as_str()
        )),
        None => End::Dropped("closed by Zoom".into()),
    }
}

/// Errors from the WebSocket stack may quote the request; the token must never
/// reach a log line.
fn redact(text: String, token: &Token) -> String {
    if token.expose().is_empty() {
        text
    } else {
        text.replace(token.expose(), "***")
    }
}

fn round_ms(delay: Duration) -> Duration {
    Duration::from_millis(delay.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_lines_are_rate_limited_and_the_rest_counted() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let mut log = RefusalLog::default();
        assert_eq!(log.note(at(0)), Some(0), "the first is logged");
        for _ in 0..949 {
            assert_eq!(log.note(at(1)), None);
        }
        assert_eq!(log.flush(at(9)), None, "the interval is not over");
        assert_eq!(
            log.note(at(10)),
            Some(949),
            "the next line carries the count"
        );
        assert_eq!(log.note(at(11)), None);
        assert_eq!(log.flush(at(19)), None);
        assert_eq!(
            log.flush(at(20)),
            Some(1),
            "the tail of a burst is reported"
        );
        assert_eq!(log.flush(at(40)), None, "nothing left to report");
        assert_eq!(log.note(at(40)), Some(0));
    }
}
