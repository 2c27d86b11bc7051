//! The NATS JetStream sink (DESIGN.md §3.6): one JetStream publish per record,
//! acknowledged to the journal only on the server's PubAck.
//!
//! Owns the connection (servers, credentials, TLS over the daemon's rustls
//! set-up; `async-nats` reconnects by itself), the subject (`subject`), the
//! headers (`Nats-Msg-Id` = `webhook-id`, `Zcc-Event`, `Zcc-Engagement-Id`,
//! `Nats-Expected-Stream`), the stream's inspection and optional creation, and
//! the classification of a publish's outcome ([`classify`]). The body is the
//! stored record itself, the bytes the http sink posts. Retry timing is not
//! its business; neither is pipelining: the worker keeps up to `max_in_flight`
//! deliveries going, each its own publish awaiting its own PubAck, so a
//! backlog drains at the server's pace, not one round trip per record.
//! Its keys are in `config`, the template in `subject`, `zcc-relay check` in
//! `check`.

mod check;
mod config;
pub mod subject;

pub use config::{NatsAuth, NatsConnection, NatsSinkConfig, NatsSinkSettings, connection};

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::{
    GetStreamErrorKind, PublishError, PublishErrorKind, RequestError, RequestErrorKind,
};
use async_nats::jetstream::{self, ErrorCode, stream};
use async_nats::{ConnectOptions, HeaderMap};

use crate::config::SinkCheck;
use crate::deliver::Envelope;
use crate::failure::Failure;
use crate::sink::{BuildContext, Finding, Kind, Reload};
use subject::{Template, Values};

/// The dedup window of a stream this sink creates, and the shortest one it
/// does not warn about: records retried after longer than the window are
/// stored twice (consumers dedupe on `Nats-Msg-Id` then).
pub const CREATED_DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 3600);
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);

pub struct NatsSink {
    name: String,
    // Boxed: both are large, and the registry's enum of running sinks is as
    // big as its largest variant.
    client: Box<async_nats::Client>,
    jetstream: Box<jetstream::Context>,
    stream: String,
    subject: Template,
    create_stream: bool,
    connection: Arc<Connection>,
    /// The stream was inspected (exists, replicas and window warned about);
    /// until then each delivered record tries again.
    inspected: AtomicBool,
}

/// What the connection's event callback learned, for classifying a publish
/// that got no answer.
#[derive(Default)]
struct Connection {
    /// Why the server refused us (authorization violation, a publish
    /// permission), until the next connection or accepted publish.
    refused: Mutex<Option<String>>,
    /// The last problem logged, so a reconnect loop logs each state once.
    last_logged: Mutex<Option<String>>,
    connected: tokio::sync::Notify,
    is_connected: AtomicBool,
}

impl NatsSink {
    /// Connects in the background (a server that is down is retried by the
    /// client, not a start-up failure); fails on set-up that can never work:
    /// an unreadable TLS file, a credentials file or nkey seed that is not one.
    pub async fn connect(
        settings: &NatsSinkSettings,
        context: &BuildContext<'_>,
    ) -> anyhow::Result<NatsSink> {
        let connection = Arc::new(Connection::default());
        let options = connect_options(&settings.connection(), context.tls, context.timeout)?
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback({
                let connection = connection.clone();
                let name = context.name.to_owned();
                move |event| {
                    let connection = connection.clone();
                    let name = name.clone();
                    async move { connection.on_event(&name, event) }
                }
            });
        let client = options
            .connect(
                settings
                    .servers
                    .iter()
                    .map(|url| url.as_str())
                    .collect::<Vec<_>>(),
            )
            .await
            .map_err(|error| anyhow::anyhow!("cannot set up the NATS connection: {error}"))?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(context.timeout)
            .build(client.clone());
        Ok(NatsSink {
            name: context.name.to_owned(),
            client: Box::new(client),
            jetstream: Box::new(jetstream),
            stream: settings.stream.clone(),
            subject: settings.subject.clone(),
            create_stream: settings.create_stream,
            connection,
            inspected: AtomicBool::new(false),
        })
    }

