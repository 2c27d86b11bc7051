//! The http kind's keys: [`HttpSinkConfig`] as written, [`HttpSinkSettings`]
//! validated, and which of them a reload applies live.
//!
//! Owns `url` and the signing secret (`secret`, `secret_file`, the systemd
//! credential `sink-<name>-secret`, `ZCC_RELAY_SINK_<NAME>_SECRET`); the common
//! sink keys are `config/`'s.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{Secret, SinkCheck};
use crate::sink::Reload;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSinkConfig {
    pub url: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSinkSettings {
    pub url: url::Url,
    /// Standard Webhooks signing secret; unsigned when `None`.
    pub secret: Option<Secret>,
}

impl HttpSinkConfig {
    pub fn validate(self, check: &mut SinkCheck<'_, '_>) -> Option<HttpSinkSettings> {
        let url = match self.url {
            Some(text) => check.http_url("url", &text),
            None => check.missing("url"),
        };
        let secret = check.secret("secret", self.secret, self.secret_file);
        Some(HttpSinkSettings {
            url: url?,
            secret: secret?,
        })
    }
}

impl HttpSinkSettings {
    /// The signing secret applies from the next request on; a new URL needs a
    /// restart.
    pub fn reload(&self, loaded: &HttpSinkSettings) -> Reload<HttpSinkSettings> {
        let HttpSinkSettings { url, secret } = loaded;
        let mut reload = Reload::new(self);
        reload.restart("url", &self.url, url);
        reload.live("secret", secret, |settings| &mut settings.secret);
        reload
    }
}
