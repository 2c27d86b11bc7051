//! The dynamics kind's keys (DESIGN.md §3.5): [`DynamicsSinkConfig`] as
//! written, [`DynamicsSinkSettings`] validated, and which of them a reload
//! applies live (the client secret; everything else needs a restart).

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{Secret, SinkCheck};
use crate::crm::budget::requests_per_second_key;
use crate::crm::phone::default_region_key;
use crate::sink::Reload;

pub const DEFAULT_AUTHORITY_URL: &str = "https://login.microsoftonline.com";
pub const DEFAULT_ALTERNATE_KEY_COLUMN: &str = "zcc_engagementid";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicsSinkConfig {
    pub org_url: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub authority_url: Option<String>,
    pub alternate_key_column: Option<String>,
    pub attach_files: Option<bool>,
    pub link_customers: Option<bool>,
    pub default_region: Option<String>,
    pub requests_per_second: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicsSinkSettings {
    /// The environment's URL (`https://acme.crm.dynamics.com`): the API's
    /// base and the token's audience.
    pub org_url: url::Url,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Entra ID's authority; the token comes from
    /// `{authority_url}/{tenant_id}/oauth2/v2.0/token`.
    pub authority_url: url::Url,
    /// The phonecall column holding the engagement's key, with an alternate
    /// key on it alone.
    pub alternate_key_column: String,
    pub attach_files: bool,
    pub link_customers: bool,
    /// An ISO 3166 region code (`US`).
    pub default_region: String,
    pub requests_per_second: u32,
}

impl DynamicsSinkSettings {
    /// `org_url` without a trailing slash.
    pub fn org(&self) -> &str {
        self.org_url.as_str().trim_end_matches('/')
    }

    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority_url.as_str().trim_end_matches('/'),
            self.tenant_id
        )
    }

    /// The token's scope: the environment's URL and `/.default`.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.org())
    }
}

impl DynamicsSinkConfig {
    pub fn validate(self, check: &mut SinkCheck<'_, '_>) -> Option<DynamicsSinkSettings> {
        let org_url = match self.org_url {
            Some(text) => check.http_url("org_url", &text),
            None => check.missing("org_url"),
        };
        let text_key = |key: &str, value: Option<String>, check: &mut SinkCheck<'_, '_>| match value
        {
            Some(v) if is_id(v.trim()) => Some(v.trim().to_owned()),
            Some(_) => {
                check.error(
                    key,
                    "must be a GUID or a name of letters, digits, '.', '-' and '_'",
                );
                None
            }
            None => check.missing(key),
        };
        let tenant_id = text_key("tenant_id", self.tenant_id, check);
        let client_id = text_key("client_id", self.client_id, check);
        let client_secret =
            match check.secret("client_secret", self.client_secret, self.client_secret_file) {
                Some(Some(secret)) => Some(secret),
                Some(None) => check.missing("client_secret"),
                None => None,
            };
        let authority_url = check.http_url(
            "authority_url",
            self.authority_url
                .as_deref()
                .unwrap_or(DEFAULT_AUTHORITY_URL),
        );
        let column = self
            .alternate_key_column
            .unwrap_or_else(|| DEFAULT_ALTERNATE_KEY_COLUMN.to_owned());
        let alternate_key_column = if is_column(&column) {
            Some(column)
        } else {
            check.error(
                "alternate_key_column",
                "must be a column's logical name (lower-case letters, digits, underscores), e.g. \"zcc_engagementid\"",
            );
            None
        };
        let default_region = default_region_key(check, self.default_region);
        let requests_per_second = requests_per_second_key(check, self.requests_per_second);
        Some(DynamicsSinkSettings {
            org_url: org_url?,
            tenant_id: tenant_id?,
            client_id: client_id?,
            client_secret: client_secret?,
            authority_url: authority_url?,
            alternate_key_column: alternate_key_column?,
            attach_files: self.attach_files.unwrap_or(true),
            link_customers: self.link_customers.unwrap_or(true),
            default_region: default_region?,
            requests_per_second: requests_per_second?,
        })
    }
}

/// A tenant or client id: a GUID, or a tenant's domain name.
fn is_id(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// A Dataverse logical name: lower case, a letter first.
fn is_column(text: &str) -> bool {
    text.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl DynamicsSinkSettings {
    /// The client secret applies from the next token request on; every other
    /// key needs a restart.
    pub fn reload(&self, loaded: &DynamicsSinkSettings) -> Reload<DynamicsSinkSettings> {
        let DynamicsSinkSettings {
            org_url,
            tenant_id,
            client_id,
            client_secret,
            authority_url,
            alternate_key_column,
            attach_files,
            link_customers,
            default_region,
            requests_per_second,
        } = loaded;
        let mut reload = Reload::new(self);
        reload.restart("org_url", &self.org_url, org_url);
        reload.restart("tenant_id", &self.tenant_id, tenant_id);
        reload.restart("client_id", &self.client_id, client_id);
        reload.live("client_secret", client_secret, |s| &mut s.client_secret);
        reload.restart("authority_url", &self.authority_url, authority_url);
        reload.restart(
            "alternate_key_column",
            &self.alternate_key_column,
            alternate_key_column,
        );
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
    fn ids_and_columns() {
        assert!(is_id("8f7c2d1e-0000-4000-8000-000000000001"));
        assert!(is_id("contoso.onmicrosoft.com"));
        assert!(!is_id("a/b") && !is_id(""));
        assert!(is_column("zcc_engagementid"));
        assert!(!is_column("Zcc_EngagementId") && !is_column("_x") && !is_column("a-b"));
    }
}

#[cfg(test)]
mod example_tests {
    use crate::config::{FakeEnvironment, Secrets, parse_sink};
    use crate::sink::SinkKind;

    /// The commented `dynamics` block of config.toml.example, uncommented,
    /// is a valid sink with every documented default.
    #[test]
    fn the_example_block_validates() {
        let block = crate::config::example_sink_block("dynamics");
        let env = FakeEnvironment::new().with_file(
            "/run/credentials/zcc-relay.service/dynamics-secret",
            "s3cret\n",
        );
        let (settings, warnings) = match parse_sink::<SinkKind>(&block, &env, Secrets::Read) {
            Ok(parsed) => parsed,
            Err(error) => panic!("{error}\n{block}"),
        };
        assert_eq!(warnings, []);
        let SinkKind::Dynamics(dynamics) = settings.kind else {
            panic!("not a dynamics sink: {block}");
        };
        assert_eq!(dynamics.scope(), "https://acme.crm.dynamics.com/.default");
        assert_eq!(
            dynamics.token_url(),
            "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token"
        );
        assert_eq!(dynamics.alternate_key_column, "zcc_engagementid");
        assert_eq!(dynamics.client_secret.expose(), "s3cret");
        assert!(dynamics.attach_files && dynamics.link_customers);
    }
}
