//! Test configs in typed form: a black-box mirror of the public configuration
//! contract (docs/contract.md §3.2: TOML, snake_case, unknown keys rejected) that
//! serializes to the TOML an operator writes. Tests change a field, never the
//! text; nothing here borrows the daemon's own config types, so the daemon's
//! parser is tested against this independent reading of the contract.
//!
//! Only the keys the tests use are here; a key left `None` is left out, so the
//! daemon's default applies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use zcc_relay::config::{FakeEnvironment, Settings};
use zcc_sim::Simulator;

/// The signing secret of every HTTP sink [`SinkTable::http`] builds.
pub const SINK_SECRET: &str = "whsec_dGVzdC1zaW5rLXNlY3JldC0xMjM0NTY3ODkw";

/// A whole config file.
#[derive(Clone, Debug, Serialize)]
pub struct TestConfig {
    pub zoom: ZoomTable,
    pub websocket: WebsocketTable,
    pub daemon: DaemonTable,
    pub journal: JournalTable,
    /// `None` leaves `[media]` out: media on, stored under the journal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaTable>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<ReconcileTable>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsTable>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby: Option<StandbyTable>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<SinkTable>,
}

/// `[standby]` (docs/contract.md §3.7).
#[derive(Clone, Debug, Default, Serialize)]
pub struct StandbyTable {
    pub lease_servers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ZoomTable {
    pub account_id: String,
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    pub subscription_id: String,
    pub oauth_url: String,
    pub api_base_url: String,
    pub websocket_url: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct WebsocketTable {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnect_min: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnect_max: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_frame_bytes: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DaemonTable {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct JournalTable {
    pub dir: PathBuf,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct MediaTable {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_ttl: Option<String>,
    /// `[media.options]`: passed to the object store as they are.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, toml::Value>,
}

impl MediaTable {
    /// `enabled = true`, everything else the default (stored under the journal).
    pub fn enabled() -> MediaTable {
        MediaTable {
            enabled: true,
            ..MediaTable::default()
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ReconcileTable {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookback: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap_margin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests_per_second: Option<u32>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct MetricsTable {
    pub listen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_non_loopback: Option<bool>,
}

impl MetricsTable {
    /// `listen = "127.0.0.1:0"`: any free port; the daemon says which
    /// (`Daemon::metrics_addr`, or its log: `support::metrics_addr_in`).
    pub fn any_port() -> MetricsTable {
        MetricsTable::at("127.0.0.1:0")
    }

    pub fn at(listen: impl ToString) -> MetricsTable {
        MetricsTable {
            listen: listen.to_string(),
            allow_non_loopback: None,
        }
    }
}

/// One `[[sinks]]` table.
#[derive(Clone, Debug, Serialize)]
pub struct SinkTable {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_fast_window: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_schedule: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_forever: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    pub org_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_property: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition_map: Option<std::collections::BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_updates_per_minute: Option<u32>,
}

impl SinkTable {
    fn of_kind(name: &str, kind: &str) -> SinkTable {
        SinkTable {
            name: name.to_owned(),
            kind: kind.to_owned(),
            url: None,
            secret: None,
            secret_file: None,
            path: None,
            events: None,
            timeout: None,
            max_in_flight: None,
            retry_fast_window: None,
            retry_schedule: None,
            retry_forever: None,
            instance_url: None,
            client_id: None,
            client_secret: None,
            requests_per_second: None,
            servers: None,
            stream: None,
            subject: None,
            create_stream: None,
            credentials_file: None,
            token_file: None,
            user: None,
            password_file: None,
            org_url: None,
            tenant_id: None,
            authority_url: None,
            api_base_url: None,
            unique_property: None,
            disposition_map: None,
            username: None,
            ticket_updates_per_minute: None,
        }
    }

    /// An HTTP sink posting to `url`, signed with [`SINK_SECRET`], 2 s timeout.
    pub fn http(name: &str, url: &str) -> SinkTable {
        SinkTable {
            url: Some(url.to_owned()),
            secret: Some(SINK_SECRET.to_owned()),
            timeout: Some("2s".to_owned()),
            ..SinkTable::of_kind(name, "http")
        }
    }

    /// A Salesforce sink on an org at `instance_url` (a `SalesforceFake`),
    /// 5 s timeout, durable retries every second, 100 requests a second.
    pub fn salesforce(name: &str, instance_url: &str, client_id: &str, secret: &str) -> SinkTable {
        SinkTable {
            instance_url: Some(instance_url.to_owned()),
            client_id: Some(client_id.to_owned()),
            client_secret: Some(secret.to_owned()),
            timeout: Some("5s".to_owned()),
            retry_fast_window: Some("2s".to_owned()),
            retry_schedule: Some(vec!["1s".to_owned()]),
            requests_per_second: Some(100),
            ..SinkTable::of_kind(name, "salesforce")
        }
    }

    /// A nats sink publishing to `stream` on the server at `url` (a
    /// `zcc_sim::sink::nats::NatsServer`), subjects
    /// `zcc.{account_id}.eng.{engagement_id}.{event}`, 2 s timeout, durable
    /// retries every second.
    pub fn nats(name: &str, url: &str, stream: &str) -> SinkTable {
        SinkTable {
            servers: Some(vec![url.to_owned()]),
            stream: Some(stream.to_owned()),
            subject: Some("zcc.{account_id}.eng.{engagement_id}.{event}".to_owned()),
            timeout: Some("2s".to_owned()),
            retry_fast_window: Some("2s".to_owned()),
            retry_schedule: Some(vec!["1s".to_owned()]),
            ..SinkTable::of_kind(name, "nats")
        }
    }

    /// A Dynamics 365 sink on a `DynamicsFake` (its URL is the environment
    /// and Entra ID's authority), 5 s timeout, durable retries every second,
    /// 100 requests a second.
    pub fn dynamics(name: &str, fake: &zcc_sim::sink::dynamics::DynamicsFake) -> SinkTable {
        SinkTable {
            org_url: Some(fake.url()),
            tenant_id: Some(fake.tenant_id()),
            authority_url: Some(fake.authority_url()),
            client_id: Some(fake.client_id()),
            client_secret: Some(fake.client_secret()),
            timeout: Some("5s".to_owned()),
            retry_fast_window: Some("2s".to_owned()),
            retry_schedule: Some(vec!["1s".to_owned()]),
            requests_per_second: Some(100),
            ..SinkTable::of_kind(name, "dynamics")
        }
    }

    /// A HubSpot sink on a `HubSpotFake`, its token in `token_file` (read
    /// again after a 401), 5 s timeout, durable retries every second, 100
    /// requests a second.
    pub fn hubspot(
        name: &str,
        fake: &zcc_sim::sink::hubspot::HubSpotFake,
        token_file: &Path,
    ) -> SinkTable {
        std::fs::write(token_file, format!("{}\n", fake.token())).expect("the token file");
        SinkTable {
            api_base_url: Some(fake.url()),
            token_file: Some(token_file.to_path_buf()),
            timeout: Some("5s".to_owned()),
            retry_fast_window: Some("2s".to_owned()),
            retry_schedule: Some(vec!["1s".to_owned()]),
            requests_per_second: Some(100),
            ..SinkTable::of_kind(name, "hubspot")
        }
    }

    /// A ServiceNow sink on a `ServiceNowFake` (OAuth client credentials at
    /// its `/oauth_token.do`), 5 s timeout, durable retries every second, 100
    /// requests a second.
    pub fn servicenow(name: &str, fake: &zcc_sim::sink::servicenow::ServiceNowFake) -> SinkTable {
        SinkTable {
            instance_url: Some(fake.url()),
            client_id: Some(fake.client_id()),
            client_secret: Some(fake.client_secret()),
            timeout: Some("5s".to_owned()),
            retry_fast_window: Some("2s".to_owned()),
            retry_schedule: Some(vec!["1s".to_owned()]),
            requests_per_second: Some(100),
            ..SinkTable::of_kind(name, "servicenow")
        }
    }

    /// A Zendesk sink on a `ZendeskFake` (OAuth client credentials), 5 s
    /// timeout, durable retries every second, 100 requests a second and
    /// 6000 ticket updates a minute.
    pub fn zendesk(name: &str, fake: &zcc_sim::sink::zendesk::ZendeskFake) -> SinkTable {
        SinkTable {
            url: Some(fake.url()),
            client_id: Some(fake.client_id()),
            client_secret: Some(fake.client_secret()),
            timeout: Some("5s".to_owned()),
            retry_fast_window: Some("2s".to_owned()),
            retry_schedule: Some(vec!["1s".to_owned()]),
            requests_per_second: Some(100),
            ticket_updates_per_minute: Some(6000),
            ..SinkTable::of_kind(name, "zendesk")
        }
    }

    /// A file sink appending to `path`.
    pub fn file(name: &str, path: &Path) -> SinkTable {
        SinkTable {
            path: Some(path.to_path_buf()),
            ..SinkTable::of_kind(name, "file")
        }
    }
}

impl TestConfig {
    /// Pointing at `sim`, with its journal in `journal`, fast socket timings,
    /// media off (`enabled = false`), no sinks.
    pub fn new(sim: &Simulator, journal: &Path) -> TestConfig {
        let account = sim.config();
        let some = |text: &str| Some(text.to_owned());
        TestConfig {
            zoom: ZoomTable {
                account_id: account.account_id.clone(),
                client_id: account.client_id.clone(),
                client_secret: Some(account.client_secret.clone()),
                client_secret_file: None,
                subscription_id: account.subscription_id.clone(),
                oauth_url: sim.oauth_url().to_string(),
                api_base_url: sim.api_base_url().to_string(),
                websocket_url: sim.websocket_url().to_string(),
            },
            websocket: WebsocketTable {
                heartbeat_interval: some("1s"),
                idle_timeout: some("5s"),
                connect_timeout: some("5s"),
                reconnect_min: some("50ms"),
                reconnect_max: some("500ms"),
                max_frame_bytes: None,
            },
            daemon: DaemonTable {
                log_level: some("info"),
                drain_timeout: some("2s"),
            },
            journal: JournalTable {
                dir: journal.to_path_buf(),
            },
            media: Some(MediaTable::default()),
            reconcile: None,
            metrics: None,
            standby: None,
            sinks: Vec::new(),
        }
    }

    /// With `sink` appended to `[[sinks]]`.
    pub fn sink(mut self, sink: SinkTable) -> TestConfig {
        self.sinks.push(sink);
        self
    }

    /// The `[reconcile]` table, created empty (all defaults) when absent.
    pub fn reconcile_mut(&mut self) -> &mut ReconcileTable {
        self.reconcile.get_or_insert_with(ReconcileTable::default)
    }

    /// The TOML text of this config.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| panic!("test config to TOML: {e}"))
    }

    /// Parsed and validated the way the daemon does (with no credential
    /// files or environment).
    pub fn settings(&self) -> Settings {
        settings(&self.to_toml())
    }

    /// Written to `path`, for the real binary.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.to_toml()).unwrap();
        path.to_path_buf()
    }
}

/// A config file's text parsed and validated the way the daemon does.
pub fn settings(text: &str) -> Settings {
    match zcc_relay::config::parse(text, &FakeEnvironment::new()) {
        Ok(loaded) => loaded.settings,
        Err(e) => panic!("test config is invalid:\n{e}\n{text}"),
    }
}
