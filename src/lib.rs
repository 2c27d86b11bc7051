//! zcc-relay: Zoom Contact Center events, recordings and transcripts into the
//! systems a contact center keeps its records in, through a crash-safe journal.
//!
//! The data flow is source → journal → deliver → sink; see ARCHITECTURE.md.

pub mod app;
pub mod backoff;
pub mod body;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crm;
pub mod deliver;
pub mod escape;
pub mod failure;
pub mod interaction;
pub mod journal;
pub mod lease;
pub mod media;
pub mod oauth;
pub mod reconcile;
pub mod record;
pub mod route;
pub mod service;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod tls;
pub mod zoom;
