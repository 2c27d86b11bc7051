//! The file kind's keys: [`FileSinkConfig`] as written, [`FileSinkSettings`]
//! validated, and which of them a reload applies live (none).

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::SinkCheck;
use crate::sink::Reload;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSinkConfig {
    pub path: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSinkSettings {
    /// As configured; relative paths are relative to the daemon's working directory.
    pub path: PathBuf,
}

impl FileSinkConfig {
    pub fn validate(self, check: &mut SinkCheck<'_, '_>) -> Option<FileSinkSettings> {
        match self.path {
            Some(path) if path.as_os_str().is_empty() => {
                check.error("path", "must not be empty");
                None
            }
            Some(path) => Some(FileSinkSettings { path }),
            None => check.missing("path"),
        }
    }
}

impl FileSinkSettings {
    /// The file stays open while the daemon runs: a new path needs a restart.
    pub fn reload(&self, loaded: &FileSinkSettings) -> Reload<FileSinkSettings> {
        let FileSinkSettings { path } = loaded;
        let mut reload = Reload::new(self);
        reload.restart("path", &self.path, path);
        reload
    }
}
