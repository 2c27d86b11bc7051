//! zcc-relay: Zoom Contact Center events, recordings and transcripts into the
//! systems a contact center keeps its records in, through a crash-safe journal.
//!
//! The data flow is source → journal → deliver → sink; see ARCHITECTURE.md.

pub mod app;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod deliver;
pub mod demo;
pub mod escape;
pub mod journal;
pub mod media;
pub mod queue;
pub mod reconcile;
pub mod record;
pub mod service;
pub mod sim;
pub mod sink;
pub mod source;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod zoom;
