//! The configuration file exactly as written: serde structs mirroring the TOML of
//! docs/contract.md §3.2.
//!
//! Owns the file's shape: which keys exist and their TOML types. Unknown keys are
//! rejected here, by name, in every table. Deliberately owns no defaults and no rules:
//! every value is optional and stays a string where it needs interpreting (durations,
//! URLs, addresses) or is an `i64` where a range applies, so that `validate` can report
//! every bad value with its key path instead of serde stopping at the first one. A
//! sink kind's own keys are only collected here (`SinkConfig::kind_keys`); their
//! shape is the kind's raw struct (`sink/<kind>/config.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use crate::sink::{Registry, SinkKind};

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
    pub standby: Option<StandbyConfig>,
    pub sinks: Vec<SinkConfig>,
}

/// `[standby]` (docs/contract.md §3.7): the lease's own keys, and the nats
/// sink's connection keys under the same names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StandbyConfig {
    pub lease_servers: Option<Vec<String>>,
    pub bucket: Option<String>,
    pub ttl: Option<String>,
    pub credentials: Option<String>,
    pub credentials_file: Option<PathBuf>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub nkey_seed: Option<String>,
    pub nkey_seed_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
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

/// One `[[sinks]]` entry: the keys every sink has, typed here, and the keys of
/// its kind, kept as TOML values (in the file's order) for the kind's own raw
/// table to take once `type` is known (`config::SinkCheck::kind`).
///
/// A key that is neither common nor any registered kind's is rejected here, by
/// serde, with its line; a key of another kind (`path` on an http sink) passes
/// here and is reported by validation as not used by that type.
pub struct SinkConfig<R = SinkKind> {
    pub name: Option<String>,
    /// `type`.
    pub kind: Option<String>,
    pub events: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub max_in_flight: Option<i64>,
    pub retry_fast_window: Option<String>,
    pub retry_schedule: Option<Vec<String>>,
    pub retry_forever: Option<bool>,
    /// The kind's keys with their values, in the file's order.
    pub kind_keys: Vec<(String, toml::Value)>,
    registry: PhantomData<fn() -> R>,
}

/// The keys every sink has, whatever its kind.
pub const COMMON_SINK_KEYS: &[&str] = &[
    "name",
    "type",
    "events",
    "timeout",
    "max_in_flight",
    "retry_fast_window",
    "retry_schedule",
    "retry_forever",
];

impl<R> Default for SinkConfig<R> {
    fn default() -> Self {
        SinkConfig {
            name: None,
            kind: None,
            events: None,
            timeout: None,
            max_in_flight: None,
            retry_fast_window: None,
            retry_schedule: None,
            retry_forever: None,
            kind_keys: Vec::new(),
            registry: PhantomData,
        }
    }
}

/// The kind keys are listed by name only: their values may be inline secrets.
impl<R> fmt::Debug for SinkConfig<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind_keys: Vec<&str> = self.kind_keys.iter().map(|(key, _)| key.as_str()).collect();
        f.debug_struct("SinkConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("events", &self.events)
            .field("timeout", &self.timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("retry_fast_window", &self.retry_fast_window)
            .field("retry_schedule", &self.retry_schedule)
            .field("retry_forever", &self.retry_forever)
            .field("kind_keys", &kind_keys)
            .finish()
    }
}

impl<'de, R: Registry> Deserialize<'de> for SinkConfig<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SinkVisitor::<R>(PhantomData))
    }
}

struct SinkVisitor<R>(PhantomData<fn() -> R>);

impl<'de, R: Registry> Visitor<'de> for SinkVisitor<R> {
    type Value = SinkConfig<R>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sink table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SinkConfig<R>, A::Error> {
        let kind_keys = R::keys();
        let mut sink = SinkConfig::<R>::default();
        while let Some(key) = map.next_key_seed(SinkKey {
            kind_keys: &kind_keys,
        })? {
            match key.as_str() {
                "name" => sink.name = Some(map.next_value()?),
                "type" => sink.kind = Some(map.next_value()?),
                "events" => sink.events = Some(map.next_value()?),
                "timeout" => sink.timeout = Some(map.next_value()?),
                "max_in_flight" => sink.max_in_flight = Some(map.next_value()?),
                "retry_fast_window" => sink.retry_fast_window = Some(map.next_value()?),
                "retry_schedule" => sink.retry_schedule = Some(map.next_value()?),
                "retry_forever" => sink.retry_forever = Some(map.next_value()?),
                _ => {
                    let value: toml::Value = map.next_value()?;
                    sink.kind_keys.push((key, value));
                }
            }
        }
        Ok(sink)
    }
}

/// A key of a sink table, refused (while serde still knows its position) when
/// no kind takes it.
struct SinkKey<'k> {
    kind_keys: &'k [&'static str],
}

impl<'de> DeserializeSeed<'de> for SinkKey<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for SinkKey<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sink key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        if COMMON_SINK_KEYS.contains(&key) || self.kind_keys.contains(&key) {
            return Ok(key.to_owned());
        }
        let expected: Vec<String> = COMMON_SINK_KEYS
            .iter()
            .chain(self.kind_keys)
            .map(|key| format!("`{key}`"))
            .collect();
        Err(E::custom(format_args!(
            "unknown field `{key}`, expected one of {}",
            expected.join(", ")
        )))
    }
}
