//! The nats kind's keys (DESIGN.md §3.6): [`NatsSinkConfig`] as written,
//! [`NatsSinkSettings`] validated, and which of them a reload applies live
//! (none: the connection's servers, credentials and TLS are fixed when it is
//! made, so every change needs a restart).
//!
//! Owns the keys and their checks, including the subject template's
//! (`subject`). Reading the credential files' contents is `SinkCheck::secret`'s;
//! proving them against a server is `check`'s.

use std::path::PathBuf;

use serde::Deserialize;

use super::subject::Template;
use crate::config::{Secret, SinkCheck};
use crate::sink::Reload;

pub const DEFAULT_SUBJECT: &str = "zcc.{account_id}.{event}";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSinkConfig {
    pub servers: Option<Vec<String>>,
    pub stream: Option<String>,
    pub subject: Option<String>,
    pub create_stream: Option<bool>,
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

/// How the connection authenticates (at most one way, §3.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatsAuth {
    None,
    /// A `.creds` file's text: the user JWT and the nkey seed that signs the nonce.
    Credentials(Secret),
    Token(Secret),
    /// An nkey seed (`SU…`).
    NkeySeed(Secret),
    UserPassword {
        user: String,
        password: Secret,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsSinkSettings {
    /// `nats://` or `tls://` URLs, without credentials.
    pub servers: Vec<url::Url>,
    pub stream: String,
    pub subject: Template,
    pub create_stream: bool,
    pub auth: NatsAuth,
    /// PEM roots that replace the operating system's for `tls://` servers.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM certificate chain and key presented to servers that ask for one.
    pub tls_client: Option<(PathBuf, PathBuf)>,
}

/// What a NATS connection is made from: the servers, the credentials and the
/// TLS files. The nats sink has one; so has `[standby]`'s lease, whose table
/// takes the same connection keys (its servers under `lease_servers`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsConnection {
    pub servers: Vec<url::Url>,
    pub auth: NatsAuth,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_client: Option<(PathBuf, PathBuf)>,
}

/// The connection keys of `config` (its credentials and TLS files) with the
/// servers written under `servers_key`, validated as for a nats sink.
pub fn connection(
    check: &mut SinkCheck<'_, '_>,
    servers_key: &str,
    servers: Option<Vec<String>>,
    config: &NatsSinkConfig,
) -> Option<NatsConnection> {
    let auth = auth(check, config);
    let servers = match servers {
        Some(list) if list.is_empty() => {
            check.error(servers_key, "must name at least one server");
            None
        }
        Some(list) => {
            let parsed: Vec<Option<url::Url>> = list
                .iter()
                .map(|text| server_url(check, servers_key, text))
                .collect();
            parsed.into_iter().collect::<Option<Vec<_>>>()
        }
        None => check.missing(servers_key),
    };
    let tls_client = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Some(Some((cert.clone(), key.clone()))),
        (None, None) => Some(None),
        (Some(_), None) => check.missing("tls_key_file"),
        (None, Some(_)) => check.missing("tls_cert_file"),
    };
    Some(NatsConnection {
        servers: servers?,
        auth: auth?,
        tls_ca_file: config.tls_ca_file.clone(),
        tls_client: tls_client?,
    })
}

impl NatsSinkSettings {
    /// The sink's connection keys.
    pub fn connection(&self) -> NatsConnection {
        NatsConnection {
            servers: self.servers.clone(),
            auth: self.auth.clone(),
            tls_ca_file: self.tls_ca_file.clone(),
            tls_client: self.tls_client.clone(),
        }
    }
}

