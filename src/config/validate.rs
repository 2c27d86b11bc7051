//! `validate`: [`RawConfig`] in, [`Settings`] out, with every problem at once.
//!
//! Owns the rules of docs/contract.md §3.2: defaults, the checks that reject what cannot work,
//! the warnings for what works but is far from production sense, and where secrets
//! come from. Pure apart from the injected [`Environment`]; does not parse TOML
//! (`raw.rs`) and does not log (warnings are returned in [`Loaded`]).
//!
//! Every check reports and carries on, so one run of `zcc-relay validate` lists
//! everything; a section that had a problem yields `None` and no `Settings` is built.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::raw::{
    DaemonConfig, JournalConfig, MediaConfig, MetricsConfig, RawConfig, ReconcileConfig,
    StandbyConfig, WebsocketConfig, ZoomConfig,
};
use super::{
    ConfigError, DEFAULT_LEASE_BUCKET, DEFAULT_LEASE_TTL, DEFAULT_LINK_TTL, DaemonSettings,
    Environment, JournalSettings, Loaded, MediaSettings, MetricsSettings, Problem,
    ReconcileSettings, Secret, Secrets, Settings, StandbySettings, WebsocketSettings,
    ZOOM_API_BASE_URL, ZOOM_OAUTH_URL, ZOOM_WEBSOCKET_URL, ZoomSettings, default_media_store,
    unresolvable_media_store,
};

/// Where the zoom client secret may come from, besides the config file.
const ZOOM_SECRET_CREDENTIAL: &str = "zoom-client-secret";
const ZOOM_SECRET_VAR: &str = "ZCC_RELAY_ZOOM_CLIENT_SECRET";
/// Set by systemd for `LoadCredential=` / `SetCredential=`.
const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";
/// Set by systemd for `StateDirectory=`; colon-separated when several are configured.
const STATE_DIRECTORY: &str = "STATE_DIRECTORY";
const FALLBACK_JOURNAL_DIR: &str = "./zcc-relay-data";

pub(super) const HTTP_SCHEMES: &[&str] = &["https", "http"];
const WEBSOCKET_SCHEMES: &[&str] = &["wss", "ws"];
const STORE_SCHEMES: &[&str] = &["file", "s3", "az", "azure", "gs", "gcs", "memory"];

/// Zoom: "send a heartbeat to the server every 30 seconds" (docs/zoom.md §2.4).
const ZOOM_HEARTBEAT_LIMIT: Duration = Duration::from_secs(30);
/// Zoom's Medium label allows 10 requests/s per account, shared by every app on it.
const ZOOM_MEDIUM_RATE_LIMIT: u32 = 10;
const LONG_RECONNECT_MAX: Duration = Duration::from_secs(10 * 60);
const LONG_LOOKBACK: Duration = Duration::from_secs(30 * 24 * 3600);
/// S3 presigned URLs (SigV4) expire after at most seven days.
const S3_MAX_LINK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Applies the defaults (docs/contract.md §3.2) and checks every value. `Err` lists every
/// problem found, plus the warnings, so one run shows the operator everything.
pub fn validate(raw: RawConfig, env: &dyn Environment) -> Result<Loaded, ConfigError> {
    validate_with(raw, env, Secrets::Read)
}

/// [`validate`], reading the secrets or not (see [`Secrets`]).
pub fn validate_with(
    raw: RawConfig,
    env: &dyn Environment,
    secrets: Secrets,
) -> Result<Loaded, ConfigError> {
    let mut check = Checker {
        env,
        secrets,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let zoom = check.zoom(raw.zoom);
    let websocket = check.websocket(raw.websocket);
    let daemon = check.daemon(raw.daemon);
    let journal = check.journal(raw.journal);
    let reconcile = check.reconcile(raw.reconcile);
    let media = check.media(raw.media, journal.as_ref());
    let metrics = check.metrics(raw.metrics);
    let standby = match raw.standby {
        None => Some(None),
        Some(standby) => check.standby(standby, reconcile.as_ref()).map(Some),
    };
    let sinks = check.sinks(raw.sinks);

    let Checker {
        errors, warnings, ..
    } = check;
    match (
        zoom, websocket, daemon, journal, reconcile, media, metrics, standby, sinks,
    ) {
        (
            Some(zoom),
            Some(websocket),
            Some(daemon),
            Some(journal),
            Some(reconcile),
            Some(media),
            Some(metrics),
            Some(standby),
            Some(sinks),
        ) if errors.is_empty() => Ok(Loaded {
            settings: Settings {
                zoom,
                websocket,
                daemon,
                journal,
                reconcile,
                media,
                metrics,
                standby,
                sinks,
            },
            warnings,
        }),
        _ => {
            debug_assert!(!errors.is_empty(), "a section failed without a problem");
            Err(ConfigError {
                problems: errors,
                warnings,
                file: None,
            })
        }
    }
}

pub(super) struct Checker<'e> {
    pub(super) env: &'e dyn Environment,
    pub(super) secrets: Secrets,
    pub(super) errors: Vec<Problem>,
    pub(super) warnings: Vec<Problem>,
}

/// The places one secret may come from, in order of precedence.
pub(super) struct SecretPlaces {
    pub(super) inline_key: String,
    pub(super) file_key: String,
    pub(super) inline: Option<String>,
    pub(super) file: Option<PathBuf>,
    /// File name under `$CREDENTIALS_DIRECTORY` and environment variable; `None` when
    /// they cannot be named (a sink whose name is already reported as invalid).
    pub(super) credential: Option<String>,
    pub(super) var: Option<String>,
}

pub(super) enum SecretLookup {
    Found(Secret),
    Absent,
    /// Configured but unusable; the problem is already recorded.
    Failed,
}

