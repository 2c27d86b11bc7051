//! Where records go: one type per sink kind, and the error classification that
//! decides between retrying and dead-lettering.
//!
//! A sink delivers one record and says how it went; it never retries, never
//! touches the journal and never decides policy (that is `deliver/`).

pub mod file;
pub mod http;
pub mod route;

use std::time::Duration;

use crate::config::{SinkKind, SinkSettings};
use crate::record::RecordHeader;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SinkError {
    /// Worth trying again: the sink or the path to it is (we hope) temporarily
    /// unwell. `after` is the sink's own hint (`Retry-After`).
    #[error("{reason}")]
    Retryable {
        reason: String,
        status: Option<u16>,
        after: Option<Duration>,
    },
    /// Trying again will not help: the sink refuses this record.
    #[error("{reason}")]
    Permanent { reason: String, status: Option<u16> },
}

pub enum Sink {
    Http(http::HttpSink),
    File(file::FileSink),
}

impl Sink {
    /// The sink `settings` describe. A file sink's writer task registers its
    /// heartbeat with `health` (an HTTP sink has no task of its own).
    pub fn build(
        settings: &SinkSettings,
        tls: &std::sync::Arc<rustls::ClientConfig>,
        health: &crate::service::Health,
    ) -> anyhow::Result<Sink> {
        Ok(match &settings.kind {
            SinkKind::Http { url, secret } => Sink::Http(http::HttpSink::new(
                url.clone(),
                secret.as_ref(),
                settings.timeout,
                tls,
            )?),
            SinkKind::File { path } => Sink::File(file::FileSink::open_watched(
                path,
                health.register(format!("sink {} writer", settings.name)),
            )?),
        })
    }

    pub async fn deliver(&self, header: &RecordHeader<'_>, bytes: &[u8]) -> Result<(), SinkError> {
        match self {
            Sink::Http(sink) => sink.deliver(header, bytes).await,
            Sink::File(sink) => sink.deliver(bytes).await,
        }
    }
}
