//! Logs and counters: where tracing output goes (journald under systemd, stderr
//! otherwise) and the in-process counts that the demo summary and, later, the
//! metrics endpoint read.
//!
//! Owns no policy: components report what happened, this module records it.

pub mod metrics;
pub mod stats;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterFn, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// tungstenite traces the raw upgrade request, whose query string carries the
/// access token, so its TRACE level never reaches any output, whatever
/// `RUST_LOG` says.
fn never_secrets() -> FilterFn {
    filter_fn(|meta| {
        !(meta.target().starts_with("tungstenite") && *meta.level() == tracing::Level::TRACE)
    })
}

/// Installs the global subscriber. `RUST_LOG` overrides `level`. Under systemd
/// (`JOURNAL_STREAM` set) logs go straight to journald with structured fields;
/// if journald cannot be reached they fall back to stderr.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        let journald = journald
            .with_syslog_identifier("zcc-relay".into())
            .with_filter(never_secrets());
        let _ = registry.with(journald).try_init();
        return;
    }
    // Colour only for a person at a terminal, never into files or pipes.
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(never_secrets());
    let _ = registry.with(stderr).try_init();
}