impl Checker<'_> {
    pub(super) fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem::new(key, message));
    }

    pub(super) fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem::new(key, message));
    }

    fn zoom(&mut self, raw: ZoomConfig) -> Option<ZoomSettings> {
        let account_id = self.required_id("zoom.account_id", raw.account_id);
        let client_id = self.required_id("zoom.client_id", raw.client_id);
        let places = SecretPlaces {
            inline_key: "zoom.client_secret".to_owned(),
            file_key: "zoom.client_secret_file".to_owned(),
            inline: raw.client_secret,
            file: raw.client_secret_file,
            credential: Some(ZOOM_SECRET_CREDENTIAL.to_owned()),
            var: Some(ZOOM_SECRET_VAR.to_owned()),
        };
        let client_secret = match self.secret(places) {
            SecretLookup::Found(secret) => Some(secret),
            SecretLookup::Absent => {
                self.error(
                    "zoom.client_secret",
                    format!(
                        "missing; set zoom.client_secret_file, zoom.client_secret, the systemd \
                         credential {ZOOM_SECRET_CREDENTIAL:?} (read from \
                         ${CREDENTIALS_DIRECTORY}) or the environment variable {ZOOM_SECRET_VAR}"
                    ),
                );
                None
            }
            SecretLookup::Failed => None,
        };
        let subscription_id = self.required_id("zoom.subscription_id", raw.subscription_id);
        let oauth_url = self.zoom_url(
            "zoom.oauth_url",
            raw.oauth_url,
            ZOOM_OAUTH_URL,
            HTTP_SCHEMES,
        );
        let api_base_url = self.zoom_url(
            "zoom.api_base_url",
            raw.api_base_url,
            ZOOM_API_BASE_URL,
            HTTP_SCHEMES,
        );
        let websocket_url = self.zoom_url(
            "zoom.websocket_url",
            raw.websocket_url,
            ZOOM_WEBSOCKET_URL,
            WEBSOCKET_SCHEMES,
        );
        Some(ZoomSettings {
            account_id: account_id?,
            client_id: client_id?,
            client_secret: client_secret?,
            subscription_id: subscription_id?,
            oauth_url: oauth_url?,
            api_base_url: api_base_url?,
            websocket_url: websocket_url?,
        })
    }

    fn required_id(&mut self, key: &str, value: Option<String>) -> Option<String> {
        match value {
            None => {
                self.error(key, "missing");
                None
            }
            Some(value) if value.trim().is_empty() => {
                self.error(key, "must not be empty");
                None
            }
            Some(value) => Some(value),
        }
    }

    /// A Zoom endpoint: the production default, or an override whose plain-text scheme
    /// is expected only against a simulator on this machine.
    fn zoom_url(
        &mut self,
        key: &str,
        text: Option<String>,
        default: &str,
        schemes: &[&str],
    ) -> Option<Url> {
        let text = text.unwrap_or_else(|| default.to_owned());
        let url = self.url(key, &text, schemes)?;
        self.warn_if_plaintext(key, &url);
        Some(url)
    }

    /// `http://` or `ws://` to anything but loopback: it works, unencrypted.
    pub(super) fn warn_if_plaintext(&mut self, key: &str, url: &Url) {
        let plaintext = matches!(url.scheme(), "http" | "ws");
        if plaintext && !is_loopback_host(url) {
            self.warn(
                key,
                format!(
                    "plain {}:// is not encrypted; only for tests and local simulators",
                    url.scheme()
                ),
            );
        }
    }

    pub(super) fn url(&mut self, key: &str, text: &str, schemes: &[&str]) -> Option<Url> {
        let url = match Url::parse(text) {
            Ok(url) => url,
            Err(_) if text.is_empty() => {
                self.error(key, "must not be empty");
                return None;
            }
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                let hint = if text.starts_with('/') && schemes.contains(&"file") {
                    format!("; write \"file://{text}\"")
                } else {
                    String::new()
                };
                self.error(key, format!("relative URL {text:?}{hint}"));
                return None;
            }
            Err(error) => {
                self.error(key, format!("invalid URL {text:?}: {error}"));
                return None;
            }
        };
        if !schemes.contains(&url.scheme()) {
            self.error(
                key,
                format!(
                    "scheme {:?} not allowed; use {}",
                    url.scheme(),
                    quoted_list(schemes)
                ),
            );
            return None;
        }
        // URLs end up in logs and in `Settings`' Debug; credentials belong in secrets.
        if url.password().is_some() {
            self.error(
                key,
                "must not contain a password: URLs are logged; use a secret instead",
            );
            return None;
        }
        Some(url)
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        text: Option<String>,
        default: Duration,
    ) -> Option<Duration> {
        match text {
            None => Some(default),
            Some(text) => self.parse_duration(key, &text),
        }
    }

    pub(super) fn parse_duration(&mut self, key: &str, text: &str) -> Option<Duration> {
        match humantime::parse_duration(text) {
            Ok(duration) if duration.is_zero() => {
                self.error(key, "must be above zero");
                None
            }
            Ok(duration) => Some(duration),
            Err(error) => {
                self.error(
                    key,
                    format!(
                        "{text:?} is not a duration ({error}); \
                         write e.g. \"25s\", \"500ms\", \"7d\""
                    ),
                );
                None
            }
        }
    }

    /// A count with a lower bound; TOML integers are `i64`, so the range check and the
    /// conversion to the target type happen here, with the key in the message.
    pub(super) fn count<T: TryFrom<i64>>(
        &mut self,
        key: &str,
        value: Option<i64>,
        default: T,
        min: i64,
    ) -> Option<T> {
        let Some(value) = value else {
            return Some(default);
        };
        if value < min {
            self.error(key, format!("must be at least {min}"));
            return None;
        }
        match T::try_from(value) {
            Ok(value) => Some(value),
            Err(_) => {
                self.error(key, format!("{value} is too large"));
                None
            }
        }
    }

    /// The first of the secret's places that is set wins. A place that is set but
    /// unusable (unreadable, empty) is an error, never a silent fall-through to the
    /// next one: that would run with a different secret than the operator intended.
    pub(super) fn secret(&mut self, places: SecretPlaces) -> SecretLookup {
        let SecretPlaces {
            inline_key,
            file_key,
            inline,
            file,
            credential,
            var,
        } = places;
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.error(
                    inline_key.as_str(),
                    format!("set either {inline_key} or {file_key}, not both"),
                );
                return SecretLookup::Failed;
            }
            // Whatever place would supply it, the caller never uses it.
            (None, _) if self.secrets == Secrets::Skip => return SecretLookup::Found(unread()),
            (None, Some(path)) => return self.secret_file(&file_key, &path, false),
            (Some(inline), None) if inline.is_empty() => {
                self.error(inline_key, "must not be empty");
                return SecretLookup::Failed;
            }
            (Some(inline), None) => return SecretLookup::Found(Secret::new(inline)),
            (None, None) => {}
        }
        if let Some(credential) = credential
            && let Some(directory) = self.env.var(CREDENTIALS_DIRECTORY)
            && !directory.is_empty()
        {
            let path = Path::new(&directory).join(credential);
            match self.secret_file(&inline_key, &path, true) {
                SecretLookup::Absent => {}
                found_or_failed => return found_or_failed,
            }
        }
        if let Some(var) = var
            && let Some(value) = self.env.var(&var)
        {
            if value.is_empty() {
                self.error(inline_key, format!("environment variable {var} is empty"));
                return SecretLookup::Failed;
            }
            return SecretLookup::Found(Secret::new(value));
        }
        SecretLookup::Absent
    }

    /// Reads a secret file, trimming the trailing newline editors and `echo` add.
    /// `optional`: a missing file means "not configured here" (systemd credentials).
    fn secret_file(&mut self, key: &str, path: &Path, optional: bool) -> SecretLookup {
        match self.env.read_file(path) {
            Ok(contents) => {
                let trimmed = contents.trim_end();
                if trimmed.is_empty() {
                    self.error(key, format!("{} is empty", quoted_path(path)));
                    return SecretLookup::Failed;
                }
                if let Some(mode) = self.env.shared_mode(path) {
                    self.warn(
                        key,
                        format!(
                            "{} (mode {mode:04o}) can be read by its group or others; \
                             make it 0600 or 0400",
                            quoted_path(path)
                        ),
                    );
                }
                SecretLookup::Found(Secret::new(trimmed.to_owned()))
            }
            Err(error) if optional && error.kind() == std::io::ErrorKind::NotFound => {
                SecretLookup::Absent
            }
            Err(error) => {
                self.error(key, format!("cannot read {}: {error}", quoted_path(path)));
                SecretLookup::Failed
            }
        }
    }

    fn websocket(&mut self, raw: WebsocketConfig) -> Option<WebsocketSettings> {
        let defaults = WebsocketSettings::default();
        let heartbeat_interval = self.duration(
            "websocket.heartbeat_interval",
            raw.heartbeat_interval,
            defaults.heartbeat_interval,
        );
        let idle_timeout = self.duration(
            "websocket.idle_timeout",
            raw.idle_timeout,
            defaults.idle_timeout,
        );
        let connect_timeout = self.duration(
            "websocket.connect_timeout",
            raw.connect_timeout,
            defaults.connect_timeout,
        );
        let reconnect_min = self.duration(
            "websocket.reconnect_min",
            raw.reconnect_min,
            defaults.reconnect_min,
        );
        let reconnect_max = self.duration(
            "websocket.reconnect_max",
            raw.reconnect_max,
            defaults.reconnect_max,
        );
        let max_frame_bytes = self.count(
            "websocket.max_frame_bytes",
            raw.max_frame_bytes,
            defaults.max_frame_bytes,
            1024,
        );

        if let Some(heartbeat) = heartbeat_interval {
            if heartbeat > ZOOM_HEARTBEAT_LIMIT {
                self.warn(
                    "websocket.heartbeat_interval",
                    "above 30s; Zoom requires a heartbeat at least every 30 s and may close \
                     the connection",
                );
            }
            // Without a frame for a whole heartbeat period (the ack included) the
            // connection is not known to be dead yet; a shorter timeout reconnects forever.
            if let Some(idle) = idle_timeout
                && idle <= heartbeat
            {
                self.error(
                    "websocket.idle_timeout",
                    format!(
                        "must be above websocket.heartbeat_interval ({})",
                        humantime::format_duration(heartbeat)
                    ),
                );
            }
        }
        if let (Some(min), Some(max)) = (reconnect_min, reconnect_max)
            && min > max
        {
            self.error(
                "websocket.reconnect_min",
                format!(
                    "must not be above websocket.reconnect_max ({})",
                    humantime::format_duration(max)
                ),
            );
        }
        if let Some(max) = reconnect_max
            && max > LONG_RECONNECT_MAX
        {
            self.warn(
                "websocket.reconnect_max",
                "above 10m; the socket stays down that long between attempts and its events \
                 arrive only with the next reconciliation",
            );
        }
        Some(WebsocketSettings {
            heartbeat_interval: heartbeat_interval?,
            idle_timeout: idle_timeout?,
            connect_timeout: connect_timeout?,
            reconnect_min: reconnect_min?,
            reconnect_max: reconnect_max?,
            max_frame_bytes: max_frame_bytes?,
        })
    }

    fn daemon(&mut self, raw: DaemonConfig) -> Option<DaemonSettings> {
        let defaults = DaemonSettings::default();
        let log_level = match raw.log_level {
            None => Some(defaults.log_level),
            Some(level) if level.trim().is_empty() => {
                self.error("daemon.log_level", "must not be empty; e.g. \"info\"");
                None
            }
            Some(level) => match tracing_subscriber::EnvFilter::try_new(&level) {
                Ok(_) => Some(level),
                Err(error) => {
                    self.error(
                        "daemon.log_level",
                        format!(
                            "{level:?} is not a log filter ({error}); write e.g. \"info\" or \
                             \"info,zcc_relay=debug\""
                        ),
                    );
                    None
                }
            },
        };
        let drain_timeout = self.duration(
            "daemon.drain_timeout",
            raw.drain_timeout,
            defaults.drain_timeout,
        );
        Some(DaemonSettings {
            log_level: log_level?,
            drain_timeout: drain_timeout?,
        })
    }

    fn journal(&mut self, raw: JournalConfig) -> Option<JournalSettings> {
        let dir = match raw.dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                self.error("journal.dir", "must not be empty");
                return None;
            }
            Some(dir) => dir,
            None => self
                .env
                .var(STATE_DIRECTORY)
                .and_then(|dirs| dirs.split(':').next().map(PathBuf::from))
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from(FALLBACK_JOURNAL_DIR)),
        };
        Some(JournalSettings { dir })
    }

    fn reconcile(&mut self, raw: ReconcileConfig) -> Option<ReconcileSettings> {
        let defaults = ReconcileSettings::default();
        let enabled = raw.enabled.unwrap_or(defaults.enabled);
        let interval = self.duration("reconcile.interval", raw.interval, defaults.interval);
        let lookback = self.duration("reconcile.lookback", raw.lookback, defaults.lookback);
        let gap_margin = self.duration("reconcile.gap_margin", raw.gap_margin, defaults.gap_margin);
        let engagement_lookback = self.duration(
            "reconcile.engagement_lookback",
            raw.engagement_lookback,
            defaults.engagement_lookback,
        );
        let max_requests_per_second = self.count(
            "reconcile.max_requests_per_second",
            raw.max_requests_per_second,
            defaults.max_requests_per_second,
            1,
        );

        if enabled {
            if let Some(rate) = max_requests_per_second
                && rate > ZOOM_MEDIUM_RATE_LIMIT
            {
                self.warn(
                    "reconcile.max_requests_per_second",
                    "above 10; Zoom's Medium rate limit is per account and shared by every \
                     app on it, so expect 429 responses",
                );
            }
            if let Some(lookback) = lookback
                && lookback > LONG_LOOKBACK
            {
                self.warn(
                    "reconcile.lookback",
                    "above 30d; every sweep lists this whole window again",
                );
            }
            if let (Some(lookback), Some(interval)) = (lookback, interval)
                && lookback < interval
            {
                self.warn(
                    "reconcile.lookback",
                    format!(
                        "shorter than reconcile.interval ({}); periodic sweeps leave time \
                         between them unchecked",
                        humantime::format_duration(interval)
                    ),
                );
            }
        }
        Some(ReconcileSettings {
            enabled,
            on_reconnect: raw.on_reconnect.unwrap_or(defaults.on_reconnect),
            interval: interval?,
            lookback: lookback?,
            gap_margin: gap_margin?,
            engagement_lookback: engagement_lookback?,
            max_requests_per_second: max_requests_per_second?,
        })
    }

    fn media(
        &mut self,
        raw: MediaConfig,
        journal: Option<&JournalSettings>,
    ) -> Option<MediaSettings> {
        let store = match (raw.store, journal) {
            (Some(text), _) => self.store_url(&text),
            (None, Some(journal)) => {
                let store = default_media_store(&journal.dir, &self.env.current_dir());
                if store.is_none() {
                    self.errors.push(unresolvable_media_store(&journal.dir));
                }
                store
            }
            // journal.dir is already reported; there is nothing to derive a default from.
            (None, None) => None,
        };
        let link_ttl = self.duration("media.link_ttl", raw.link_ttl, DEFAULT_LINK_TTL);
        if let (Some(store), Some(ttl)) = (&store, link_ttl)
            && store.scheme() == "s3"
            && ttl > S3_MAX_LINK_TTL
        {
            self.warn(
                "media.link_ttl",
                "above 7d; S3 signs links for at most 7 days",
            );
        }
        let options = self.media_options(raw.options);
        if let (Some(store), Some(options)) = (&store, &options) {
            for key in options.keys() {
                if let Some(problem) = unknown_store_option(store.scheme(), key) {
                    self.error(format!("media.options.{key}"), problem);
                }
            }
        }
        Some(MediaSettings {
            enabled: raw.enabled.unwrap_or(true),
            store: store?,
            link_ttl: link_ttl?,
            allow_http: raw.allow_http.unwrap_or(false),
            options: options?,
        })
    }

    fn store_url(&mut self, text: &str) -> Option<Url> {
        // Checked before anything echoes the text: it may hold a secret. The
        // store URL is logged and is the start of every `location` that the
        // sinks get, so credentials and query strings have no place in it.
        if let Ok(url) = Url::parse(text)
            && (!url.username().is_empty()
                || url.password().is_some()
                || url.query().is_some()
                || url.fragment().is_some())
        {
            self.error(
                "media.store",
                "has a user, password, query or fragment; the URL goes into every forwarded \
                 record's location, so credentials belong in [media.options] (or a *_file key)",
            );
            return None;
        }
        let url = self.url("media.store", text, STORE_SCHEMES)?;
        let needs_bucket = !matches!(url.scheme(), "file" | "memory");
        if needs_bucket && url.host_str().is_none_or(str::is_empty) {
            self.error(
                "media.store",
                format!(
                    "{text:?} names no bucket or container; write e.g. \"{}://bucket/prefix\"",
                    url.scheme()
                ),
            );
            return None;
        }
        Some(url)
    }

    /// object_store options pass through as strings; `<key>_file` reads `<key>` from a
    /// file so that credentials can stay out of the config.
    fn media_options(
        &mut self,
        raw: BTreeMap<String, toml::Value>,
    ) -> Option<BTreeMap<String, Secret>> {
        let mut options = BTreeMap::new();
        let mut complete = true;
        for (key, value) in &raw {
            let at = format!("media.options.{key}");
            let text = match value {
                toml::Value::String(text) => text.clone(),
                toml::Value::Integer(number) => number.to_string(),
                toml::Value::Float(number) => number.to_string(),
                toml::Value::Boolean(flag) => flag.to_string(),
                other => {
                    self.error(
                        at,
                        format!(
                            "must be a string, number or boolean, not {}",
                            other.type_str()
                        ),
                    );
                    complete = false;
                    continue;
                }
            };
            let Some(name) = key.strip_suffix("_file") else {
                options.insert(key.clone(), Secret::new(text));
                continue;
            };
            if name.is_empty() {
                self.error(at, "names no option before \"_file\"");
                complete = false;
            } else if raw.contains_key(name) {
                self.error(
                    at,
                    format!("set either media.options.{name} or media.options.{key}, not both"),
                );
                complete = false;
            } else if self.secrets == Secrets::Skip {
                options.insert(name.to_owned(), unread());
            } else {
                match self.secret_file(&at, Path::new(&text), false) {
                    SecretLookup::Found(secret) => {
                        options.insert(name.to_owned(), secret);
                    }
                    SecretLookup::Absent | SecretLookup::Failed => complete = false,
                }
            }
        }
        complete.then_some(options)
    }

    /// `[standby]` (docs/contract.md §3.7): the lease's keys here, the
    /// connection keys through the nats kind's own validation.
    fn standby(
        &mut self,
        raw: StandbyConfig,
        reconcile: Option<&ReconcileSettings>,
    ) -> Option<StandbySettings> {
        let StandbyConfig {
            lease_servers,
            bucket,
            ttl,
            credentials,
            credentials_file,
            token,
            token_file,
            nkey_seed,
            nkey_seed_file,
            user,
            password,
            password_file,
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
        } = raw;
        let keys = crate::sink::nats::NatsSinkConfig {
            credentials,
            credentials_file,
            token,
            token_file,
            nkey_seed,
            nkey_seed_file,
            user,
            password,
            password_file,
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
            ..Default::default()
        };
        let connection = {
            let mut check = super::SinkCheck::section(self, "standby");
            crate::sink::nats::connection(&mut check, "lease_servers", lease_servers, &keys)
        };
        let bucket = bucket.unwrap_or_else(|| DEFAULT_LEASE_BUCKET.to_owned());
        let bucket_ok = crate::lease::is_bucket_name(&bucket);
        if !bucket_ok {
            self.error(
                "standby.bucket",
                format!(
                    "{:?} is not a KV bucket name: letters, digits, '_' and '-', at most {} characters",
                    crate::escape::for_display(&bucket, 80),
                    crate::lease::MAX_BUCKET_NAME
                ),
            );
        }
        let ttl = self.duration("standby.ttl", ttl, DEFAULT_LEASE_TTL);
        if let Some(ttl) = ttl {
            if ttl < crate::lease::MIN_TTL {
                self.error(
                    "standby.ttl",
                    "must be at least 1s: the lease is renewed every ttl/5 over the network",
                );
            } else if ttl < Duration::from_secs(5) {
                self.warn(
                    "standby.ttl",
                    "under 5s, a slow NATS round trip makes the leader step down",
                );
            } else if ttl > Duration::from_secs(300) {
                self.warn(
                    "standby.ttl",
                    "over 5m, a failover leaves the socket closed for that long",
                );
            }
        }
        if reconcile.is_some_and(|r| !r.enabled || !r.on_reconnect) {
            self.warn(
                "standby",
                "reconcile.enabled or reconcile.on_reconnect is false: a new leader cannot \
                 fill the window of a failover from the REST API",
            );
        }
        let ttl = ttl.filter(|ttl| *ttl >= crate::lease::MIN_TTL);
        Some(StandbySettings {
            connection: connection?,
            bucket: bucket_ok.then_some(bucket)?,
            ttl: ttl?,
        })
    }

    fn metrics(&mut self, raw: MetricsConfig) -> Option<MetricsSettings> {
        let Some(text) = raw.listen else {
            return Some(MetricsSettings::default());
        };
        match text.parse::<std::net::SocketAddr>() {
            Err(_) => {
                self.error(
                    "metrics.listen",
                    format!("{text:?} is not a socket address; write e.g. \"127.0.0.1:9464\""),
                );
                None
            }
            // The endpoint has no authentication; a VM's loopback is the boundary.
            Ok(address) if !address.ip().is_loopback() && !raw.allow_non_loopback => {
                self.error(
                    "metrics.listen",
                    format!(
                        "{address} is not a loopback address; the endpoint has no \
                         authentication, use 127.0.0.1 or [::1] (or set \
                         metrics.allow_non_loopback = true behind a firewall)"
                    ),
                );
                None
            }
            Ok(address) if !address.ip().is_loopback() => {
                self.warn(
                    "metrics.listen",
                    format!(
                        "{address} is not a loopback address; anyone who can reach it can \
                         read the metrics (allowed by metrics.allow_non_loopback)"
                    ),
                );
                Some(MetricsSettings {
                    listen: Some(address),
                })
            }
            Ok(address) => Some(MetricsSettings {
                listen: Some(address),
            }),
        }
    }
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    }
}

