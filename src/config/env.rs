//! [`Environment`]: everything validation needs from the outside world (environment
//! variables, secret files, the current directory), behind a trait.
//!
//! Owns the real implementation and an in-memory fake for tests, and [`read_bounded`]:
//! the one way the daemon reads a file an operator names (the configuration, every
//! secret and `_file` option), regular files only and never more than a cap. Does not
//! decide which variables or files matter; that is `validate.rs`.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The most a secret file (or a `media.options` `_file` value) may hold.
pub const SECRET_FILE_LIMIT: u64 = 64 * 1024;
/// The most the configuration file may hold.
pub const CONFIG_FILE_LIMIT: u64 = 1024 * 1024;

/// Reads a whole UTF-8 file of at most `limit` bytes. Anything that is not a regular
/// file (a FIFO, a device such as `/dev/zero`, a directory, a socket) is refused
/// without reading a byte: the open does not wait for a FIFO's writer
/// (`O_NONBLOCK`) and the type is checked on the opened file, so neither a hang nor
/// unbounded memory can come from a path in the configuration.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<String> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}, not a regular file"),
        ));
    }
    let mut bytes = Vec::new();
    // One byte past the cap tells a file at the cap from a larger one (a file
    // can grow between the stat and the read, so the stat alone is no bound).
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} KiB", limit / 1024),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not valid UTF-8"))
}

/// The permission bits of the file at `path` that let its group or others read it,
/// `None` when there are none (or the file cannot be examined).
pub fn shared_read_bits(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    let shared = mode & 0o044;
    (shared != 0).then_some(mode & 0o777)
}

/// The process environment as seen by config validation. Injected so that
/// `validate` stays pure and tests never depend on the machine they run on.
pub trait Environment {
    /// The variable's value; `None` when unset or not valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
    /// The whole file as UTF-8 (a secret: at most [`SECRET_FILE_LIMIT`], regular
    /// files only; see [`read_bounded`]).
    fn read_file(&self, path: &Path) -> io::Result<String>;
    /// The file's permission bits when its group or others may read it (a secret
    /// file should be the service's alone); `None` when they may not or it is unknown.
    fn shared_mode(&self, _path: &Path) -> Option<u32> {
        None
    }
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
        read_bounded(path, SECRET_FILE_LIMIT)
    }

    fn shared_mode(&self, path: &Path) -> Option<u32> {
        shared_read_bits(path)
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

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn reads_a_regular_file_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cr3t\n").unwrap();
        assert_eq!(read_bounded(&path, 7).unwrap(), "s3cr3t\n");
        let error = read_bounded(&path, 6).unwrap_err();
        assert_eq!(error.to_string(), "larger than 0 KiB");
    }

    #[test]
    fn refuses_devices_directories_and_fifos_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        // A FIFO without a writer: a plain open would block this thread forever.
        for (path, expected) in [
            (Path::new("/dev/zero"), "a device, not a regular file"),
            (Path::new("/dev/urandom"), "a device, not a regular file"),
            (dir.path(), "a directory, not a regular file"),
            (fifo.as_path(), "a FIFO, not a regular file"),
        ] {
            let error = read_bounded(path, SECRET_FILE_LIMIT).unwrap_err();
            assert_eq!(error.to_string(), expected, "{}", path.display());
        }
    }

    #[test]
    fn a_file_over_the_cap_is_refused_with_memory_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&vec![b'a'; 2 * 1024 * 1024]).unwrap();
        let error = read_bounded(&path, CONFIG_FILE_LIMIT).unwrap_err();
        assert_eq!(error.to_string(), "larger than 1024 KiB");
    }
}
