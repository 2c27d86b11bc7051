//! The salesforce kind's keys (DESIGN.md §3.5): [`SalesforceSinkConfig`] as
//! written, [`SalesforceSinkSettings`] validated, and which of them a reload
//! applies live (the client secret; everything else needs a restart).

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{Secret, SinkCheck};
use crate::crm::budget::{DEFAULT_REQUESTS_PER_SECOND, requests_per_second_key};
use crate::crm::phone::default_region_key;
use crate::sink::Reload;

pub const DEFAULT_API_VERSION: &str = "v62.0";
pub const DEFAULT_EXTERNAL_ID_FIELD: &str = "Zoom_Engagement_Id__c";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesforceSinkConfig {
    pub instance_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub api_version: Option<String>,
    pub external_id_field: Option<String>,
    pub attach_files: Option<bool>,
    pub link_customers: Option<bool>,
    pub default_region: Option<String>,
    pub requests_per_second: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SalesforceSinkSettings {
    /// The org's My Domain URL, without a trailing slash.
    pub instance_url: url::Url,
    pub client_id: String,
    pub client_secret: Secret,
    /// `v62.0`.
    pub api_version: String,
    pub external_id_field: String,
    pub attach_files: bool,
    pub link_customers: bool,
    /// An ISO 3166 region code (`US`).
    pub default_region: String,
    pub requests_per_second: u32,
}

impl SalesforceSinkConfig {
    pub fn validate(self, check: &mut SinkCheck<'_, '_>) -> Option<SalesforceSinkSettings> {
        let instance_url = match self.instance_url {
            Some(text) => check.http_url("instance_url", &text),
            None => check.missing("instance_url"),
        };
        let client_id = match self.client_id {
            Some(id) if !id.trim().is_empty() => Some(id.trim().to_owned()),
            Some(_) => {
                check.error("client_id", "must not be empty");
                None
            }
            None => check.missing("client_id"),
        };
        let client_secret =
            match check.secret("client_secret", self.client_secret, self.client_secret_file) {
                Some(Some(secret)) => Some(secret),
                Some(None) => check.missing("client_secret"),
                None => None,
            };
        let api_version = self
            .api_version
            .unwrap_or_else(|| DEFAULT_API_VERSION.to_owned());
        let api_version = if is_api_version(&api_version) {
            Some(api_version)
        } else {
            check.error("api_version", "must look like \"v62.0\"");
            None
        };
        let external_id_field = self
            .external_id_field
            .unwrap_or_else(|| DEFAULT_EXTERNAL_ID_FIELD.to_owned());
        let external_id_field = if is_field_name(&external_id_field) {
            Some(external_id_field)
        } else {
            check.error(
                "external_id_field",
                "must be a field's API name (letters, digits, underscores), e.g. \"Zoom_Engagement_Id__c\"",
            );
            None
        };
        let default_region = default_region_key(check, self.default_region);
        let requests_per_second = requests_per_second_key(check, self.requests_per_second);
        Some(SalesforceSinkSettings {
            instance_url: instance_url?,
            client_id: client_id?,
            client_secret: client_secret?,
            api_version: api_version?,
            external_id_field: external_id_field?,
            attach_files: self.attach_files.unwrap_or(true),
            link_customers: self.link_customers.unwrap_or(true),
            default_region: default_region?,
            requests_per_second: requests_per_second?,
        })
    }
}

impl SalesforceSinkSettings {
    /// A sink's settings with every optional key at its default (the demo's
    /// org).
    pub fn with_defaults(
        instance_url: url::Url,
        client_id: &str,
        client_secret: Secret,
    ) -> SalesforceSinkSettings {
        SalesforceSinkSettings {
            instance_url,
            client_id: client_id.to_owned(),
            client_secret,
            api_version: DEFAULT_API_VERSION.to_owned(),
            external_id_field: DEFAULT_EXTERNAL_ID_FIELD.to_owned(),
            attach_files: true,
            link_customers: true,
            default_region: "US".to_owned(),
            requests_per_second: DEFAULT_REQUESTS_PER_SECOND,
        }
    }
}

fn is_api_version(text: &str) -> bool {
    text.strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major
                    .chars()
                    .chain(minor.chars())
                    .all(|c| c.is_ascii_digit())
        })
}

fn is_field_name(text: &str) -> bool {
    text.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl SalesforceSinkSettings {
    /// The client secret applies from the next token request on; every other
    /// key needs a restart.
    pub fn reload(&self, loaded: &SalesforceSinkSettings) -> Reload<SalesforceSinkSettings> {
        let SalesforceSinkSettings {
            instance_url,
            client_id,
            client_secret,
            api_version,
            external_id_field,
            attach_files,
            link_customers,
            default_region,
            requests_per_second,
        } = loaded;
        let mut reload = Reload::new(self);
        reload.restart("instance_url", &self.instance_url, instance_url);
        reload.restart("client_id", &self.client_id, client_id);
        reload.live("client_secret", client_secret, |s| &mut s.client_secret);
        reload.restart("api_version", &self.api_version, api_version);
        reload.restart(
            "external_id_field",
            &self.external_id_field,
            external_id_field,
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
    fn names_and_versions() {
        assert!(is_api_version("v62.0"));
        assert!(!is_api_version("62.0") && !is_api_version("v62") && !is_api_version("vx.0"));
        assert!(is_field_name("Zoom_Engagement_Id__c"));
        assert!(!is_field_name("a/b") && !is_field_name("_x") && !is_field_name(""));
    }
}
