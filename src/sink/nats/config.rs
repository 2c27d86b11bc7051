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

impl NatsSinkConfig {
    pub fn validate(self, check: &mut SinkCheck<'_, '_>) -> Option<NatsSinkSettings> {
        let auth = auth(check, &self);
        let servers = match self.servers {
            Some(list) if list.is_empty() => {
                check.error("servers", "must name at least one server");
                None
            }
            Some(list) => {
                let parsed: Vec<Option<url::Url>> =
                    list.iter().map(|text| server_url(check, text)).collect();
                parsed.into_iter().collect::<Option<Vec<_>>>()
            }
            None => check.missing("servers"),
        };
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
        let tls_client = match (self.tls_cert_file, self.tls_key_file) {
            (Some(cert), Some(key)) => Some(Some((cert, key))),
            (None, None) => Some(None),
            (Some(_), None) => check.missing("tls_key_file"),
            (None, Some(_)) => check.missing("tls_cert_file"),
        };
        Some(NatsSinkSettings {
            servers: servers?,
            stream: stream?,
            subject: subject?,
            create_stream,
            auth: auth?,
            tls_ca_file: self.tls_ca_file,
            tls_client: tls_client?,
        })
    }
}

/// One `servers` entry: `nats://host:port` or `tls://host:port`, with no
/// credentials in it (they belong in files). Plain `nats://` beyond loopback
/// works but is unencrypted unless the server demands TLS: a warning.
fn server_url(check: &mut SinkCheck<'_, '_>, text: &str) -> Option<url::Url> {
    let url = match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "nats" | "tls") && url.host_str().is_some() => url,
        _ => {
            check.error(
                "servers",
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
            "servers",
            "a server URL must not carry credentials; use user + password_file, token_file, \
             nkey_seed_file or credentials_file",
        );
        return None;
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if url.scheme() == "nats" && !loopback {
        check.warn(
            "servers",
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
    use super::is_stream_name;

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
