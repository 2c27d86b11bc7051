//! Where records go: one type per sink kind, and the error classification that
//! decides between retrying and dead-lettering.
//!
//! A sink delivers one record and says how it went (a classified
//! [`Failure`]); it never retries, never touches the journal and never decides
//! policy (that is `deliver/`).

pub mod file;
pub mod http;
/// The event filter lives in `crate::route` (the journal uses it too); kept
/// here so `sink::route::EventFilter` paths still resolve.
pub use crate::route;

use crate::config::{SinkKind, SinkSettings};
use crate::deliver::Envelope;
use crate::failure::Failure;

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

    pub async fn deliver(&self, envelope: &Envelope) -> Result<(), Failure> {
        match self {
            Sink::Http(sink) => sink.deliver(envelope).await,
            Sink::File(sink) => sink.deliver(envelope).await,
        }
    }
}
