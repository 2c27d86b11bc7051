//! [`Environment`]: everything validation needs from the outside world (environment
//! variables, secret files, the current directory), behind a trait.
//!
//! Owns the real implementation and an in-memory fake for tests. Does not decide which
//! variables or files matter; that is `validate.rs`.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// The process environment as seen by config validation. Injected so that
/// `validate` stays pure and tests never depend on the machine they run on.
pub trait Environment {
    /// The variable's value; `None` when unset or not valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
    /// The whole file as UTF-8.
    fn read_file(&self, path: &Path) -> io::Result<String>;
    /// The directory relative paths are resolved against; empty when unknown
    /// (for instance when it was deleted), which makes absolutizing fail visibly
    /// instead of guessing.
    fn current_dir(&self) -> PathBuf;
}

/// The real process environment and file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn current_dir(&self) -> PathBuf {
        std::env::current_dir().unwrap_or_default()
    }
}

/// An environment made of maps, for unit and integration tests. Files not in `files`
/// read as `NotFound`, like a missing file would.
#[derive(Clone, Debug)]
pub struct FakeEnvironment {
    pub vars: HashMap<String, String>,
    pub files: HashMap<PathBuf, String>,
    pub cwd: PathBuf,
}

impl FakeEnvironment {
    /// No variables, no files, current directory `/`.
    pub fn new() -> Self {
        FakeEnvironment {
            vars: HashMap::new(),
            files: HashMap::new(),
            cwd: PathBuf::from("/"),
        }
    }

    pub fn with_var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn with_file(mut self, path: impl Into<PathBuf>, contents: &str) -> Self {
        self.files.insert(path.into(), contents.to_owned());
        self
    }

    pub fn with_cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = cwd.into();
        self
    }
}

impl Default for FakeEnvironment {
    fn default() -> Self {
        FakeEnvironment::new()
    }
}

impl Environment for FakeEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn current_dir(&self) -> PathBuf {
        self.cwd.clone()
    }
}
