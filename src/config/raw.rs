//! The configuration file exactly as written: serde structs mirroring the TOML of
//! DESIGN §3.2.
//!
//! Owns the file's shape: which keys exist and their TOML types. Unknown keys are
//! rejected here, by name, in every table. Deliberately owns no defaults and no rules:
//! every value is optional and stays a string where it needs interpreting (durations,
//! URLs, addresses) or is an `i64` where a range applies, so that `validate` can report
//! every bad value with its key path instead of serde stopping at the first one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub zoom: ZoomConfig,
    pub websocket: WebsocketConfig,
    pub daemon: DaemonConfig,
    pub journal: JournalConfig,
    pub reconcile: ReconcileConfig,
    pub media: MediaConfig,
    pub metrics: MetricsConfig,
    pub sinks: Vec<SinkConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZoomConfig {
    pub account_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub subscription_id: Option<String>,
    pub oauth_url: Option<String>,
    pub api_base_url: Option<String>,
    pub websocket_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebsocketConfig {
    pub heartbeat_interval: Option<String>,
    pub idle_timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub reconnect_min: Option<String>,
    pub reconnect_max: Option<String>,
    pub max_frame_bytes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    pub log_level: Option<String>,
    pub drain_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    pub enabled: Option<bool>,
    pub on_reconnect: Option<bool>,
    pub interval: Option<String>,
    pub lookback: Option<String>,
    pub gap_margin: Option<String>,
    pub engagement_lookback: Option<String>,
    pub max_requests_per_second: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    pub enabled: Option<bool>,
    pub store: Option<String>,
    pub link_ttl: Option<String>,
    /// Lets media be fetched from plain `http://` URLs beyond loopback.
    pub allow_http: Option<bool>,
    /// Passed through to the object store; values are `toml::Value` so that
    /// `aws_allow_http = true` works and a table or array is reported with its key.
    pub options: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub listen: Option<String>,
    /// Lets `listen` name a non-loopback address (the endpoint has no authentication).
    pub allow_non_loopback: bool,
}

/// One `[[sinks]]` entry. A single flat struct for every sink type, so that a key of
/// the wrong type (`path` on an http sink) is reported as such rather than as unknown.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub path: Option<PathBuf>,
    pub events: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub max_in_flight: Option<i64>,
    pub retry_fast_window: Option<String>,
    pub retry_schedule: Option<Vec<String>>,
    pub retry_forever: Option<bool>,
}
