//! Configuration: the TOML file of docs/contract.md §3.2 turned into validated [`Settings`].
//!
//! Owns the validated types, their defaults, the error and problem types, and the two
//! entry points [`load`] (real file, real environment) and [`parse`] (text plus an
//! injected [`Environment`]). The file's shape lives in `raw.rs`, the rules in
//! `validate.rs`, the `[[sinks]]` tables' common keys in `sink.rs`; each sink
//! kind's own keys and rules live with the kind (`sink/<kind>/`), reached
//! through the registry. Deliberately knows nothing about what the daemon does with a
//! setting: no I/O beyond reading the config and secret files, no logging (warnings are
//! returned, the caller decides how to show them).

mod env;
mod raw;
mod secret;
mod sink;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use env::{
    CONFIG_FILE_LIMIT, Environment, FakeEnvironment, SECRET_FILE_LIMIT, SystemEnvironment,
    read_bounded,
};
pub use raw::{
    DaemonConfig, JournalConfig, MediaConfig, MetricsConfig, RawConfig, ReconcileConfig,
    SinkConfig, WebsocketConfig, ZoomConfig,
};
pub use secret::Secret;
pub use sink::{SinkCheck, parse_sink};
pub use validate::{validate, validate_with};

/// A sink's kind settings: the registry's enum, re-exported where the rest of
/// the settings are.
pub use crate::sink::SinkKind;

/// Where the commands look for the configuration unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/zcc-relay/config.toml";

/// Whether validation reads the secrets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrets {
    /// Read every secret; an unreadable or missing one is a problem (`run`,
    /// `validate`, `reconcile`: they talk to Zoom and the sinks).
    Read,
    /// Read none: each secret a file, credential or variable would supply is
    /// taken as present and left empty. For the commands that only read the
    /// journal (`status`, `queue`), which an operator runs by hand, outside the
    /// service, where systemd's credential files do not exist.
    Skip,
}

/// Reads the file at `path` and validates it against the real process environment.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    load_with(path, Secrets::Read)
}

/// [`load`], reading the secrets or not (see [`Secrets`]).
pub fn load_with(path: &Path, secrets: Secrets) -> Result<Loaded, ConfigError> {
    let env = SystemEnvironment;
    let text = read_bounded(path, CONFIG_FILE_LIMIT).map_err(|error| {
        ConfigError::from(FileError::Unreadable {
            path: path.to_owned(),
            error,
        })
    })?;
    let raw: RawConfig =
        toml::from_str(&text).map_err(|error| ConfigError::from(FileError::toml(&text, &error)))?;
    let exposed = match env::shared_read_bits(path) {
        Some(mode) => inline_secret_keys(&raw)
            .into_iter()
            .map(|key| {
                Problem::new(
                    key,
                    format!(
                        "an inline secret in {} (mode {mode:04o}), which its group or others \
                         can read; move it to a *_file or a systemd credential",
                        path.display()
                    ),
                )
            })
            .collect(),
        None => Vec::new(),
    };
    match validate_with(raw, &env, secrets) {
        Ok(mut loaded) => {
            loaded.warnings.extend(exposed);
            Ok(loaded)
        }
        Err(mut error) => {
            error.warnings.extend(exposed);
            Err(error)
        }
    }
}

/// The keys that hold a secret inline in the file: the Zoom client secret, a
/// sink kind's secrets (`secret`, `client_secret`, `password`, …: any kind key
/// that names a credential and is not a `_file`), and the `[media.options]`
/// that name one.
fn inline_secret_keys(raw: &RawConfig) -> Vec<String> {
    let mut keys = Vec::new();
    if raw.zoom.client_secret.is_some() {
        keys.push("zoom.client_secret".to_owned());
    }
    for (index, sink) in raw.sinks.iter().enumerate() {
        for (key, _) in &sink.kind_keys {
            if names_a_credential(key) {
                keys.push(format!("sinks[{index}].{key}"));
            }
        }
    }
    for key in raw.media.options.keys() {
        if names_a_credential(key) {
            keys.push(format!("media.options.{key}"));
        }
    }
    keys
}

/// A key whose value is a credential written inline (not a `_file` naming
/// one, not an `_id`).
fn names_a_credential(key: &str) -> bool {
    let credential = ["secret", "key", "token", "password", "sas", "credentials"]
        .iter()
        .any(|word| key.contains(word));
    credential && !key.ends_with("_file") && !key.ends_with("_id")
}

/// Parses TOML text and validates it; `env` supplies variables, secret files and the
/// current directory.
pub fn parse(text: &str, env: &dyn Environment) -> Result<Loaded, ConfigError> {
    parse_with(text, env, Secrets::Read)
}