    pub async fn deliver(&self, envelope: &Envelope) -> Result<(), Failure> {
        let head: Head<'_> = serde_json::from_slice(&envelope.bytes)
            .map_err(|_| Failure::permanent("the stored record is not a JSON object"))?;
        let event = head.event.as_deref().unwrap_or_default();
        let subject = self.subject.render(&Values {
            account_id: head.payload.as_ref().and_then(|p| p.account_id.as_deref()),
            event: Some(event.strip_prefix("contact_center.").unwrap_or(event)),
            engagement_id: envelope.view.engagement_id.as_deref(),
        });
        let mut headers = HeaderMap::new();
        // The same id, escaped the same way, as the http sink's `webhook-id`.
        headers.insert(
            "Nats-Msg-Id",
            crate::escape::header_value(&envelope.webhook_id).as_ref(),
        );
        headers.insert("Nats-Expected-Stream", self.stream.as_str());
        headers.insert("Zcc-Event", crate::escape::header_value(event).as_ref());
        if let Some(engagement) = &envelope.view.engagement_id {
            headers.insert(
                "Zcc-Engagement-Id",
                crate::escape::header_value(engagement).as_ref(),
            );
        }
        let payload = bytes::Bytes::from_owner(envelope.bytes.clone());
        let size = payload.len();
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload)
            .headers(headers);
        let outcome = match self.jetstream.send_publish(subject.clone(), publish).await {
            Ok(ack) => ack.await,
            Err(error) => Err(error),
        };
        match outcome {
            // A duplicate is a record the stream already holds: delivered.
            Ok(_ack) => {
                self.connection.clear_refusal();
                if !self.inspected.load(Ordering::Relaxed) {
                    // The stream appeared after start-up: warn about it now.
                    let _ = self.inspect().await;
                }
                Ok(())
            }
            Err(error) => {
                let failure = classify(
                    &error,
                    &Published {
                        stream: &self.stream,
                        subject: &subject,
                        size,
                        max_payload: self.client.server_info().max_payload,
                        refused: self.connection.refusal(),
                        create_stream: self.create_stream,
                    },
                );
                if self.create_stream && error.kind() == PublishErrorKind::StreamNotFound {
                    // Create it now; this record is retried like any other.
                    self.inspect().await?;
                }
                Err(failure)
            }
        }
    }

    /// Looks the stream up (creating it when `create_stream` says so), warns
    /// once about a single replica or a short dedup window, and proves that
    /// the template's subjects land in it.
    async fn inspect(&self) -> Result<(), Failure> {
        let info = match self.jetstream.get_stream(&self.stream).await {
            Ok(stream) => stream.cached_info().clone(),
            Err(error) => match error.kind() {
                GetStreamErrorKind::JetStream(api)
                    if api.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    if !self.create_stream {
                        return Err(missing_stream(&self.stream, &self.subject));
                    }
                    self.create().await?
                }
                _ => return Err(request_failure(&error, &self.stream)),
            },
        };
        if self.inspected.swap(true, Ordering::Relaxed) {
            // Another delivery got here first and warned.
            return Ok(());
        }
        let config = &info.config;
        if config.num_replicas <= 1 {
            tracing::warn!(
                sink = %self.name,
                stream = %self.stream,
                "stream has one replica: an acknowledged record lives on one server, and NATS \
                 syncs it to disk only every 2 minutes by default; set sync_interval: always \
                 (server 2.10+) or use 3 replicas (README, durability)"
            );
        }
        if config.duplicate_window < MIN_DUPLICATE_WINDOW {
            tracing::warn!(
                sink = %self.name,
                stream = %self.stream,
                duplicate_window = ?config.duplicate_window,
                "stream's duplicate_window is under 1h: a record retried later than that is \
                 stored twice; consumers must dedupe on Nats-Msg-Id"
            );
        }
        Ok(())
    }

    async fn create(&self) -> Result<stream::Info, Failure> {
        let config = stream::Config {
            name: self.stream.clone(),
            subjects: vec![self.subject.stream_subject()],
            storage: stream::StorageType::File,
            duplicate_window: CREATED_DUPLICATE_WINDOW,
            ..Default::default()
        };
        match self.jetstream.get_or_create_stream(config).await {
            Ok(stream) => {
                tracing::info!(
                    sink = %self.name,
                    stream = %self.stream,
                    subjects = %self.subject.stream_subject(),
                    "created the stream (file storage, duplicate_window 2h)"
                );
                Ok(stream.cached_info().clone())
            }
            Err(error) => Err(Failure::setup(format!(
                "cannot create stream {}: {error}",
                self.stream
            ))),
        }
    }

    /// Waits up to `wait` for the connection; false when it did not come.
    async fn connected_within(&self, wait: Duration) -> bool {
        let notified = self.connection.connected.notified();
        if self.connection.is_connected.load(Ordering::Acquire)
            || self.client.connection_state() == async_nats::connection::State::Connected
        {
            return true;
        }
        tokio::time::timeout(wait, notified).await.is_ok()
    }
}

