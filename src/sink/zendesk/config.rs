//! The zendesk kind's keys (DESIGN.md §3.5): [`ZendeskSinkConfig`] as
//! written, [`ZendeskSinkSettings`] validated, and which of them a reload
//! applies live (the client secret or API token; everything else needs a
//! restart).

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{Secret, SinkCheck};
use crate::crm::{budget, phone};
use crate::sink::Reload;

/// Zendesk's limit on Update Ticket calls per account and minute.
pub const DEFAULT_TICKET_UPDATES_PER_MINUTE: u32 = 100;
/// What the token asks for: tickets, users and uploads are read and written.
pub const OAUTH_SCOPE: &str = "read write";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZendeskSinkConfig {
    pub url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub email: Option<String>,
    pub api_token: Option<String>,
    pub api_token_file: Option<PathBuf>,
    pub create_requesters: Option<bool>,
    pub disposition_field_id: Option<u64>,
    pub attach_files: Option<bool>,
    pub link_customers: Option<bool>,
    pub default_region: Option<String>,
    pub requests_per_second: Option<u32>,
    pub ticket_updates_per_minute: Option<u32>,
}

/// How the sink proves who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZendeskAuth {
    /// An OAuth client's client-credentials grant at `{url}/oauth/tokens`.
    OAuth {
        client_id: String,
        client_secret: Secret,
    },
    /// HTTP Basic `{email}/token:{api_token}`, until Zendesk switches API
    /// tokens off (30 April 2027).
    ApiToken { email: String, api_token: Secret },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZendeskSinkSettings {
    /// The account's URL (`https://acme.zendesk.com`).
    pub url: url::Url,
    pub auth: ZendeskAuth,
    /// No user has the caller's number: create an end-user with it (else
    /// the integration user stays the requester).
    pub create_requesters: bool,
    /// A ticket field (drop-down or text) that holds the current
    /// disposition's name, besides its tag.
    pub disposition_field_id: Option<u64>,
    pub attach_files: bool,
    pub link_customers: bool,
    pub default_region: String,
    pub requests_per_second: u32,
    pub ticket_updates_per_minute: u32,
}

impl ZendeskSinkSettings {
    /// `url` without a trailing slash.
    pub fn base(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }
}

impl ZendeskSinkConfig {
    pub fn validate(self, check: &mut SinkCheck<'_, '_>) -> Option<ZendeskSinkSettings> {
        let url = match self.url {
            Some(text) => check.http_url("url", &text),
            None => check.missing("url"),
        };
        let client_secret =
            check.secret("client_secret", self.client_secret, self.client_secret_file);
        let api_token = check.secret("api_token", self.api_token, self.api_token_file);
        let auth = match (self.client_id, self.email) {
            (Some(_), Some(_)) => {
                check.error(
                    "email",
                    "set either client_id (OAuth) or email (API token), not both",
                );
                None
            }
            (Some(client_id), None) => {
                if client_id.trim().is_empty() {
                    check.error("client_id", "must not be empty");
                }
                match client_secret {
                    Some(Some(secret)) if !client_id.trim().is_empty() => {
                        Some(ZendeskAuth::OAuth {
                            client_id: client_id.trim().to_owned(),
                            client_secret: secret,
                        })
                    }
                    Some(None) => check.missing("client_secret"),
                    _ => None,
                }
            }
            (None, Some(email)) => {
                if !email.contains('@') || email.contains(char::is_whitespace) {
                    check.error("email", "must be the integration user's e-mail address");
                }
                match api_token {
                    Some(Some(token)) if email.contains('@') => {
                        check.warn(
                            "api_token",
                            "Zendesk switches API tokens off on 30 April 2027 (none can be \
                             created after 27 October 2026): move to an OAuth client \
                             (client_id and client_secret_file)",
                        );
                        Some(ZendeskAuth::ApiToken {
                            email: email.trim().to_owned(),
                            api_token: token,
                        })
                    }
                    Some(None) => check.missing("api_token"),
                    _ => None,
                }
            }
            (None, None) => {
                check.error(
                    "client_id",
                    "missing; set client_id and client_secret_file (an OAuth client), \
                     or email and api_token_file",
                );
                None
            }
        };
        let default_region = phone::default_region_key(check, self.default_region);
        let requests_per_second = budget::requests_per_second_key(check, self.requests_per_second);
        let ticket_updates_per_minute = match self.ticket_updates_per_minute {
            None => Some(DEFAULT_TICKET_UPDATES_PER_MINUTE),
            Some(n @ 1..=100_000) => Some(n),
            Some(_) => {
                check.error("ticket_updates_per_minute", "must be between 1 and 100000");
                None
            }
        };
        Some(ZendeskSinkSettings {
            url: url?,
            auth: auth?,
            create_requesters: self.create_requesters.unwrap_or(true),
            disposition_field_id: self.disposition_field_id,
            attach_files: self.attach_files.unwrap_or(true),
            link_customers: self.link_customers.unwrap_or(true),
            default_region: default_region?,
            requests_per_second: requests_per_second?,
            ticket_updates_per_minute: ticket_updates_per_minute?,
        })
    }
}