/// [`parse`], reading the secrets or not (see [`Secrets`]).
pub fn parse_with(
    text: &str,
    env: &dyn Environment,
    secrets: Secrets,
) -> Result<Loaded, ConfigError> {
    let raw: RawConfig =
        toml::from_str(text).map_err(|error| ConfigError::from(FileError::toml(text, &error)))?;
    validate_with(raw, env, secrets)
}

/// A valid configuration plus what looked odd about it. Warnings never stop the daemon;
/// the caller logs them (or `zcc-relay validate` prints them).
#[derive(Clone, Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub warnings: Vec<Problem>,
}

/// One finding, tied to the key it is about, e.g. `sinks[1].url` or `websocket.idle_timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why there are no [`Settings`]. Either the file could not be read or parsed (`file`
/// is set, `problems` empty), or it parsed and `problems` lists every value that cannot
/// work. `warnings` are kept so that `zcc-relay validate` can show everything in one run.
///
/// `Display` prints one problem per line (then the warnings, prefixed `warning: `); it
/// already contains the underlying I/O or TOML message, so there is no `source()` to
/// print twice.
#[derive(Debug, thiserror::Error)]
#[error("{}", render_error(.file, .problems, .warnings))]
pub struct ConfigError {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
    /// Boxed: toml's error is large and this travels through every `Result` here.
    pub file: Option<Box<FileError>>,
}

/// The file itself is unusable, before any value is looked at.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {}: {error}", path.display())]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    /// toml's message names the key for unknown or mistyped keys. Only the
    /// message and the position are kept: toml's own rendering (and its
    /// `Debug`) quote the file, and the offending line may carry an inline
    /// secret (a misspelt `client_secret = "…"` is an unknown key on the line
    /// that holds the secret).
    #[error("TOML parse error at {}: {message}", position.map_or("an unknown position".to_owned(), |(line, column)| format!("line {line}, column {column}")))]
    Toml {
        message: String,
        /// Line and column (1-based) where the problem starts.
        position: Option<(usize, usize)>,
    },
}

impl FileError {
    fn toml(text: &str, error: &toml::de::Error) -> FileError {
        let position = error
            .span()
            .and_then(|span| text.get(..span.start))
            .map(|before| {
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                (
                    before.matches('\n').count() + 1,
                    before[line_start..].chars().count() + 1,
                )
            });
        FileError::Toml {
            message: error.message().trim().to_owned(),
            position,
        }
    }
}

impl From<FileError> for ConfigError {
    fn from(file: FileError) -> Self {
        ConfigError {
            problems: Vec::new(),
            warnings: Vec::new(),
            file: Some(Box::new(file)),
        }
    }
}

fn render_error(
    file: &Option<Box<FileError>>,
    problems: &[Problem],
    warnings: &[Problem],
) -> String {
    let mut lines: Vec<String> = Vec::new();
    if let Some(file) = file {
        lines.push(file.to_string().trim_end().to_owned());
    }
    lines.extend(problems.iter().map(Problem::to_string));
    lines.extend(warnings.iter().map(|warning| format!("warning: {warning}")));
    lines.join("\n")
}

/// The whole validated configuration: no `Option` left where a default exists
/// (docs/contract.md §3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub zoom: ZoomSettings,
    pub websocket: WebsocketSettings,
    pub daemon: DaemonSettings,
    pub journal: JournalSettings,
    pub reconcile: ReconcileSettings,
    pub media: MediaSettings,
    pub metrics: MetricsSettings,
    /// `[standby]`: an active/standby pair through a NATS KV lease; `None`
    /// runs alone, as always.
    pub standby: Option<StandbySettings>,
    pub sinks: Vec<SinkSettings>,
}

/// The lease of an active/standby pair (docs/contract.md §3.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandbySettings {
    pub connection: crate::sink::nats::NatsConnection,
    /// The lease bucket (history 1, `max_age` = `ttl`); the last-live
    /// instant lives in `<bucket>_state`, which has no short `max_age`.
    pub bucket: String,
    pub ttl: Duration,
}

pub const DEFAULT_LEASE_BUCKET: &str = "zcc_relay";
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

