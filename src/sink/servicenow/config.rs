//! The servicenow kind's keys (DESIGN.md §3.5): [`ServiceNowSinkConfig`] as
//! written, [`ServiceNowSinkSettings`] validated, and which of them a reload
//! applies live (the client secret or password; everything else needs a
//! restart).

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{Secret, SinkCheck};
use crate::crm::budget::requests_per_second_key;
use crate::crm::phone::default_region_key;
use crate::sink::Reload;

pub const DEFAULT_TABLE: &str = "interaction";
pub const DEFAULT_CORRELATION_FIELD: &str = "u_zoom_engagement_id";
pub const DEFAULT_CONTACT_TABLE: &str = "customer_contact";
pub const DEFAULT_CONTACT_PHONE_FIELDS: &[&str] = &["phone", "mobile_phone"];
pub const DEFAULT_CONTACT_FIELD: &str = "contact";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceNowSinkConfig {
    pub instance_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub table: Option<String>,
    pub correlation_field: Option<String>,
    pub summary_field: Option<String>,
    pub contact_table: Option<String>,
    pub contact_phone_fields: Option<Vec<String>>,
    pub contact_field: Option<String>,
    pub attach_files: Option<bool>,
    pub link_customers: Option<bool>,
    pub default_region: Option<String>,
    pub requests_per_second: Option<u32>,
}

/// How the sink signs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// OAuth client credentials at `{instance_url}/oauth_token.do`.
    OAuth {
        client_id: String,
        client_secret: Secret,
    },
    /// HTTP Basic as an integration user.
    Basic { username: String, password: Secret },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceNowSinkSettings {
    /// `https://acme.service-now.com`.
    pub instance_url: url::Url,
    pub auth: Auth,
    /// The table holding one record per engagement.
    pub table: String,
    /// The String field of `table` holding the engagement's id.
    pub correlation_field: String,
    /// A String field of `table` for the whole summary (header, files not
    /// attached); `None`: the summary is not written.
    pub summary_field: Option<String>,
    pub contact_table: String,
    pub contact_phone_fields: Vec<String>,
    /// The reference field of `table` that links the matched contact.
    pub contact_field: String,
    pub attach_files: bool,
    pub link_customers: bool,
    pub default_region: String,
    pub requests_per_second: u32,
}

impl ServiceNowSinkSettings {
    /// `instance_url` without a trailing slash.
    pub fn instance(&self) -> &str {
        self.instance_url.as_str().trim_end_matches('/')
    }
}

