//! The hubspot kind's keys (DESIGN.md §3.5): [`HubSpotSinkConfig`] as
//! written, [`HubSpotSinkSettings`] validated, and which of them a reload
//! applies live (the token; everything else needs a restart).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{Secret, SinkCheck};
use crate::crm::budget::requests_per_second_key;
use crate::crm::phone::default_region_key;
use crate::sink::Reload;

pub const DEFAULT_API_BASE_URL: &str = "https://api.hubapi.com";
pub const DEFAULT_UNIQUE_PROPERTY: &str = "zcc_engagement_id";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubSpotSinkConfig {
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub api_base_url: Option<String>,
    pub unique_property: Option<String>,
    pub disposition_map: Option<BTreeMap<String, String>>,
    pub attach_files: Option<bool>,
    pub link_customers: Option<bool>,
    pub default_region: Option<String>,
    pub requests_per_second: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubSpotSinkSettings {
    /// A private app's token or a service key, as read at start.
    pub token: Secret,
    /// Where it was read from, when a file: read again after a 401.
    pub token_file: Option<PathBuf>,
    pub api_base_url: url::Url,
    /// The calls property with unique values that holds the engagement's key.
    pub unique_property: String,
    /// Disposition name → the portal's disposition GUID.
    pub disposition_map: BTreeMap<String, String>,
    pub attach_files: bool,
    pub link_customers: bool,
    pub default_region: String,
    pub requests_per_second: u32,
}

impl HubSpotSinkSettings {
    /// `api_base_url` without a trailing slash.
    pub fn base(&self) -> &str {
        self.api_base_url.as_str().trim_end_matches('/')
    }
}

/// A HubSpot GUID (`f240bbac-87c9-4f6e-bf70-924b57d47db7`).
pub fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A property's internal name: lower case, a letter first.
fn is_property(text: &str) -> bool {
    text.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl HubSpotSinkConfig {
    pub fn validate(self, check: &mut SinkCheck<'_, '_>) -> Option<HubSpotSinkSettings> {
        let token_file = self.token_file.clone();
        let token = match check.secret("token", self.token, self.token_file) {
            Some(Some(secret)) => Some(secret),
            Some(None) => check.missing("token"),
            None => None,
        };
        let api_base_url = check.http_url(
            "api_base_url",
            self.api_base_url.as_deref().unwrap_or(DEFAULT_API_BASE_URL),
        );
        let property = self
            .unique_property
            .unwrap_or_else(|| DEFAULT_UNIQUE_PROPERTY.to_owned());
        let unique_property = if is_property(&property) {
            Some(property)
        } else {
            check.error(
                "unique_property",
                "must be a property's internal name (lower-case letters, digits, underscores), e.g. \"zcc_engagement_id\"",
            );
            None
        };
        let mut disposition_map = BTreeMap::new();
        let mut map_ok = true;
        for (name, guid) in self.disposition_map.unwrap_or_default() {
            if is_guid(guid.trim()) {
                disposition_map.insert(name, guid.trim().to_ascii_lowercase());
            } else {
                check.error(
                    &format!("disposition_map.{name}"),
                    "must be a disposition GUID such as \"f240bbac-87c9-4f6e-bf70-924b57d47db7\"",
                );
                map_ok = false;
            }
        }
        let default_region = default_region_key(check, self.default_region);
        let requests_per_second = requests_per_second_key(check, self.requests_per_second);
        if !map_ok {
            return None;
        }
        Some(HubSpotSinkSettings {
            token: token?,
            token_file,
            api_base_url: api_base_url?,
            unique_property: unique_property?,
            disposition_map,
            attach_files: self.attach_files.unwrap_or(true),
            link_customers: self.link_customers.unwrap_or(true),
            default_region: default_region?,
            requests_per_second: requests_per_second?,
        })
    }
}

impl HubSpotSinkSettings {
    /// The token applies from the next request on; every other key needs a
    /// restart.
    pub fn reload(&self, loaded: &HubSpotSinkSettings) -> Reload<HubSpotSinkSettings> {
        let HubSpotSinkSettings {
            token,
            token_file,
            api_base_url,
            unique_property,
            disposition_map,
            attach_files,
            link_customers,
            default_region,
            requests_per_second,
        } = loaded;
        let mut reload = Reload::new(self);
        reload.live("token", token, |s| &mut s.token);
        reload.restart("token_file", &self.token_file, token_file);
        reload.restart("api_base_url", &self.api_base_url, api_base_url);
        reload.restart("unique_property", &self.unique_property, unique_property);
        reload.restart("disposition_map", &self.disposition_map, disposition_map);
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
    fn guids_and_properties() {
        assert!(is_guid("f240bbac-87c9-4f6e-bf70-924b57d47db7"));
        assert!(!is_guid("Resolved") && !is_guid("f240bbac-87c9-4f6e-bf70-924b57d47db"));
        assert!(is_property("zcc_engagement_id"));
        assert!(!is_property("Zcc") && !is_property("a-b") && !is_property(""));
    }
}

#[cfg(test)]
mod example_tests {
    use crate::config::{FakeEnvironment, Secrets, parse_sink};
    use crate::sink::SinkKind;

    /// The commented `hubspot` block of config.toml.example, uncommented, is
    /// a valid sink.
    #[test]
    fn the_example_block_validates() {
        let block = crate::config::example_sink_block("hubspot");
        let env = FakeEnvironment::new().with_file(
            "/run/credentials/zcc-relay.service/hubspot-token",
            "pat-na1-token\n",
        );
        let (settings, warnings) = match parse_sink::<SinkKind>(&block, &env, Secrets::Read) {
            Ok(parsed) => parsed,
            Err(error) => panic!("{error}\n{block}"),
        };
        assert_eq!(warnings, []);
        let SinkKind::HubSpot(hubspot) = settings.kind else {
            panic!("not a hubspot sink: {block}");
        };
        assert_eq!(hubspot.token.expose(), "pat-na1-token");
        assert_eq!(hubspot.unique_property, "zcc_engagement_id");
        assert_eq!(
            hubspot.disposition_map.get("Resolved").map(String::as_str),
            Some("f240bbac-87c9-4f6e-bf70-924b57d47db7")
        );
        assert!(hubspot.token_file.is_some());
    }
}