fn secret_of(auth: &ZendeskAuth) -> &Secret {
    match auth {
        ZendeskAuth::OAuth { client_secret, .. } => client_secret,
        ZendeskAuth::ApiToken { api_token, .. } => api_token,
    }
}

fn secret_of_mut(auth: &mut ZendeskAuth) -> &mut Secret {
    match auth {
        ZendeskAuth::OAuth { client_secret, .. } => client_secret,
        ZendeskAuth::ApiToken { api_token, .. } => api_token,
    }
}

impl ZendeskSinkSettings {
    /// The client secret or API token applies from the next token request
    /// (or call) on; every other key needs a restart.
    pub fn reload(&self, loaded: &ZendeskSinkSettings) -> Reload<ZendeskSinkSettings> {
        let ZendeskSinkSettings {
            url,
            auth,
            create_requesters,
            disposition_field_id,
            attach_files,
            link_customers,
            default_region,
            requests_per_second,
            ticket_updates_per_minute,
        } = loaded;
        let mut reload = Reload::new(self);
        reload.restart("url", &self.url, url);
        match (&self.auth, auth) {
            (ZendeskAuth::OAuth { client_id: a, .. }, ZendeskAuth::OAuth { client_id: b, .. })
                if a == b =>
            {
                reload.live("client_secret", secret_of(auth), |s| {
                    secret_of_mut(&mut s.auth)
                });
            }
            (ZendeskAuth::ApiToken { email: a, .. }, ZendeskAuth::ApiToken { email: b, .. })
                if a == b =>
            {
                reload.live("api_token", secret_of(auth), |s| secret_of_mut(&mut s.auth));
            }
            (running, loaded) => reload.restart("client_id", running, loaded),
        }
        reload.restart(
            "create_requesters",
            &self.create_requesters,
            create_requesters,
        );
        reload.restart(
            "disposition_field_id",
            &self.disposition_field_id,
            disposition_field_id,
        );
        reload.restart("attach_files", &self.attach_files, attach_files);
        reload.restart("link_customers", &self.link_customers, link_customers);
        reload.restart("default_region", &self.default_region, default_region);
        reload.restart(
            "requests_per_second",
            &self.requests_per_second,
            requests_per_second,
        );
        reload.restart(
            "ticket_updates_per_minute",
            &self.ticket_updates_per_minute,
            ticket_updates_per_minute,
        );
        reload
    }
}

#[cfg(test)]
mod example_tests {
    use crate::config::{FakeEnvironment, Secrets, parse_sink};
    use crate::sink::SinkKind;

    use super::ZendeskAuth;

    /// The commented `zendesk` block of config.toml.example, uncommented, is
    /// a valid sink.
    #[test]
    fn the_example_block_validates() {
        let block = crate::config::example_sink_block("zendesk");
        let env = FakeEnvironment::new().with_file(
            "/run/credentials/zcc-relay.service/zendesk-secret",
            "oauth-secret\n",
        );
        let (settings, warnings) = match parse_sink::<SinkKind>(&block, &env, Secrets::Read) {
            Ok(parsed) => parsed,
            Err(error) => panic!("{error}\n{block}"),
        };
        assert_eq!(warnings, []);
        let SinkKind::Zendesk(zendesk) = settings.kind else {
            panic!("not a zendesk sink: {block}");
        };
        let ZendeskAuth::OAuth {
            client_id,
            client_secret,
        } = &zendesk.auth
        else {
            panic!("not OAuth: {block}");
        };
        assert_eq!(client_id, "zcc_relay");
        assert_eq!(client_secret.expose(), "oauth-secret");
        assert!(zendesk.create_requesters);
        assert_eq!(zendesk.disposition_field_id, Some(360_001_234_567));
        assert_eq!(zendesk.ticket_updates_per_minute, 100);
    }

    #[test]
    fn an_api_token_is_accepted_with_a_warning_and_both_ways_at_once_are_not() {
        let env = FakeEnvironment::new().with_file("/tok", "t0ken\n");
        let block = "name = \"zd\"\ntype = \"zendesk\"\nurl = \"https://acme.zendesk.com\"\n\
                     email = \"relay@acme.example\"\napi_token_file = \"/tok\"\n";
        let (settings, warnings) = parse_sink::<SinkKind>(block, &env, Secrets::Read).unwrap();
        assert!(
            warnings.iter().any(|w| w.message.contains("30 April 2027")),
            "{warnings:?}"
        );
        let SinkKind::Zendesk(zendesk) = settings.kind else {
            panic!("not a zendesk sink");
        };
        assert!(matches!(zendesk.auth, ZendeskAuth::ApiToken { .. }));
        let both = format!("{block}client_id = \"x\"\nclient_secret = \"y\"\n");
        let error = parse_sink::<SinkKind>(&both, &env, Secrets::Read).unwrap_err();
        assert!(format!("{error:?}").contains("not both"), "{error:?}");
        let neither = "name = \"zd\"\ntype = \"zendesk\"\nurl = \"https://acme.zendesk.com\"\n";
        let error = parse_sink::<SinkKind>(neither, &env, Secrets::Read).unwrap_err();
        assert!(format!("{error:?}").contains("client_id"), "{error:?}");
    }
}