impl Connection {
    /// One log line per change of the connection's state; a refusal is kept
    /// for classifying the publishes it makes time out.
    fn on_event(&self, sink: &str, event: async_nats::Event) {
        use async_nats::{ClientError, Event, ServerError};
        let problem = match &event {
            Event::Connected => {
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
                *self.last_logged.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.is_connected.store(true, Ordering::Release);
                self.connected.notify_waiters();
                tracing::info!(sink = %sink, "connected to NATS");
                return;
            }
            Event::Disconnected => {
                self.is_connected.store(false, Ordering::Release);
                "disconnected; reconnecting".to_owned()
            }
            Event::ServerError(ServerError::AuthorizationViolation) => {
                self.refuse("the server refused the credentials (authorization violation)");
                "authorization violation".to_owned()
            }
            Event::ServerError(ServerError::Other(text)) => {
                if text.to_ascii_lowercase().contains("permissions violation") {
                    self.refuse(&format!(
                        "the server refused a publish: {}",
                        crate::escape::for_display(text, 200)
                    ));
                }
                format!("server error: {}", crate::escape::for_display(text, 200))
            }
            Event::ClientError(ClientError::Other(text)) => {
                if text.contains("authorization violation") || text.contains("signing nonce") {
                    self.refuse(&format!(
                        "the server refused the credentials ({})",
                        crate::escape::for_display(text, 100)
                    ));
                }
                format!("cannot connect: {}", crate::escape::for_display(text, 200))
            }
            Event::LameDuckMode => "server entering lame duck mode".to_owned(),
            // Only at shutdown, when the client is dropped.
            Event::Closed => return,
            other => format!("{other}"),
        };
        let mut last = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() != Some(problem.as_str()) {
            tracing::warn!(sink = %sink, problem = %problem, "NATS connection");
            *last = Some(problem);
        }
    }

    fn refuse(&self, reason: &str) {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
    }

    fn refusal(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn clear_refusal(&self) {
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if refused.is_some() {
            *refused = None;
        }
    }
}

/// The two fields of the record the subject and headers need beyond its view.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    payload: Option<PayloadHead<'a>>,
}

#[derive(serde::Deserialize)]
struct PayloadHead<'a> {
    #[serde(borrow, default)]
    account_id: Option<Cow<'a, str>>,
}

/// What [`classify`] knows about the publish that failed.
pub struct Published<'a> {
    pub stream: &'a str,
    pub subject: &'a str,
    /// The body's size.
    pub size: usize,
    /// The server's `max_payload` (0 before the first connection).
    pub max_payload: usize,
    /// Why the server refused this client, if it did.
    pub refused: Option<String>,
    pub create_stream: bool,
}

/// A failed publish → what the worker does (the table of §3.6): no stream
/// (no responders) is set-up unless the sink creates it; a refusal of the
/// credentials or of the subject is set-up; a record over `max_payload` or
/// the stream's `max_msg_size` is dead-lettered; anything that got no answer
/// is retried.
pub fn classify(error: &PublishError, published: &Published<'_>) -> Failure {
    let stream = published.stream;
    match error.kind() {
        PublishErrorKind::StreamNotFound if published.create_stream => Failure::retry(format!(
            "no stream captures {}; creating stream {stream}",
            published.subject
        )),
        PublishErrorKind::StreamNotFound => Failure::setup(format!(
            "no stream captures subject {} (no responders): create stream {stream} with \
             subjects covering it, or set create_stream = true",
            published.subject
        )),
        PublishErrorKind::MaxPayloadExceeded => Failure::permanent(format!(
            "the record ({} bytes) is above the server's max_payload ({} bytes)",
            published.size, published.max_payload
        )),
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => match &published.refused {
            Some(reason) => Failure::setup(format!(
                "{reason}; check the sink's credentials and the account's permissions \
                     (records wait)"
            )),
            None => Failure::retry(format!("no PubAck from stream {stream}: {error}")),
        },
        _ => match api_error(error) {
            Some(api) if api.error_code() == ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM => {
                Failure::permanent(format!(
                    "stream {stream} refused the record ({} bytes): above its max_msg_size",
                    published.size
                ))
                .with_code(api.error_code().0.to_string())
            }
            Some(api) if api.error_code() == ErrorCode::STREAM_NOT_MATCH => {
                Failure::setup(format!(
                    "subject {} is captured by another stream than {stream}: change `subject` or \
                 the streams' subjects",
                    published.subject
                ))
                .with_code(api.error_code().0.to_string())
            }
            Some(api)
                if api.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED
                    || api.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT =>
            {
                Failure::setup(format!("JetStream is not enabled for this account: {api}"))
                    .with_code(api.error_code().0.to_string())
            }
            Some(api) => Failure::retry(format!("stream {stream} refused the record: {api}"))
                .with_code(api.error_code().0.to_string()),
            None => Failure::retry(format!("publish to stream {stream} failed: {error}")),
        },
    }
}