fn quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The stand-in for a secret [`Secrets::Skip`] did not read.
pub(super) fn unread() -> Secret {
    Secret::new(String::new())
}

fn quoted_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// Why `key` is not an option of the `scheme` store, if it is not: object_store's own
/// key parsers decide (aliases such as `access_key_id` included).
fn unknown_store_option(scheme: &str, key: &str) -> Option<String> {
    use std::str::FromStr as _;
    let known = match scheme {
        "s3" => object_store::aws::AmazonS3ConfigKey::from_str(key).is_ok(),
        "az" | "azure" => object_store::azure::AzureConfigKey::from_str(key).is_ok(),
        "gs" | "gcs" => object_store::gcp::GoogleConfigKey::from_str(key).is_ok(),
        _ => {
            return Some(format!(
                "a {scheme}:// store takes no options; remove [media.options]"
            ));
        }
    };
    (!known).then(|| format!("not an object_store option for a {scheme}:// store"))
}

#[cfg(test)]
mod tests {
    use super::super::{FakeEnvironment, Loaded, Secrets, Settings, SinkKind, parse, parse_with};
    use crate::sink::http::HttpSinkSettings;

    /// The zoom table of a valid config, open for more zoom keys; `with_base` appends a
    /// row's text and then one valid sink.
    const ZOOM: &str = r#"
[zoom]
account_id = "acct"
client_id = "client"
client_secret = "zoom-secret"
subscription_id = "sub"
"#;
    const SINK: &str = r#"
[[sinks]]
name = "crm"
type = "http"
url = "https://crm.example.com/zoom"
"#;