impl NatsSinkConfig {
    pub fn validate(self, check: &mut SinkCheck<'_, '_>) -> Option<NatsSinkSettings> {
        let connection = connection(check, "servers", self.servers.clone(), &self);
        let stream = match self.stream {
            Some(name) if is_stream_name(&name) => Some(name),
            Some(_) => {
                check.error(
                    "stream",
                    "must be a stream name: not empty, at most 255 characters, no spaces, \
                     '.', '*', '>', '/' or '\\'",
                );
                None
            }
            None => check.missing("stream"),
        };
        let create_stream = self.create_stream.unwrap_or(false);
        let subject = match Template::parse(self.subject.as_deref().unwrap_or(DEFAULT_SUBJECT)) {
            Ok(template) => {
                if create_stream && template.literal_prefix().is_empty() {
                    check.error(
                        "subject",
                        "must start with a literal token (\"zcc.\") when create_stream = true: \
                         the stream is created for that prefix",
                    );
                    None
                } else {
                    Some(template)
                }
            }
            Err(message) => {
                check.error("subject", message);
                None
            }
        };
        let NatsConnection {
            servers,
            auth,
            tls_ca_file,
            tls_client,
        } = connection?;
        Some(NatsSinkSettings {
            servers,
            stream: stream?,
            subject: subject?,
            create_stream,
            auth,
            tls_ca_file,
            tls_client,
        })
    }
}

/// One `servers` entry: `nats://host:port` or `tls://host:port`, with no
/// credentials in it (they belong in files). Plain `nats://` beyond loopback
/// works but is unencrypted unless the server demands TLS: a warning.
fn server_url(check: &mut SinkCheck<'_, '_>, key: &str, text: &str) -> Option<url::Url> {
    let url = match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "nats" | "tls") && url.host_str().is_some() => url,
        _ => {
            check.error(
                key,
                format!(
                    "{:?} is not a nats://host:port or tls://host:port URL",
                    crate::escape::for_display(text, 80)
                ),
            );
            return None;
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        check.error(
            key,
            "a server URL must not carry credentials; use user + password_file, token_file, \
             nkey_seed_file or credentials_file",
        );
        return None;
    }
    // nats:// is not a scheme `url` knows, so an address is a plain host string.
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if url.scheme() == "nats" && !loopback {
        check.warn(
            key,
            format!(
                "nats://{} is not encrypted unless the server requires TLS; use tls://",
                url.host_str().unwrap_or_default()
            ),
        );
    }
    Some(url)
}

/// At most one of the four ways (§3.6); a user needs a password and a
/// password needs a user.
fn auth(check: &mut SinkCheck<'_, '_>, config: &NatsSinkConfig) -> Option<NatsAuth> {
    let credentials = check.secret(
        "credentials",
        config.credentials.clone(),
        config.credentials_file.clone(),
    );
    let token = check.secret("token", config.token.clone(), config.token_file.clone());
    let nkey_seed = check.secret(
        "nkey_seed",
        config.nkey_seed.clone(),
        config.nkey_seed_file.clone(),
    );
    let password = check.secret(
        "password",
        config.password.clone(),
        config.password_file.clone(),
    );
    // Under `Secrets::Skip` (`queue`, `status`) every secret comes back unread
    // (empty, which a read secret never is): only the keys written in the
    // file say which way is configured.
    let written = |secret: Option<Secret>, inline: &Option<String>, file: &Option<PathBuf>| {
        secret.filter(|s| !s.expose().is_empty() || inline.is_some() || file.is_some())
    };
    let credentials = written(credentials?, &config.credentials, &config.credentials_file);
    let token = written(token?, &config.token, &config.token_file);
    let nkey_seed = written(nkey_seed?, &config.nkey_seed, &config.nkey_seed_file);
    let password = written(password?, &config.password, &config.password_file);
    let user = config.user.clone();
    let ways = [
        credentials.is_some(),
        token.is_some(),
        nkey_seed.is_some(),
        user.is_some() || password.is_some(),
    ];
    if ways.iter().filter(|set| **set).count() > 1 {
        check.error(
            "credentials_file",
            "set at most one of credentials_file, token_file, nkey_seed_file, user + password_file",
        );
        return None;
    }
    Some(match (credentials, token, nkey_seed, user, password) {
        (Some(creds), ..) => NatsAuth::Credentials(creds),
        (_, Some(token), ..) => NatsAuth::Token(token),
        (_, _, Some(seed), ..) => NatsAuth::NkeySeed(seed),
        (_, _, _, Some(user), Some(password)) if !user.is_empty() => {
            NatsAuth::UserPassword { user, password }
        }
        (_, _, _, Some(_), Some(_)) => {
            check.error("user", "must not be empty");
            return None;
        }
        (_, _, _, Some(_), None) => return check.missing("password_file"),
        (_, _, _, None, Some(_)) => return check.missing("user"),
        (None, None, None, None, None) => NatsAuth::None,
    })
}