/// The server's JetStream error inside a publish error, when it answered with one.
fn api_error(error: &PublishError) -> Option<&jetstream::Error> {
    std::error::Error::source(error)?.downcast_ref::<jetstream::Error>()
}

fn missing_stream(stream: &str, subject: &Template) -> Failure {
    Failure::setup(format!(
        "stream {stream} does not exist: create it with subjects {} (`nats stream add {stream} \
         --subjects '{}'`), or set create_stream = true",
        subject.stream_subject(),
        subject.stream_subject()
    ))
}

/// A stream look-up that failed other than "not found".
fn request_failure(
    error: &async_nats::jetstream::context::GetStreamError,
    stream: &str,
) -> Failure {
    let no_responders = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<RequestError>())
        .is_some_and(|request| request.kind() == RequestErrorKind::NoResponders);
    if no_responders {
        Failure::setup(format!(
            "JetStream does not answer (no responders) looking up stream {stream}: enable \
             JetStream on the server (-js) or for the account"
        ))
    } else {
        Failure::retry(format!("cannot look up stream {stream}: {error}"))
    }
}

/// The connection's options from the settings: credentials and TLS. Reads
/// the TLS files (bounded) and checks credentials whose format can be
/// checked offline; the errors name the key, never the secret. Shared with
/// the lease's connection (`lease::nats`).
pub fn connect_options(
    settings: &NatsConnection,
    tls: &std::sync::Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> anyhow::Result<ConnectOptions> {
    let read = |key: &str, path: &std::path::Path| -> anyhow::Result<String> {
        crate::config::read_bounded(path, 1024 * 1024)
            .map_err(|error| anyhow::anyhow!("{key} {}: {error}", path.display()))
    };
    let tls = if settings.tls_ca_file.is_some() || settings.tls_client.is_some() {
        let ca = match &settings.tls_ca_file {
            Some(path) => Some(read("tls_ca_file", path)?),
            None => None,
        };
        let client = match &settings.tls_client {
            Some((cert, key)) => Some((read("tls_cert_file", cert)?, read("tls_key_file", key)?)),
            None => None,
        };
        crate::tls::client_config_with(
            ca.as_deref().map(str::as_bytes),
            client.as_ref().map(|(c, k)| (c.as_bytes(), k.as_bytes())),
        )?
    } else {
        tls.clone()
    };
    let mut options = ConnectOptions::new()
        .name(concat!("zcc-relay/", env!("CARGO_PKG_VERSION")))
        .connection_timeout(timeout.min(Duration::from_secs(10)))
        // Only the servers the config names: a peer a server announces (its
        // INFO `connect_urls`) could otherwise get the credentials over a
        // scheme the operator never chose.
        .ignore_discovered_servers()
        .tls_client_config(rustls::ClientConfig::clone(&tls));
    if settings.servers.iter().any(|url| url.scheme() == "tls") {
        options = options.require_tls(true);
    }
    options = match &settings.auth {
        NatsAuth::None => options,
        NatsAuth::Credentials(creds) => options.credentials(creds.expose()).map_err(|_| {
            anyhow::anyhow!(
                "credentials_file is not a NATS credentials file: it needs a user JWT and an \
                 nkey seed block (as `nsc generate creds` writes)"
            )
        })?,
        NatsAuth::Token(token) => options.token(token.expose().trim().to_owned()),
        NatsAuth::NkeySeed(seed) => {
            let seed = seed.expose().trim();
            nkeys::KeyPair::from_seed(seed).map_err(|_| {
                anyhow::anyhow!(
                    "nkey_seed_file does not hold an nkey seed (a line starting with S)"
                )
            })?;
            options.nkey(seed.to_owned())
        }
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.expose().to_owned())
        }
    };
    Ok(options)
}