impl Settings {
    pub fn sink(&self, name: &str) -> Option<&SinkSettings> {
        self.sinks.iter().find(|sink| sink.name == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoomSettings {
    pub account_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub subscription_id: String,
    pub oauth_url: url::Url,
    pub api_base_url: url::Url,
    pub websocket_url: url::Url,
}

/// Zoom production endpoints, the defaults of `[zoom]`.
const ZOOM_OAUTH_URL: &str = "https://zoom.us/oauth/token";
const ZOOM_API_BASE_URL: &str = "https://api.zoom.us/v2";
const ZOOM_WEBSOCKET_URL: &str = "wss://ws.zoom.us/ws";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebsocketSettings {
    pub heartbeat_interval: Duration,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub max_frame_bytes: usize,
}

impl Default for WebsocketSettings {
    fn default() -> Self {
        WebsocketSettings {
            heartbeat_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(75),
            connect_timeout: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(60),
            max_frame_bytes: 4_194_304,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSettings {
    /// An `EnvFilter` directive string; `RUST_LOG` overrides it.
    pub log_level: String,
    pub drain_timeout: Duration,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            log_level: "info".to_owned(),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalSettings {
    /// As configured; relative paths are relative to the daemon's working directory.
    pub dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconcileSettings {
    pub enabled: bool,
    pub on_reconnect: bool,
    pub interval: Duration,
    pub lookback: Duration,
    pub gap_margin: Duration,
    pub engagement_lookback: Duration,
    pub max_requests_per_second: u32,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        ReconcileSettings {
            enabled: true,
            on_reconnect: true,
            interval: Duration::from_secs(3600),
            lookback: Duration::from_secs(48 * 3600),
            gap_margin: Duration::from_secs(15 * 60),
            engagement_lookback: Duration::from_secs(6 * 3600),
            max_requests_per_second: 5,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaSettings {
    pub enabled: bool,
    pub store: url::Url,
    pub link_ttl: Duration,
    /// Fetch media from plain `http://` URLs beyond loopback (default: refused).
    pub allow_http: bool,
    /// object_store options, `*_file` keys already read and renamed. All are `Secret`
    /// because some are (access keys) and the store needs only strings.
    pub options: BTreeMap<String, Secret>,
}

const DEFAULT_LINK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl MediaSettings {
    /// Media enabled, stored under `<journal_dir>/media`, the way `validate` defaults it.
    /// A relative `journal_dir` is resolved against the current directory; this fails
    /// only when that directory is unknown.
    pub fn default_for(journal_dir: &Path) -> Result<MediaSettings, ConfigError> {
        let cwd = SystemEnvironment.current_dir();
        match default_media_store(journal_dir, &cwd) {
            Some(store) => Ok(MediaSettings {
                enabled: true,
                store,
                link_ttl: DEFAULT_LINK_TTL,
                allow_http: false,
                options: BTreeMap::new(),
            }),
            None => Err(ConfigError {
                problems: vec![unresolvable_media_store(journal_dir)],
                warnings: Vec::new(),
                file: None,
            }),
        }
    }
}

/// `file://<journal dir>/media`, absolute because a `file:` URL cannot be relative.
fn default_media_store(journal_dir: &Path, cwd: &Path) -> Option<url::Url> {
    url::Url::from_file_path(cwd.join(journal_dir).join("media")).ok()
}

fn unresolvable_media_store(journal_dir: &Path) -> Problem {
    Problem::new(
        "media.store",
        format!(
            "no default: journal.dir {:?} is relative and the current directory is unknown; \
             set media.store",
            journal_dir.display().to_string()
        ),
    )
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Loopback only; `None` means no metrics endpoint.
    pub listen: Option<SocketAddr>,
}

/// One sink: the keys every sink has, and its kind's settings (`K`, the
/// daemon's [`SinkKind`] unless a test brings its own registry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkSettings<K = SinkKind> {
    pub name: String,
    /// Globs on the full event name (`*` any run, `?` one character); empty = all events.
    pub events: Vec<String>,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub retry_fast_window: Duration,
    pub retry_schedule: Vec<Duration>,
    /// Repeat the last `retry_schedule` delay forever instead of dead-lettering.
    pub retry_forever: bool,
    pub kind: K,
}

const DEFAULT_SINK_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_IN_FLIGHT: usize = 8;
const DEFAULT_RETRY_FAST_WINDOW: Duration = Duration::from_secs(60);
const DEFAULT_RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

impl<K: crate::sink::Registry> SinkSettings<K> {
    /// A sink with the defaults (docs/contract.md §3.2): the kind's default events (all, for
    /// http and file), 10 s timeout, 8 in flight, 60 s of fast retries, then the durable
    /// schedule, then dead-letter.
    pub fn new(name: impl Into<String>, kind: K) -> Self {
        SinkSettings {
            name: name.into(),
            events: kind
                .default_events()
                .iter()
                .map(|event| (*event).to_owned())
                .collect(),
            timeout: DEFAULT_SINK_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            retry_fast_window: DEFAULT_RETRY_FAST_WINDOW,
            retry_schedule: DEFAULT_RETRY_SCHEDULE.to_vec(),
            retry_forever: false,
            kind,
        }
    }
}

/// The commented `[[sinks]]` block of config.toml.example whose `name` is
/// `name`, uncommented (for each sink kind's test that its documented block
/// validates).
#[cfg(test)]
pub(crate) fn example_sink_block(name: &str) -> String {
    let example = include_str!("../../config.toml.example");
    let start = example
        .find(&format!("# name = \"{name}\""))
        .unwrap_or_else(|| panic!("config.toml.example has no {name} block"));
    example[start..]
        .lines()
        .take_while(|line| line.starts_with("# ") && !line.starts_with("# [[sinks]]"))
        .map(|line| format!("{}\n", &line[2..]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::file::FileSinkSettings;
    use crate::sink::http::HttpSinkSettings;

    const EXAMPLE: &str = include_str!("../../config.toml.example");

    /// The example is the documentation users copy; it must load as-is, without a
    /// single warning, given the secret files it names.
    #[test]
    fn example_file_is_valid_and_quiet() {
        let env = FakeEnvironment::new()
            .with_file(
                "/run/credentials/zcc-relay.service/zoom-client-secret",
                "zoom-secret\n",
            )
            .with_file(
                "/run/credentials/zcc-relay.service/crm-signing-secret",
                "whsec_c2VjcmV0\n",
            );
        let loaded = match parse(EXAMPLE, &env) {
            Ok(loaded) => loaded,
            Err(error) => panic!("config.toml.example does not load:\n{error}"),
        };
        assert_eq!(loaded.warnings, []);

        let settings = loaded.settings;
        assert_eq!(settings.zoom.client_secret.expose(), "zoom-secret");
        assert_eq!(settings.websocket, WebsocketSettings::default());
        assert_eq!(settings.daemon, DaemonSettings::default());
        assert_eq!(settings.reconcile, ReconcileSettings::default());
        assert_eq!(settings.metrics, MetricsSettings::default());
        assert_eq!(settings.journal.dir, Path::new("/var/lib/zcc-relay"));
        assert_eq!(
            settings.media.store.as_str(),
            "file:///var/lib/zcc-relay/media"
        );
        let crm = settings.sink("crm").map(|sink| &sink.kind);
        let expected_crm = SinkKind::Http(HttpSinkSettings {
            url: url::Url::parse("https://crm.example.com/zoom").unwrap(),
            secret: Some(Secret::new("whsec_c2VjcmV0".to_owned())),
        });
        assert_eq!(crm, Some(&expected_crm));
        let archive = settings.sink("archive").map(|sink| &sink.kind);
        assert_eq!(
            archive,
            Some(&SinkKind::File(FileSinkSettings {
                path: PathBuf::from("/var/lib/zcc-relay/events.jsonl")
            }))
        );
    }

    #[test]
    fn inline_credential_keys_are_recognised() {
        for (key, inline_credential) in [
            ("secret", true),
            ("secret_file", false),
            ("client_id", false),
            ("token", true),
            ("password", true),
            ("credentials", true),
            ("credentials_file", false),
            ("nkey_seed", true),
            ("user", false),
            ("stream", false),
        ] {
            assert_eq!(names_a_credential(key), inline_credential, "{key}");
        }
    }

    #[test]
    fn constructors_match_validated_defaults() {
        let env = FakeEnvironment::new()
            .with_cwd("/srv")
            .with_var("ZCC_RELAY_ZOOM_CLIENT_SECRET", "s");
        let text = r#"
            [zoom]
            account_id = "a"
            client_id = "c"
            subscription_id = "s"
            [journal]
            dir = "/data"
            [[sinks]]
            name = "archive"
            type = "file"
            path = "/data/events.jsonl"
        "#;
        let settings = match parse(text, &env) {
            Ok(loaded) => loaded.settings,
            Err(error) => panic!("{error}"),
        };
        let file = SinkKind::File(FileSinkSettings {
            path: PathBuf::from("/data/events.jsonl"),
        });
        assert_eq!(settings.sinks, [SinkSettings::new("archive", file)]);
        assert_eq!(
            Some(settings.media),
            MediaSettings::default_for(Path::new("/data")).ok()
        );
    }

    #[test]
    fn load_reports_an_unreadable_file_with_its_path() {
        let path = Path::new("/nonexistent/zcc-relay/config.toml");
        let error = match load(path) {
            Ok(loaded) => panic!("loaded {loaded:?}"),
            Err(error) => error,
        };
        assert!(
            matches!(error.file.as_deref(), Some(FileError::Unreadable { .. })),
            "{error:?}"
        );
        assert!(error.problems.is_empty());
        assert!(
            error
                .to_string()
                .starts_with("cannot read /nonexistent/zcc-relay/config.toml: "),
            "{error}"
        );
    }

    #[test]
    fn errors_display_one_problem_per_line() {
        let error = ConfigError {
            problems: vec![
                Problem::new("sinks[1].url", "relative URL \"crm/zoom\""),
                Problem::new("zoom.account_id", "missing"),
            ],
            warnings: vec![Problem::new("reconcile.lookback", "long")],
            file: None,
        };
        assert_eq!(
            error.to_string(),
            "sinks[1].url: relative URL \"crm/zoom\"\n\
             zoom.account_id: missing\n\
             warning: reconcile.lookback: long"
        );
    }
}