    fn with_base(extra: &str) -> String {
        format!("{ZOOM}{extra}\n{SINK}")
    }

    /// Everything a config text turns into, one line each: `error: key: message`,
    /// `warning: key: message`, or `file: <toml or I/O message>`.
    fn outcome(text: &str, env: &FakeEnvironment) -> Vec<String> {
        match parse(text, env) {
            Ok(Loaded { warnings, .. }) => warnings
                .iter()
                .map(|warning| format!("warning: {warning}"))
                .collect(),
            Err(error) => {
                let file = error.file.iter().map(|file| format!("file: {file}"));
                let errors = error
                    .problems
                    .iter()
                    .map(|problem| format!("error: {problem}"));
                let warnings = error
                    .warnings
                    .iter()
                    .map(|warning| format!("warning: {warning}"));
                file.chain(errors).chain(warnings).collect()
            }
        }
    }

    #[track_caller]
    fn check(text: &str, expected: &[&str]) {
        check_in(&FakeEnvironment::new(), text, expected);
    }

    #[track_caller]
    fn check_in(env: &FakeEnvironment, text: &str, expected: &[&str]) {
        assert_eq!(outcome(text, env), expected, "config:\n{text}");
    }

    /// Every row is `with_base(extra)` and its expected outcome; all mismatching rows
    /// are reported together.
    #[track_caller]
    fn check_table(rows: &[(&str, &[&str])]) {
        let env = FakeEnvironment::new();
        let mismatches: Vec<String> = rows
            .iter()
            .filter_map(|(extra, expected)| {
                let actual = outcome(&with_base(extra), &env);
                (actual != *expected)
                    .then(|| format!("row:\n{extra}\nexpected: {expected:#?}\nactual: {actual:#?}"))
            })
            .collect();
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
    }

    #[track_caller]
    fn settings(env: &FakeEnvironment, text: &str) -> Settings {
        match parse(text, env) {
            Ok(loaded) => loaded.settings,
            Err(error) => panic!("config:\n{text}\nproblems:\n{error}"),
        }
    }

    #[test]
    fn warns_about_a_plaintext_sink_url_off_loopback() {
        let sinks = |url: &str| {
            format!("{ZOOM}\n[[sinks]]\nname = \"crm\"\ntype = \"http\"\nurl = \"{url}\"\n")
        };
        check(
            &sinks("http://crm.example.com/zoom"),
            &[
                "warning: sinks[0].url: plain http:// is not encrypted; only for tests and local \
               simulators",
            ],
        );
        check(&sinks("http://127.0.0.1:8080/zoom"), &[]);
        check(&sinks("http://[::1]:8080/zoom"), &[]);
        check(&sinks("https://crm.example.com/zoom"), &[]);
    }