impl Kind for NatsSink {
    const TYPE: &'static str = "nats";
    const DEFAULT_EVENTS: &'static [&'static str] = &[];
    type Config = NatsSinkConfig;
    type Settings = NatsSinkSettings;

    fn validate(config: NatsSinkConfig, check: &mut SinkCheck<'_, '_>) -> Option<NatsSinkSettings> {
        config.validate(check)
    }

    fn reload(running: &NatsSinkSettings, loaded: &NatsSinkSettings) -> Reload<NatsSinkSettings> {
        running.reload(loaded)
    }

    async fn build(
        settings: &NatsSinkSettings,
        context: &BuildContext<'_>,
    ) -> anyhow::Result<NatsSink> {
        NatsSink::connect(settings, context).await
    }

    /// The connection comes up and the stream exists (or is created): its
    /// replicas and dedup window are warned about here.
    async fn ready(&self) -> Result<(), Failure> {
        if !self.connected_within(Duration::from_secs(10)).await {
            return Err(match self.connection.refusal() {
                Some(reason) => Failure::setup(reason),
                None => Failure::retry("no NATS server reachable yet; the client keeps trying"),
            });
        }
        self.inspect().await
    }

    /// Connects, and reads the server's and the stream's set-up; publishes nothing.
    async fn check(settings: &NatsSinkSettings, context: &BuildContext<'_>) -> Vec<Finding> {
        check::check(settings, context).await
    }

    fn apply(&self, _settings: &NatsSinkSettings) -> anyhow::Result<()> {
        // Every key needs a restart (`NatsSinkSettings::reload`).
        Ok(())
    }

    async fn deliver(&self, envelope: &Envelope) -> Result<(), Failure> {
        NatsSink::deliver(self, envelope).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::Class;

    fn published(refused: Option<&str>, create_stream: bool) -> Published<'static> {
        Published {
            stream: "ZCC",
            subject: "zcc.acc.recording_completed",
            size: 2048,
            max_payload: 1024,
            refused: refused.map(str::to_owned),
            create_stream,
        }
    }

    fn api(code: u64, description: &str) -> jetstream::Error {
        serde_json::from_value(serde_json::json!({
            "code": 400, "err_code": code, "description": description
        }))
        .unwrap()
    }

    fn check(error: PublishError, published: Published<'_>, class: Class, reason_has: &str) {
        let failure = classify(&error, &published);
        assert_eq!(failure.class, class, "{failure:?}");
        assert!(failure.reason.contains(reason_has), "{:?}", failure.reason);
    }

    #[test]
    fn publish_failures_are_classified() {
        let retry = Class::Retry { after: None };
        check(
            PublishError::new(PublishErrorKind::StreamNotFound),
            published(None, false),
            Class::Setup,
            "create stream ZCC",
        );
        check(
            PublishError::new(PublishErrorKind::StreamNotFound),
            published(None, true),
            retry.clone(),
            "creating stream ZCC",
        );
        check(
            PublishError::new(PublishErrorKind::TimedOut),
            published(None, false),
            retry.clone(),
            "no PubAck",
        );
        check(
            PublishError::new(PublishErrorKind::BrokenPipe),
            published(None, false),
            retry.clone(),
            "no PubAck",
        );
        check(
            PublishError::new(PublishErrorKind::TimedOut),
            published(Some("the server refused the credentials"), false),
            Class::Setup,
            "refused the credentials",
        );
        check(
            PublishError::new(PublishErrorKind::MaxPayloadExceeded),
            published(None, false),
            Class::Permanent,
            "max_payload (1024 bytes)",
        );
        check(
            PublishError::with_source(
                PublishErrorKind::Other,
                api(10054, "message size exceeds maximum allowed"),
            ),
            published(None, false),
            Class::Permanent,
            "max_msg_size",
        );
        check(
            PublishError::with_source(
                PublishErrorKind::Other,
                api(10060, "expected stream does not match"),
            ),
            published(None, false),
            Class::Setup,
            "another stream",
        );
        check(
            PublishError::with_source(
                PublishErrorKind::Other,
                api(10039, "jetstream not enabled for account"),
            ),
            published(None, false),
            Class::Setup,
            "JetStream is not enabled",
        );
        check(
            PublishError::with_source(
                PublishErrorKind::Other,
                api(10077, "resource limits exceeded"),
            ),
            published(None, false),
            retry.clone(),
            "refused the record",
        );
        check(
            PublishError::new(PublishErrorKind::MaxAckPending),
            published(None, false),
            retry,
            "failed",
        );
    }
}