/// JetStream's rule for stream names: printable, no whitespace, none of
/// `. * > / \`, at most 255 bytes (they become file names on the server).
pub fn is_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !".*>/\\".contains(c))
}

impl NatsSinkSettings {
    /// Every key needs a restart: the connection is made once, with them.
    pub fn reload(&self, loaded: &NatsSinkSettings) -> Reload<NatsSinkSettings> {
        let NatsSinkSettings {
            servers,
            stream,
            subject,
            create_stream,
            auth,
            tls_ca_file,
            tls_client,
        } = loaded;
        let mut reload = Reload::new(self);
        reload.restart("servers", &self.servers, servers);
        reload.restart("stream", &self.stream, stream);
        reload.restart("subject", &self.subject, subject);
        reload.restart("create_stream", &self.create_stream, create_stream);
        reload.restart("credentials", &self.auth, auth);
        reload.restart("tls_ca_file", &self.tls_ca_file, tls_ca_file);
        reload.restart("tls_cert_file", &self.tls_client, tls_client);
        reload
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FakeEnvironment, SinkKind, parse};

    const BASE: &str = r#"
        [zoom]
        account_id = "a"
        client_id = "c"
        client_secret = "s"
        subscription_id = "sub"
        [journal]
        dir = "/data"
        [[sinks]]
        name = "bus"
        type = "nats"
    "#;

    fn env() -> FakeEnvironment {
        FakeEnvironment::new()
            .with_file("/run/nats.creds", "creds text\n")
            .with_file("/run/token", "tok\n")
            .with_file("/run/password", "pw\n")
    }

    /// The sink's keys (after `type`) → its settings, or every problem as
    /// `key: message`.
    fn load(keys: &str) -> Result<NatsSinkSettings, Vec<String>> {
        match parse(&format!("{BASE}{keys}"), &env()) {
            Ok(loaded) => match &loaded.settings.sinks[0].kind {
                SinkKind::Nats(settings) => Ok(settings.clone()),
                other => panic!("{other:?}"),
            },
            Err(error) => Err(error
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect()),
        }
    }