    #[test]
    fn accepts_valid_configs_and_warns_only_about_unusual_values() {
        let rows: &[(&str, &[&str])] = &[
            ("", &[]),
            // Test scale, against a simulator on loopback: nothing to say.
            (
                r#"oauth_url = "http://127.0.0.1:8080/oauth/token"
api_base_url = "http://localhost:8080/v2"
websocket_url = "ws://[::1]:8080/ws"
[websocket]
heartbeat_interval = "1s"
idle_timeout = "3s"
connect_timeout = "1s"
reconnect_min = "100ms"
reconnect_max = "100ms"
max_frame_bytes = 1024
[daemon]
log_level = "debug,zcc_relay=trace"
drain_timeout = "1s"
[reconcile]
interval = "5s"
lookback = "1m"
gap_margin = "1s"
engagement_lookback = "10s"
max_requests_per_second = 1
[media]
store = "memory://"
link_ttl = "1s"
[metrics]
listen = "127.0.0.1:0""#,
                &[],
            ),
            (
                r#"[websocket]
heartbeat_interval = "40s"
idle_timeout = "2m""#,
                &[
                    "warning: websocket.heartbeat_interval: above 30s; Zoom requires a \
                   heartbeat at least every 30 s and may close the connection",
                ],
            ),
            (
                "[websocket]\nreconnect_max = \"30m\"",
                &[
                    "warning: websocket.reconnect_max: above 10m; the socket stays down that \
                   long between attempts and its events arrive only with the next \
                   reconciliation",
                ],
            ),
            (
                "[reconcile]\nmax_requests_per_second = 20",
                &[
                    "warning: reconcile.max_requests_per_second: above 10; Zoom's Medium rate \
                   limit is per account and shared by every app on it, so expect 429 responses",
                ],
            ),
            (
                "[reconcile]\nlookback = \"60d\"",
                &[
                    "warning: reconcile.lookback: above 30d; every sweep lists this whole \
                   window again",
                ],
            ),
            (
                "[reconcile]\nlookback = \"30m\"",
                &[
                    "warning: reconcile.lookback: shorter than reconcile.interval (1h); \
                   periodic sweeps leave time between them unchecked",
                ],
            ),
            // Disabled reconciliation makes its tuning moot.
            (
                "[reconcile]\nenabled = false\nlookback = \"30m\"\nmax_requests_per_second = 50",
                &[],
            ),
            (
                r#"oauth_url = "http://zoom.test/oauth/token"
websocket_url = "ws://zoom.test/ws""#,
                &[
                    "warning: zoom.oauth_url: plain http:// is not encrypted; only for tests \
                     and local simulators",
                    "warning: zoom.websocket_url: plain ws:// is not encrypted; only for tests \
                     and local simulators",
                ],
            ),
            (
                "[media]\nstore = \"s3://bucket/zoom\"\nlink_ttl = \"8d\"",
                &["warning: media.link_ttl: above 7d; S3 signs links for at most 7 days"],
            ),
            (
                "[[sinks]]\nname = \"all\"\ntype = \"file\"\npath = \"all.jsonl\"\nevents = []",
                &[
                    "warning: sinks[0].events: an empty list forwards every event; remove the \
                   key to say so",
                ],
            ),
        ];
        check_table(rows);
    }

    #[test]
    fn rejects_what_cannot_work() {
        let rows: &[(&str, &[&str])] = &[
            (
                "[websocket]\nconnect_timeout = \"0s\"",
                &["error: websocket.connect_timeout: must be above zero"],
            ),
            (
                "[daemon]\ndrain_timeout = \"10\"",
                &[
                    "error: daemon.drain_timeout: \"10\" is not a duration (time unit needed, \
                   for example 10sec or 10ms); write e.g. \"25s\", \"500ms\", \"7d\"",
                ],
            ),
            (
                "[reconcile]\ngap_margin = \"-5m\"",
                &[
                    "error: reconcile.gap_margin: \"-5m\" is not a duration (expected number at \
                   0); write e.g. \"25s\", \"500ms\", \"7d\"",
                ],
            ),
            (
                "[websocket]\nheartbeat_interval = \"10s\"\nidle_timeout = \"10s\"",
                &[
                    "error: websocket.idle_timeout: must be above websocket.heartbeat_interval \
                   (10s)",
                ],
            ),
            (
                "[websocket]\nreconnect_min = \"2s\"\nreconnect_max = \"1s\"",
                &[
                    "error: websocket.reconnect_min: must not be above websocket.reconnect_max \
                   (1s)",
                ],
            ),
            (
                "[websocket]\nmax_frame_bytes = 1023",
                &["error: websocket.max_frame_bytes: must be at least 1024"],
            ),
            (
                "[reconcile]\nmax_requests_per_second = 0",
                &["error: reconcile.max_requests_per_second: must be at least 1"],
            ),
            (
                "[reconcile]\nmax_requests_per_second = 5000000000",
                &["error: reconcile.max_requests_per_second: 5000000000 is too large"],
            ),
            (
                "[daemon]\nlog_level = \"\"",
                &["error: daemon.log_level: must not be empty; e.g. \"info\""],
            ),
            (
                "[daemon]\nlog_level = \"zcc_relay=loud\"",
                &[
                    "error: daemon.log_level: \"zcc_relay=loud\" is not a log filter (error \
                     parsing level filter: expected one of \"off\", \"error\", \"warn\", \
                     \"info\", \"debug\", \"trace\", or a number 0-5); write e.g. \"info\" or \
                     \"info,zcc_relay=debug\"",
                ],
            ),
            (
                "[journal]\ndir = \"\"",
                &["error: journal.dir: must not be empty"],
            ),
            (
                "[metrics]\nlisten = \"localhost:9464\"",
                &[
                    "error: metrics.listen: \"localhost:9464\" is not a socket address; write \
                   e.g. \"127.0.0.1:9464\"",
                ],
            ),
            (
                "[metrics]\nlisten = \"0.0.0.0:9464\"",
                &[
                    "error: metrics.listen: 0.0.0.0:9464 is not a loopback address; the \
                   endpoint has no authentication, use 127.0.0.1 or [::1] (or set \
                   metrics.allow_non_loopback = true behind a firewall)",
                ],
            ),
            (
                "[metrics]\nlisten = \"0.0.0.0:9464\"\nallow_non_loopback = true",
                &[
                    "warning: metrics.listen: 0.0.0.0:9464 is not a loopback address; anyone \
                   who can reach it can read the metrics (allowed by metrics.allow_non_loopback)",
                ],
            ),
            (
                "oauth_url = \"zoom.us/oauth/token\"",
                &["error: zoom.oauth_url: relative URL \"zoom.us/oauth/token\""],
            ),
            (
                "websocket_url = \"https://ws.zoom.us/ws\"",
                &[
                    "error: zoom.websocket_url: scheme \"https\" not allowed; use \"wss\" or \
                   \"ws\"",
                ],
            ),
            (
                "api_base_url = \"https://\"",
                &["error: zoom.api_base_url: invalid URL \"https://\": empty host"],
            ),
            (
                "[media]\nstore = \"/var/lib/zcc-relay/media\"",
                &[
                    "error: media.store: relative URL \"/var/lib/zcc-relay/media\"; write \
                   \"file:///var/lib/zcc-relay/media\"",
                ],
            ),
            (
                "[media]\nstore = \"ftp://files/zoom\"",
                &[
                    "error: media.store: scheme \"ftp\" not allowed; use \"file\", \"s3\", \
                   \"az\", \"azure\", \"gs\", \"gcs\" or \"memory\"",
                ],
            ),
            (
                "[media]\nstore = \"s3://AKIAX:hunter2@bucket/zoom\"",
                &[
                    "error: media.store: has a user, password, query or fragment; the URL goes \
                   into every forwarded record's location, so credentials belong in \
                   [media.options] (or a *_file key)",
                ],
            ),
            (
                "[media]\nstore = \"az://container/zoom?sig=abc\"",
                &[
                    "error: media.store: has a user, password, query or fragment; the URL goes \
                   into every forwarded record's location, so credentials belong in \
                   [media.options] (or a *_file key)",
                ],
            ),
            (
                "[media]\nstore = \"s3:///zoom\"",
                &[
                    "error: media.store: \"s3:///zoom\" names no bucket or container; write \
                   e.g. \"s3://bucket/prefix\"",
                ],
            ),
            (
                "[media]\nstore = \"s3://b/z\"\n[media.options]\naws_regoin = \"x\"\naws_region = \"x\"",
                &["error: media.options.aws_regoin: not an object_store option for a s3:// store"],
            ),
            (
                "[media]\nstore = \"az://c/z\"\n[media.options]\naws_region = \"x\"",
                &["error: media.options.aws_region: not an object_store option for a az:// store"],
            ),
            (
                "[media.options]\naws_region = \"x\"",
                &[
                    "error: media.options.aws_region: a file:// store takes no options; remove [media.options]",
                ],
            ),
            (
                "[media]\nlink_ttl = \"0ms\"",
                &["error: media.link_ttl: must be above zero"],
            ),
            (
                "[media.options]\naws_region = [\"eu-west-1\"]",
                &[
                    "error: media.options.aws_region: must be a string, number or boolean, not \
                   array",
                ],
            ),
            (
                "[media.options]\nkey = \"a\"\nkey_file = \"/k\"",
                &[
                    "error: media.options.key_file: set either media.options.key or \
                   media.options.key_file, not both",
                ],
            ),
            (
                "[media.options]\naws_secret_access_key_file = \"/missing\"",
                &[
                    "error: media.options.aws_secret_access_key_file: cannot read \"/missing\": \
                   entity not found",
                ],
            ),
            (
                "[[sinks]]\nname = \"s3\"\ntype = \"s3\"",
                &[
                    "error: sinks[0].type: unknown sink type \"s3\"; allowed: \"http\", \"file\", \"salesforce\", \"dynamics\", \"hubspot\", \"nats\", \"servicenow\", \"zendesk\"",
                ],
            ),
            (
                "[[sinks]]\nname = \"x\"",
                &[
                    "error: sinks[0].type: missing; one of \"http\", \"file\", \"salesforce\", \"dynamics\", \"hubspot\", \"nats\", \"servicenow\", \"zendesk\"",
                ],
            ),
            (
                "[[sinks]]\ntype = \"file\"\npath = \"x\"",
                &["error: sinks[0].name: missing"],
            ),
            (
                "[[sinks]]\nname = \"crm v2\"\ntype = \"file\"\npath = \"x\"",
                &[
                    "error: sinks[0].name: \"crm v2\" may contain only letters, digits, '_', \
                   '.' and '-'",
                ],
            ),
            (
                "[[sinks]]\nname = \"crm\"\ntype = \"file\"\npath = \"x\"",
                &["error: sinks[1].name: duplicate sink name \"crm\""],
            ),
            (
                "[[sinks]]\nname = \"h\"\ntype = \"http\"\npath = \"x\"",
                &[
                    "error: sinks[0].path: not used by type \"http\"",
                    "error: sinks[0].url: missing; required for type \"http\"",
                ],
            ),
            (
                "[[sinks]]\nname = \"h\"\ntype = \"http\"\nurl = \"https://u:p@crm.test/\"",
                &[
                    "error: sinks[0].url: must not contain a password: URLs are logged; use a \
                   secret instead",
                ],
            ),
            (
                "[[sinks]]\nname = \"f\"\ntype = \"file\"\nurl = \"https://x.test\"\n\
                 secret = \"s\"\nsecret_file = \"/s\"",
                &[
                    "error: sinks[0].url: not used by type \"file\"",
                    "error: sinks[0].secret: not used by type \"file\"",
                    "error: sinks[0].secret_file: not used by type \"file\"",
                    "error: sinks[0].path: missing; required for type \"file\"",
                ],
            ),
            (
                "[[sinks]]\nname = \"f\"\ntype = \"file\"\npath = \"x\"\nevents = [\"a.*\", \"\"]\n\
                 max_in_flight = 0\nretry_schedule = [\"5s\", \"0s\", \"soon\"]",
                &[
                    "error: sinks[0].events[1]: empty pattern",
                    "error: sinks[0].max_in_flight: must be at least 1",
                    "error: sinks[0].retry_schedule[1]: must be above zero",
                    "error: sinks[0].retry_schedule[2]: \"soon\" is not a duration (expected \
                     number at 0); write e.g. \"25s\", \"500ms\", \"7d\"",
                ],
            ),
            (
                "[[sinks]]\nname = \"f\"\ntype = \"file\"\npath = \"x\"\nretry_schedule = []",
                &["error: sinks[0].retry_schedule: must list at least one delay"],
            ),
        ];
        check_table(rows);
    }

