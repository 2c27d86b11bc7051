//! Running under systemd: readiness, status and watchdog notifications
//! (`notify`), the main loops' heartbeats and the watchdog task (`health`),
//! the `STATUS=` line (`status`), what SIGHUP may change (`reload`) and the
//! umask and file-descriptor limit the daemon sets itself at start (`limits`).
//!
//! Owns the conversation with the service manager. It decides nothing about
//! events, the journal or delivery; `app` wires it to the components, which
//! only beat their heartbeats (failing sinks reach the STATUS line through
//! `telemetry::stats::Stats`).

pub mod health;
pub mod limits;
pub mod notify;
pub mod reload;
pub mod status;

pub use health::{Health, Heartbeat};
pub use notify::Notifier;
