//! Logs and counters: where tracing output goes (journald under systemd, stderr
//! otherwise) and the in-process counts that the demo summary and, later, the
//! metrics endpoint read.
//!
//! Owns no policy: components report what happened, this module records it.

pub mod metrics;
pub mod stats;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::Registry;
use tracing_subscriber::filter::{FilterFn, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

/// tungstenite traces the raw upgrade request, whose query string carries the
/// access token, so its TRACE level never reaches any output, whatever
/// `RUST_LOG` says.
fn never_secrets() -> FilterFn {
    filter_fn(|meta| {
        !(meta.target().starts_with("tungstenite") && *meta.level() == tracing::Level::TRACE)
    })
}

/// Changes the log level of the running process (SIGHUP). Cloneable; a no-op
/// when the subscriber was installed by someone else (tests).
#[derive(Clone, Default)]
pub struct LogControl {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
    /// `RUST_LOG` was set at start and keeps precedence over the config.
    from_env: bool,
}

impl LogControl {
    /// Applies `level` (an `EnvFilter` directive string). Refused when
    /// `RUST_LOG` decides the level or the directives do not parse.
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        if self.from_env {
            return Err("RUST_LOG is set and overrides daemon.log_level".to_owned());
        }
        let filter = EnvFilter::try_new(level).map_err(|e| format!("{level:?}: {e}"))?;
        match &self.handle {
            Some(handle) => handle.reload(filter).map_err(|e| e.to_string()),
            None => Err("logging is not controlled by this daemon".to_owned()),
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides `level`. Under systemd
/// (`JOURNAL_STREAM` set) logs go straight to journald with structured fields;
/// if journald cannot be reached they fall back to stderr. The returned
/// [`LogControl`] changes the level later.
pub fn init(level: &str) -> LogControl {
    let from_env = std::env::var_os(EnvFilter::DEFAULT_ENV).is_some();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let control = |installed: bool| LogControl {
        handle: installed.then_some(handle.clone()),
        from_env,
    };
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        let installed = registry.with(journald_layer(journald)).try_init().is_ok();
        return control(installed);
    }
    // Colour only for a person at a terminal, never into files or pipes.
    let stderr = tracing_subscriber::fmt::layer()
        .fmt_fields(escaped_fields())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(never_secrets());
    let installed = registry.with(stderr).try_init().is_ok();
    control(installed)
}

/// The longest field value a stderr log line shows (the rest is cut with a marker).
pub const MAX_LOG_VALUE_CHARS: usize = 1024;

/// The stderr format's fields (`message key=value …`, as tracing-subscriber
/// writes them), each value passed through `escape::for_display`: a value
/// holding a newline or an escape sequence (an event name, an id, an error
/// quoting Zoom) cannot forge a line or reach the terminal raw, and a 1 MB id
/// costs a line of about 1 KB.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        let shown = crate::escape::for_display(&text, MAX_LOG_VALUE_CHARS);
        if field.name() == "message" {
            write!(writer, "{shown}")
        } else {
            write!(writer, "{}={shown}", field.name())
        }
    })
    .delimited(" ")
}

/// Every event field becomes a journald field named in upper case (`sink` →
/// `SINK=`, `record_id` → `RECORD_ID=`, `error` → `ERROR=`), so
/// `journalctl -u zcc-relay SINK=crm` selects one sink's lines; the level
/// becomes `PRIORITY=` (error 3, warn 4, info 5, debug 6, trace 7).
fn journald_layer<S>(journald: tracing_journald::Layer) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    journald
        // Unprefixed: `SINK=`, not tracing-journald's default `F_SINK=`.
        .with_field_prefix(None)
        .with_syslog_identifier("zcc-relay".into())
        .with_filter(never_secrets())
}