    #[test]
    fn reports_every_problem_at_once_with_its_key() {
        let text = r#"
[zoom]
account_id = ""
client_id = "client"
subscription_id = "sub"
oauth_url = "zoom.us/oauth/token"
websocket_url = "https://ws.zoom.us/ws"

[websocket]
heartbeat_interval = "25s"
idle_timeout = "20s"
reconnect_min = "2m"
max_frame_bytes = 512

[daemon]
drain_timeout = "0s"

[reconcile]
max_requests_per_second = 0
lookback = "90d"

[metrics]
listen = "0.0.0.0:9464"

[[sinks]]
name = "crm"
type = "http"
url = "https://crm.example.com/zoom"
path = "/tmp/x"

[[sinks]]
name = "crm2"
type = "http"
url = "crm/zoom"

[[sinks]]
name = "crm"
type = "file"
retry_schedule = []
"#;
        check(
            text,
            &[
                "error: zoom.account_id: must not be empty",
                "error: zoom.client_secret: missing; set zoom.client_secret_file, \
                 zoom.client_secret, the systemd credential \"zoom-client-secret\" (read from \
                 $CREDENTIALS_DIRECTORY) or the environment variable ZCC_RELAY_ZOOM_CLIENT_SECRET",
                "error: zoom.oauth_url: relative URL \"zoom.us/oauth/token\"",
                "error: zoom.websocket_url: scheme \"https\" not allowed; use \"wss\" or \"ws\"",
                "error: websocket.max_frame_bytes: must be at least 1024",
                "error: websocket.idle_timeout: must be above websocket.heartbeat_interval (25s)",
                "error: websocket.reconnect_min: must not be above websocket.reconnect_max (1m)",
                "error: daemon.drain_timeout: must be above zero",
                "error: reconcile.max_requests_per_second: must be at least 1",
                "error: metrics.listen: 0.0.0.0:9464 is not a loopback address; the endpoint \
                 has no authentication, use 127.0.0.1 or [::1] (or set \
                 metrics.allow_non_loopback = true behind a firewall)",
                "error: sinks[0].path: not used by type \"http\"",
                "error: sinks[1].url: relative URL \"crm/zoom\"",
                "error: sinks[2].name: duplicate sink name \"crm\"",
                "error: sinks[2].path: missing; required for type \"file\"",
                "error: sinks[2].retry_schedule: must list at least one delay",
                "warning: reconcile.lookback: above 30d; every sweep lists this whole window again",
            ],
        );
        check(
            "",
            &[
                "error: zoom.account_id: missing",
                "error: zoom.client_id: missing",
                "error: zoom.client_secret: missing; set zoom.client_secret_file, \
                 zoom.client_secret, the systemd credential \"zoom-client-secret\" (read from \
                 $CREDENTIALS_DIRECTORY) or the environment variable ZCC_RELAY_ZOOM_CLIENT_SECRET",
                "error: zoom.subscription_id: missing",
                "error: sinks: at least one [[sinks]] is required",
            ],
        );
    }

    /// Unknown keys and wrong TOML types stop at serde, which names the key and its
    /// line (never the line itself: it may hold a secret).
    #[test]
    fn rejects_unknown_keys_and_bad_toml() {
        let rows: &[(String, &[&str])] = &[
            (
                with_base("[websocket]\nheartbeat = \"25s\""),
                &["unknown field `heartbeat`", "line 8"],
            ),
            (
                format!("{ZOOM}{SINK}colour = \"red\""),
                &["unknown field `colour`", "line 12"],
            ),
            (with_base("[zoom2]"), &["unknown field `zoom2`", "line 7"]),
            (
                with_base("[websocket]\nmax_frame_bytes = \"4MB\""),
                &["invalid type: string \"4MB\", expected i64", "line 8"],
            ),
            (
                with_base("[daemon"),
                &["TOML parse error at line 7, column 8: "],
            ),
            // The offending line is not quoted: it may hold a secret.
            (
                format!("{ZOOM}client_secrett = \"hunter2-in-the-log\"\n{SINK}"),
                &["unknown field `client_secrett`", "line 7, column 1"],
            ),
        ];
        for (text, fragments) in rows {
            let lines = outcome(text, &FakeEnvironment::new());
            let [line] = lines.as_slice() else {
                panic!("expected one file error, got {lines:#?}\nconfig:\n{text}");
            };
            assert!(line.starts_with("file: "), "{line}");
            for fragment in *fragments {
                assert!(line.contains(fragment), "{fragment:?} not in {line}");
            }
            assert!(!line.contains("hunter2"), "{line}");
            let error = parse(text, &FakeEnvironment::new()).unwrap_err();
            assert!(!format!("{error:?}").contains("hunter2"), "{error:?}");
        }
    }