/// A table or field name as ServiceNow makes them: lower-case letters,
/// digits and underscores, a letter first.
pub fn is_name(text: &str) -> bool {
    text.len() <= 80
        && text.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl ServiceNowSinkConfig {
    pub fn validate(self, check: &mut SinkCheck<'_, '_>) -> Option<ServiceNowSinkSettings> {
        let auth = self.auth(check);
        let instance_url = match self.instance_url {
            Some(text) => check.http_url("instance_url", &text),
            None => check.missing("instance_url"),
        };
        let mut name = |key: &str, value: Option<String>, default: &str| {
            let value = value.unwrap_or_else(|| default.to_owned());
            if is_name(&value) {
                Some(value)
            } else {
                check.error(
                    key,
                    "must be a name of lower-case letters, digits and underscores, a letter first",
                );
                None
            }
        };
        let table = name("table", self.table, DEFAULT_TABLE);
        let correlation_field = name(
            "correlation_field",
            self.correlation_field,
            DEFAULT_CORRELATION_FIELD,
        );
        let summary_field = match self.summary_field {
            Some(field) => name("summary_field", Some(field), "").map(Some),
            None => Some(None),
        };
        let contact_table = name("contact_table", self.contact_table, DEFAULT_CONTACT_TABLE);
        let contact_field = name("contact_field", self.contact_field, DEFAULT_CONTACT_FIELD);
        let phone_fields = self.contact_phone_fields.unwrap_or_else(|| {
            DEFAULT_CONTACT_PHONE_FIELDS
                .iter()
                .map(|f| f.to_string())
                .collect()
        });
        let contact_phone_fields = if !phone_fields.is_empty()
            && phone_fields.len() <= 8
            && phone_fields.iter().all(|f| is_name(f))
        {
            Some(phone_fields)
        } else {
            check.error(
                "contact_phone_fields",
                "must list 1 to 8 field names, e.g. [\"phone\", \"mobile_phone\"]",
            );
            None
        };
        let default_region = default_region_key(check, self.default_region);
        let requests_per_second = requests_per_second_key(check, self.requests_per_second);
        Some(ServiceNowSinkSettings {
            instance_url: instance_url?,
            auth: auth?,
            table: table?,
            correlation_field: correlation_field?,
            summary_field: summary_field?,
            contact_table: contact_table?,
            contact_phone_fields: contact_phone_fields?,
            contact_field: contact_field?,
            attach_files: self.attach_files.unwrap_or(true),
            link_customers: self.link_customers.unwrap_or(true),
            default_region: default_region?,
            requests_per_second: requests_per_second?,
        })
    }

    /// Exactly one of `client_id` (+ `client_secret`) and `username` (+
    /// `password`).
    fn auth(&self, check: &mut SinkCheck<'_, '_>) -> Option<Auth> {
        fn text(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        match (text(&self.client_id), text(&self.username)) {
            (Some(_), Some(_)) => {
                check.error(
                    "username",
                    "set either client_id (+ client_secret_file) or username (+ password_file), not both",
                );
                None
            }
            (None, None) => {
                check.error(
                    "client_id",
                    "missing; set client_id + client_secret_file (OAuth client credentials) or username + password_file (basic auth)",
                );
                None
            }
            (Some(client_id), None) => {
                if self.password.is_some() || self.password_file.is_some() {
                    check.error("password", "a password goes with username, not client_id");
                    return None;
                }
                let client_id = client_id.to_owned();
                let secret = match check.secret(
                    "client_secret",
                    self.client_secret.clone(),
                    self.client_secret_file.clone(),
                ) {
                    Some(Some(secret)) => secret,
                    Some(None) => return check.missing("client_secret"),
                    None => return None,
                };
                Some(Auth::OAuth {
                    client_id,
                    client_secret: secret,
                })
            }
            (None, Some(username)) => {
                if self.client_secret.is_some() || self.client_secret_file.is_some() {
                    check.error(
                        "client_secret",
                        "a client secret goes with client_id, not username",
                    );
                    return None;
                }
                let username = username.to_owned();
                let password = match check.secret(
                    "password",
                    self.password.clone(),
                    self.password_file.clone(),
                ) {
                    Some(Some(secret)) => secret,
                    Some(None) => return check.missing("password"),
                    None => return None,
                };
                Some(Auth::Basic { username, password })
            }
        }
    }
}

impl ServiceNowSinkSettings {
    /// The client secret or password applies from the next token or request
    /// on; every other key needs a restart.
    pub fn reload(&self, loaded: &ServiceNowSinkSettings) -> Reload<ServiceNowSinkSettings> {
        let ServiceNowSinkSettings {
            instance_url,
            auth,
            table,
            correlation_field,
            summary_field,
            contact_table,
            contact_phone_fields,
            contact_field,
            attach_files,
            link_customers,
            default_region,
            requests_per_second,
        } = loaded;
        let mut reload = Reload::new(self);
        match (&self.auth, auth) {
            (
                Auth::OAuth { client_id: a, .. },
                Auth::OAuth {
                    client_id: b,
                    client_secret,
                },
            ) if a == b => reload.live("client_secret", client_secret, |s| match &mut s.auth {
                Auth::OAuth { client_secret, .. } => client_secret,
                Auth::Basic { password, .. } => password,
            }),
            (
                Auth::Basic { username: a, .. },
                Auth::Basic {
                    username: b,
                    password,
                },
            ) if a == b => reload.live("password", password, |s| match &mut s.auth {
                Auth::OAuth { client_secret, .. } => client_secret,
                Auth::Basic { password, .. } => password,
            }),
            (running, loaded) => {
                let key = match loaded {
                    Auth::OAuth { .. } => "client_id",
                    Auth::Basic { .. } => "username",
                };
                reload.restart(key, running, loaded)
            }
        }
        reload.restart("instance_url", &self.instance_url, instance_url);
        reload.restart("table", &self.table, table);
        reload.restart(
            "correlation_field",
            &self.correlation_field,
            correlation_field,
        );
        reload.restart("summary_field", &self.summary_field, summary_field);
        reload.restart("contact_table", &self.contact_table, contact_table);
        reload.restart(
            "contact_phone_fields",
            &self.contact_phone_fields,
            contact_phone_fields,
        );
        reload.restart("contact_field", &self.contact_field, contact_field);
        reload.restart("attach_files", &self.attach_files, attach_files);
        reload.restart("link_customers", &self.link_customers, link_customers);
        reload.restart("default_region", &self.default_region, default_region);
        reload.restart(
            "requests_per_second",
            &self.requests_per_second,
            requests_per_second,
        );
        reload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_name("u_zoom_engagement_id") && is_name("interaction"));
        assert!(!is_name("U_x") && !is_name("a-b") && !is_name("") && !is_name("1a"));
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;

    fn settings(auth: Auth) -> ServiceNowSinkSettings {
        ServiceNowSinkSettings {
            instance_url: url::Url::parse("https://acme.service-now.com").unwrap(),
            auth,
            table: DEFAULT_TABLE.into(),
            correlation_field: DEFAULT_CORRELATION_FIELD.into(),
            summary_field: None,
            contact_table: DEFAULT_CONTACT_TABLE.into(),
            contact_phone_fields: vec!["phone".into()],
            contact_field: DEFAULT_CONTACT_FIELD.into(),
            attach_files: true,
            link_customers: true,
            default_region: "US".into(),
            requests_per_second: 10,
        }
    }

    fn oauth(id: &str, secret: &str) -> Auth {
        Auth::OAuth {
            client_id: id.into(),
            client_secret: Secret::new(secret.to_owned()),
        }
    }

    #[test]
    fn a_new_secret_or_password_applies_live_the_rest_at_restart() {
        let running = settings(oauth("a", "s1"));
        let reload = running.reload(&settings(oauth("a", "s2")));
        assert_eq!(reload.live, ["client_secret"]);
        assert!(reload.restart.is_empty());
        assert_eq!(reload.applied.auth, oauth("a", "s2"));

        let basic = |p: &str| Auth::Basic {
            username: "u".into(),
            password: Secret::new(p.to_owned()),
        };
        let reload = settings(basic("p1")).reload(&settings(basic("p2")));
        assert_eq!(reload.live, ["password"]);

        let mut moved = settings(basic("p1"));
        moved.table = "u_calls".into();
        let reload = running.reload(&moved);
        assert_eq!(reload.restart, ["username", "table"]);
        assert_eq!(reload.applied, running, "nothing applied live");
    }
}

#[cfg(test)]
mod example_tests {
    use crate::config::{FakeEnvironment, Secrets, parse_sink};
    use crate::sink::SinkKind;

    use super::Auth;

    /// The commented `servicenow` block of config.toml.example, uncommented,
    /// is a valid sink.
    #[test]
    fn the_example_block_validates() {
        let block = crate::config::example_sink_block("servicenow");
        let env = FakeEnvironment::new().with_file(
            "/run/credentials/zcc-relay.service/servicenow-secret",
            "sn-secret\n",
        );
        let (settings, warnings) = match parse_sink::<SinkKind>(&block, &env, Secrets::Read) {
            Ok(parsed) => parsed,
            Err(error) => panic!("{error}\n{block}"),
        };
        assert_eq!(warnings, []);
        let SinkKind::ServiceNow(servicenow) = settings.kind else {
            panic!("not a servicenow sink: {block}");
        };
        let Auth::OAuth { client_secret, .. } = &servicenow.auth else {
            panic!("not OAuth: {block}");
        };
        assert_eq!(client_secret.expose(), "sn-secret");
        assert_eq!(servicenow.table, "interaction");
        assert_eq!(servicenow.correlation_field, "u_zoom_engagement_id");
        assert_eq!(servicenow.contact_phone_fields, ["phone", "mobile_phone"]);
    }

    #[test]
    fn one_way_to_sign_in() {
        let env = FakeEnvironment::new().with_file("/p", "pw\n");
        let basic = "name = \"sn\"\ntype = \"servicenow\"\ninstance_url = \"https://acme.service-now.com\"\nusername = \"zcc.relay\"\npassword_file = \"/p\"\n";
        let (settings, _) = parse_sink::<SinkKind>(basic, &env, Secrets::Read).unwrap();
        let SinkKind::ServiceNow(servicenow) = settings.kind else {
            panic!("not servicenow");
        };
        assert!(
            matches!(servicenow.auth, Auth::Basic { ref username, .. } if username == "zcc.relay")
        );
        let both = format!("{basic}client_id = \"x\"\n");
        let error = parse_sink::<SinkKind>(&both, &env, Secrets::Read)
            .unwrap_err()
            .to_string();
        assert!(error.contains("not both"), "{error}");
        let neither = "name = \"sn\"\ntype = \"servicenow\"\ninstance_url = \"https://acme.service-now.com\"\n";
        let error = parse_sink::<SinkKind>(neither, &env, Secrets::Read)
            .unwrap_err()
            .to_string();
        assert!(error.contains("client_id"), "{error}");
    }
}