    fn refused(keys: &str, key: &str, says: &str) {
        let problems = load(keys).expect_err(keys);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("sinks[0].{key}: ")) && p.contains(says)),
            "{keys}: {problems:?}"
        );
    }

    #[test]
    fn the_example_block_loads() {
        let example = include_str!("../../../config.toml.example");
        let block: String = example
            .split("# A NATS JetStream stream")
            .nth(1)
            .expect("config.toml.example has a nats block")
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| !line.starts_with("[[sinks]]") && line.contains(" = "))
            .filter(|line| !line.starts_with("name = ") && !line.starts_with("type = "))
            .map(|line| format!("{line}\n"))
            .collect();
        let env = env().with_file("/run/credentials/zcc-relay.service/nats.creds", "creds\n");
        let loaded = parse(&format!("{BASE}{block}"), &env)
            .unwrap_or_else(|error| panic!("{error}\n{block}"));
        assert_eq!(loaded.warnings, []);
        let SinkKind::Nats(settings) = &loaded.settings.sinks[0].kind else {
            panic!("not a nats sink")
        };
        assert_eq!(settings.stream, "ZCC");
        assert_eq!(settings.subject.as_str(), DEFAULT_SUBJECT);
        assert_eq!(settings.servers.len(), 2);
        assert!(!settings.create_stream);
        assert_eq!(
            settings.auth,
            NatsAuth::Credentials(Secret::new("creds".into()))
        );
        assert_eq!(loaded.settings.sinks[0].max_in_flight, 64);
    }

    #[test]
    fn defaults_and_each_way_to_authenticate() {
        let minimal = load("servers = [\"nats://127.0.0.1:4222\"]\nstream = \"ZCC\"\n").unwrap();
        assert_eq!(minimal.subject.as_str(), DEFAULT_SUBJECT);
        assert_eq!(minimal.auth, NatsAuth::None);
        assert_eq!(minimal.tls_client, None);
        let with = |auth: &str| {
            load(&format!(
                "servers = [\"nats://localhost:4222\"]\nstream = \"ZCC\"\n{auth}\n"
            ))
            .unwrap()
            .auth
        };
        assert_eq!(
            with("token_file = \"/run/token\""),
            NatsAuth::Token(Secret::new("tok".into()))
        );
        assert_eq!(
            with("credentials_file = \"/run/nats.creds\""),
            NatsAuth::Credentials(Secret::new("creds text".into()))
        );
        assert_eq!(
            with("user = \"relay\"\npassword_file = \"/run/password\""),
            NatsAuth::UserPassword {
                user: "relay".into(),
                password: Secret::new("pw".into())
            }
        );
    }

    #[test]
    fn refuses_what_cannot_work() {
        let ok = "stream = \"ZCC\"\n";
        refused(ok, "servers", "missing");
        refused(&format!("{ok}servers = []"), "servers", "at least one");
        refused(
            &format!("{ok}servers = [\"http://x:4222\"]"),
            "servers",
            "nats://host:port",
        );
        refused(
            &format!("{ok}servers = [\"nats://u:p@x:4222\"]"),
            "servers",
            "must not carry credentials",
        );
        let servers = "servers = [\"nats://127.0.0.1:4222\"]\n";
        refused(servers, "stream", "missing");
        refused(
            &format!("{servers}stream = \"a.b\""),
            "stream",
            "stream name",
        );
        refused(
            &format!("{servers}{ok}subject = \"zcc.>\""),
            "subject",
            "wildcard",
        );
        refused(
            &format!("{servers}{ok}subject = \"zcc.{{id}}\""),
            "subject",
            "unknown placeholder",
        );
        refused(
            &format!("{servers}{ok}subject = \"{{account_id}}.x\"\ncreate_stream = true"),
            "subject",
            "literal token",
        );
        refused(
            &format!(
                "{servers}{ok}token_file = \"/run/token\"\ncredentials_file = \"/run/nats.creds\""
            ),
            "credentials_file",
            "at most one",
        );
        refused(
            &format!("{servers}{ok}user = \"relay\""),
            "password_file",
            "missing",
        );
        refused(
            &format!("{servers}{ok}password_file = \"/run/password\""),
            "user",
            "missing",
        );
        refused(
            &format!("{servers}{ok}tls_cert_file = \"/c.pem\""),
            "tls_key_file",
            "missing",
        );
    }

    #[test]
    fn plain_nats_beyond_loopback_is_a_warning() {
        let text = format!(
            "{BASE}servers = [\"nats://nats1.internal:4222\", \"nats://[::1]:4222\"]\nstream = \"ZCC\"\n"
        );
        let loaded = parse(&text, &env()).unwrap();
        let warnings: Vec<_> = loaded.warnings.iter().map(|w| w.message.clone()).collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("nats1.internal"), "{warnings:?}");
    }

    #[test]
    fn stream_names_follow_jetstream() {
        for (name, ok) in [
            ("ZCC", true),
            ("zcc-events_1", true),
            ("", false),
            ("a.b", false),
            ("a b", false),
            ("a*", false),
            ("a>", false),
            ("a/b", false),
            ("a\\b", false),
        ] {
            assert_eq!(is_stream_name(name), ok, "{name:?}");
        }
        assert!(!is_stream_name(&"x".repeat(256)));
    }
}