    #[test]
    fn zoom_secret_comes_from_the_first_place_set() {
        const FILE: &str = "client_secret_file = \"/etc/zcc-relay/zoom\"\n";
        const INLINE: &str = "client_secret = \"inline\"\n";
        let creds = (
            "CREDENTIALS_DIRECTORY",
            "/run/credentials/zcc-relay.service",
        );
        let cred_file = "/run/credentials/zcc-relay.service/zoom-client-secret";
        let var = ("ZCC_RELAY_ZOOM_CLIENT_SECRET", "from-env");
        let everything = FakeEnvironment::new()
            .with_var(creds.0, creds.1)
            .with_var(var.0, var.1)
            .with_file(cred_file, "from-credential\n")
            .with_file("/etc/zcc-relay/zoom", "  from-file \t\r\n\n");
        let rows: &[(&str, FakeEnvironment, Result<&str, &str>)] = &[
            // Trailing whitespace is trimmed, leading kept: it could be part of the secret.
            (FILE, everything.clone(), Ok("  from-file")),
            (INLINE, everything.clone(), Ok("inline")),
            ("", everything.clone(), Ok("from-credential")),
            (
                "",
                everything
                    .clone()
                    .with_file(cred_file, "x")
                    .with_var(creds.0, "/elsewhere"),
                Ok("from-env"),
            ),
            (
                "",
                FakeEnvironment::new().with_var(var.0, var.1),
                Ok("from-env"),
            ),
            (
                "",
                FakeEnvironment::new().with_var(var.0, ""),
                Err(
                    "zoom.client_secret: environment variable ZCC_RELAY_ZOOM_CLIENT_SECRET is \
                     empty",
                ),
            ),
            (
                "client_secret = \"inline\"\nclient_secret_file = \"/etc/zcc-relay/zoom\"\n",
                everything.clone(),
                Err("zoom.client_secret: set either zoom.client_secret or \
                     zoom.client_secret_file, not both"),
            ),
            (
                "client_secret = \"\"\n",
                everything.clone(),
                Err("zoom.client_secret: must not be empty"),
            ),
            (
                FILE,
                FakeEnvironment::new().with_var(var.0, var.1),
                Err(
                    "zoom.client_secret_file: cannot read \"/etc/zcc-relay/zoom\": entity not \
                     found",
                ),
            ),
            (
                FILE,
                everything.clone().with_file("/etc/zcc-relay/zoom", " \n"),
                Err("zoom.client_secret_file: \"/etc/zcc-relay/zoom\" is empty"),
            ),
            (
                "",
                everything.clone().with_file(cred_file, "\n"),
                Err("zoom.client_secret: \"/run/credentials/zcc-relay.service/\
                     zoom-client-secret\" is empty"),
            ),
        ];
        for (secret_lines, env, expected) in rows {
            let text = format!(
                "[zoom]\naccount_id = \"a\"\nclient_id = \"c\"\nsubscription_id = \"s\"\n\
                 {secret_lines}{SINK}"
            );
            let actual = match parse(&text, env) {
                Ok(loaded) => Ok(loaded.settings.zoom.client_secret.expose().to_owned()),
                Err(error) => Err(error.to_string()),
            };
            let expected = expected.map(str::to_owned).map_err(str::to_owned);
            assert_eq!(actual, expected, "config:\n{text}");
        }
    }

    #[test]
    fn sink_secret_is_optional_and_found_by_name() {
        let creds = "/run/credentials/zcc-relay.service";
        let rows: &[(&str, FakeEnvironment, Option<&str>)] = &[
            ("", FakeEnvironment::new(), None),
            (
                "secret = \"inline\"\n",
                FakeEnvironment::new(),
                Some("inline"),
            ),
            (
                "secret_file = \"/s\"\n",
                FakeEnvironment::new().with_file("/s", "whsec_abc\n"),
                Some("whsec_abc"),
            ),
            (
                "",
                FakeEnvironment::new()
                    .with_var("CREDENTIALS_DIRECTORY", creds)
                    .with_file(format!("{creds}/sink-crm.eu-1-secret"), "cred\n")
                    .with_var("ZCC_RELAY_SINK_CRM_EU_1_SECRET", "env"),
                Some("cred"),
            ),
            (
                "",
                FakeEnvironment::new().with_var("ZCC_RELAY_SINK_CRM_EU_1_SECRET", "env"),
                Some("env"),
            ),
        ];
        for (secret_lines, env, expected) in rows {
            let text = format!(
                "{ZOOM}[[sinks]]\nname = \"crm.eu-1\"\ntype = \"http\"\n\
                 url = \"https://crm.test/\"\n{secret_lines}"
            );
            let settings = settings(env, &text);
            let SinkKind::Http(HttpSinkSettings { secret, .. }) = &settings.sinks[0].kind else {
                panic!("not an http sink: {:?}", settings.sinks[0]);
            };
            assert_eq!(
                secret.as_ref().map(|s| s.expose()),
                *expected,
                "config:\n{text}"
            );
        }
    }

    #[test]
    fn journal_and_media_store_defaults_follow_the_environment() {
        let rows: &[(&str, FakeEnvironment, &str, &str)] = &[
            (
                "",
                FakeEnvironment::new().with_cwd("/home/relay"),
                "./zcc-relay-data",
                "file:///home/relay/zcc-relay-data/media",
            ),
            (
                "",
                FakeEnvironment::new()
                    .with_var("STATE_DIRECTORY", "/var/lib/zcc-relay:/var/lib/other"),
                "/var/lib/zcc-relay",
                "file:///var/lib/zcc-relay/media",
            ),
            (
                "[journal]\ndir = \"/data\"",
                FakeEnvironment::new().with_var("STATE_DIRECTORY", "/var/lib/zcc-relay"),
                "/data",
                "file:///data/media",
            ),
            (
                "[journal]\ndir = \"state\"\n[media]\nstore = \"s3://bucket/zoom\"",
                FakeEnvironment::new(),
                "state",
                "s3://bucket/zoom",
            ),
        ];
        for (extra, env, dir, store) in rows {
            let settings = settings(env, &with_base(extra));
            assert_eq!(settings.journal.dir.to_str(), Some(*dir), "{extra}");
            assert_eq!(settings.media.store.as_str(), *store, "{extra}");
        }
        check_in(
            &FakeEnvironment::new().with_cwd(""),
            &with_base("[journal]\ndir = \"state\""),
            &[
                "error: media.store: no default: journal.dir \"state\" is relative and the \
               current directory is unknown; set media.store",
            ],
        );
    }

    #[test]
    fn media_options_read_file_keys_and_stringify_scalars() {
        let env = FakeEnvironment::new().with_file("/run/s3-secret", "s3cr3t\n");
        let text = with_base(
            "[media]\nenabled = false\nstore = \"s3://b/z\"\n[media.options]\naws_region = \"eu-west-1\"\n\
             aws_allow_http = true\npool_max_idle_per_host = 3\n\
             aws_secret_access_key_file = \"/run/s3-secret\"",
        );
        let media = settings(&env, &text).media;
        assert!(!media.enabled);
        let options: Vec<(&str, &str)> = media
            .options
            .iter()
            .map(|(key, value)| (key.as_str(), value.expose()))
            .collect();
        assert_eq!(
            options,
            [
                ("aws_allow_http", "true"),
                ("aws_region", "eu-west-1"),
                ("aws_secret_access_key", "s3cr3t"),
                ("pool_max_idle_per_host", "3"),
            ]
        );
    }

    #[test]
    fn debug_of_settings_never_shows_a_secret() {
        let env = FakeEnvironment::new()
            .with_file("/zoom", "zoom-SECRET-1\n")
            .with_file("/s3", "s3-SECRET-2")
            .with_var("ZCC_RELAY_SINK_ARCHIVE_SECRET", "unused-SECRET-3");
        let text = r#"
[zoom]
account_id = "a"
client_id = "c"
client_secret_file = "/zoom"
subscription_id = "s"
[media]
store = "s3://b/z"
[media.options]
aws_secret_access_key_file = "/s3"
aws_access_key_id = "key-SECRET-4"
[[sinks]]
name = "crm"
type = "http"
url = "https://crm.test/"
secret = "whsec_SECRET-5"
[[sinks]]
name = "archive"
type = "file"
path = "/x"
"#;
        let settings = settings(&env, text);
        for rendered in [format!("{settings:?}"), format!("{settings:#?}")] {
            assert!(!rendered.contains("SECRET"), "secret in {rendered}");
            assert!(rendered.contains("***"), "{rendered}");
        }
        let Some(SinkKind::Http(HttpSinkSettings {
            secret: Some(secret),
            ..
        })) = settings.sink("crm").map(|sink| &sink.kind)
        else {
            panic!("crm has no secret: {settings:?}");
        };
        assert_eq!(secret.expose(), "whsec_SECRET-5");
    }
    /// `status` and `queue` run by hand, where the service's credential files
    /// are absent: with `Secrets::Skip` nothing is read and nothing is missing,
    /// while what the file itself gets wrong is still reported.
    #[test]
    fn skipped_secrets_are_neither_read_nor_required() {
        let text = r#"
[zoom]
account_id = "acct"
client_id = "client"
client_secret_file = "/run/credentials/zcc-relay.service/zoom-client-secret"
subscription_id = "sub"
[media]
store = "s3://recordings/zoom"
[media.options]
aws_secret_access_key_file = "/run/credentials/zcc-relay.service/s3-secret"
[[sinks]]
name = "crm"
type = "http"
url = "https://crm.example.com/zoom"
secret_file = "/run/credentials/zcc-relay.service/crm-signing-secret"
[[sinks]]
name = "erp"
type = "http"
url = "https://erp.example.com/zoom"
"#;
        let env = FakeEnvironment::new();
        let problems = parse(text, &env).unwrap_err().problems;
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "zoom.client_secret_file",
                "media.options.aws_secret_access_key_file",
                "sinks[0].secret_file"
            ]
        );

        let loaded = parse_with(text, &env, Secrets::Skip).unwrap();
        assert_eq!(loaded.settings.zoom.client_secret.expose(), "");
        assert_eq!(loaded.settings.sinks.len(), 2);
        // No place set at all (the systemd credential by default): present too.
        let bare = text.replace(
            "client_secret_file = \"/run/credentials/zcc-relay.service/zoom-client-secret\"\n",
            "",
        );
        assert!(parse(&bare, &env).is_err());
        assert!(parse_with(&bare, &env, Secrets::Skip).is_ok());

        let wrong = text.replace("account_id = \"acct\"\n", "");
        let problems = parse_with(&wrong, &env, Secrets::Skip)
            .unwrap_err()
            .problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "zoom.account_id");
        let both = text.replace(
            "subscription_id = \"sub\"",
            "subscription_id = \"sub\"\nclient_secret = \"inline\"",
        );
        let problems = parse_with(&both, &env, Secrets::Skip).unwrap_err().problems;
        assert_eq!(problems[0].key, "zoom.client_secret", "{problems:?}");
    }

    /// `[standby]`: the lease's keys and the nats sink's connection keys,
    /// each problem under `standby.<key>`.
    #[test]
    fn standby_is_validated_with_the_nats_connection_keys() {
        check_table(&[
            ("", &[]),
            (
                "[standby]\nlease_servers = [\"nats://127.0.0.1:4222\"]",
                &[],
            ),
            (
                "[standby]\nlease_servers = [\"nats://127.0.0.1:4222\"]\nttl = \"3s\"",
                &[
                    "warning: standby.ttl: under 5s, a slow NATS round trip makes the leader step down",
                ],
            ),
            (
                "[standby]\nlease_servers = [\"nats://127.0.0.1:4222\"]\nttl = \"10m\"",
                &[
                    "warning: standby.ttl: over 5m, a failover leaves the socket closed for that long",
                ],
            ),
            (
                "[standby]\nttl = \"500ms\"\nbucket = \"a.b\"",
                &[
                    "error: standby.lease_servers: missing; required in [standby]",
                    "error: standby.bucket: \"a.b\" is not a KV bucket name: letters, digits, '_' and '-', at most 200 characters",
                    "error: standby.ttl: must be at least 1s: the lease is renewed every ttl/5 over the network",
                ],
            ),
            (
                "[standby]\nlease_servers = [\"http://x:1\"]\ntoken = \"t\"\nuser = \"u\"",
                &[
                    "error: standby.credentials_file: set at most one of credentials_file, token_file, nkey_seed_file, user + password_file",
                    "error: standby.lease_servers: \"http://x:1\" is not a nats://host:port or tls://host:port URL",
                ],
            ),
            (
                "[standby]\nlease_servers = [\"tls://127.0.0.1:4222\"]\ntls_cert_file = \"/c.pem\"",
                &["error: standby.tls_key_file: missing; required in [standby]"],
            ),
            (
                "[standby]\nlease_servers = [\"nats://nats.internal:4222\"]",
                &[
                    "warning: standby.lease_servers: nats://nats.internal is not encrypted unless the server requires TLS; use tls://",
                ],
            ),
            (
                "[reconcile]\nenabled = false\n[standby]\nlease_servers = [\"nats://127.0.0.1:4222\"]",
                &[
                    "warning: standby: reconcile.enabled or reconcile.on_reconnect is false: a new leader cannot fill the window of a failover from the REST API",
                ],
            ),
        ]);
        let lines = outcome(
            &with_base("[standby]\nlease_servers = [\"nats://127.0.0.1:4222\"]\nholder = \"x\""),
            &FakeEnvironment::new(),
        );
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("unknown field `holder`"), "{lines:?}");
    }

    #[test]
    fn standby_settings_and_their_secret_places() {
        let text = with_base("[standby]\nlease_servers = [\"nats://127.0.0.1:4222\"]");
        let standby = settings(&FakeEnvironment::new(), &text).standby.unwrap();
        assert_eq!(standby.bucket, "zcc_relay");
        assert_eq!(standby.ttl, std::time::Duration::from_secs(15));
        assert_eq!(standby.connection.auth, crate::sink::nats::NatsAuth::None);
        // A token from the credential `standby-token`, else ZCC_RELAY_STANDBY_TOKEN.
        let env = FakeEnvironment::new()
            .with_var(
                "CREDENTIALS_DIRECTORY",
                "/run/credentials/zcc-relay.service",
            )
            .with_file("/run/credentials/zcc-relay.service/standby-token", "tok\n");
        let standby = settings(&env, &text).standby.unwrap();
        assert_eq!(
            standby.connection.auth,
            crate::sink::nats::NatsAuth::Token(crate::config::Secret::new("tok".into()))
        );
        let env = FakeEnvironment::new().with_var("ZCC_RELAY_STANDBY_TOKEN", "env-tok");
        let standby = settings(&env, &text).standby.unwrap();
        assert_eq!(
            standby.connection.auth,
            crate::sink::nats::NatsAuth::Token(crate::config::Secret::new("env-tok".into()))
        );
        assert!(!format!("{standby:?}").contains("env-tok"));
    }

    /// The commented `[standby]` block of config.toml.example, uncommented,
    /// validates quietly given the file it names.
    #[test]
    fn the_examples_standby_block_validates() {
        let example = include_str!("../../config.toml.example");
        let start = example.find("# [standby]").expect("a [standby] block");
        let block: String = example[start..]
            .lines()
            .take_while(|line| line.starts_with("# "))
            .map(|line| format!("{}\n", &line[2..]))
            .collect();
        let env = FakeEnvironment::new()
            .with_file("/run/credentials/zcc-relay.service/nats.creds", "creds\n");
        let text = with_base(&block);
        assert_eq!(outcome(&text, &env), Vec::<String>::new(), "{block}");
        let standby = settings(&env, &text).standby.unwrap();
        assert_eq!(standby.ttl, std::time::Duration::from_secs(15));
        assert_eq!(standby.bucket, "zcc_relay");
        assert_eq!(standby.connection.servers.len(), 2);
    }
}
