//! The file kind's `zcc-relay check`: the sink could open its file for
//! appending, without creating, opening-to-create or changing anything.
//!
//! An existing path must be a regular file that opens for reading and
//! appending (the sink's own mode, without `O_CREAT`; opening changes neither
//! its content nor its times). A path not there yet needs a directory to
//! create it in: the nearest existing one of its directories (the sink creates
//! the missing ones) must be a directory this user can create entries in.
//! That is proved with an `O_TMPFILE` open in it: an unnamed inode that the
//! kernel frees at close, which never appears in the directory, even after a
//! crash. Where the file system does not support `O_TMPFILE` (some network
//! and FUSE file systems), an empty file with a unique dot-name is created
//! and removed at once instead; the finding says which ran.
//!
//! The proof holds for the user running `check` and its view of the file
//! system: the service's sandbox (`DynamicUser`, `ProtectSystem=strict`)
//! is not this process's.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::sink::Finding;

/// Everything provable about `path`, on the calling (blocking) thread.
pub fn check(path: &Path) -> Vec<Finding> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => vec![Finding::problem(
            format!("{shown} is a directory"),
            format!(
                "set `path` to a file, e.g. {}",
                path.join("events.jsonl").display()
            ),
        )],
        Ok(meta) if !meta.is_file() => vec![Finding::problem(
            format!("{shown} is not a regular file (a FIFO, socket or device)"),
            "set `path` to a regular file, or to one that does not exist yet",
        )],
        Ok(meta) => match OpenOptions::new().read(true).append(true).open(path) {
            Ok(_) => vec![Finding::proved(format!(
                "{shown} exists ({} bytes) and opens for appending",
                meta.len()
            ))],
            Err(error) => vec![Finding::problem(
                format!("cannot open {shown} for appending: {error}"),
                access_fix(&error, "read and write it"),
            )],
        },
        Err(error) if is_absent(&error) => check_directory(path),
        Err(error) => vec![Finding::problem(
            format!("cannot look at {shown}: {error}"),
            access_fix(&error, "reach it"),
        )],
    }
}

/// `path` does not exist: where would the sink create it?
fn check_directory(path: &Path) -> Vec<Finding> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut findings = Vec::new();
    let mut existing = parent.as_path();
    loop {
        match std::fs::metadata(existing) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                findings.push(Finding::problem(
                    format!(
                        "{} is not a directory, so {} cannot be created",
                        existing.display(),
                        parent.display()
                    ),
                    "set `path` to a file under a directory (or one that can be created)",
                ));
                return findings;
            }
            Err(error) if is_absent(&error) => match existing.parent() {
                Some(up) if !up.as_os_str().is_empty() => existing = up,
                _ => {
                    existing = Path::new(".");
                    break;
                }
            },
            Err(error) => {
                findings.push(Finding::problem(
                    format!("cannot look at {}: {error}", existing.display()),
                    access_fix(&error, "reach it"),
                ));
                return findings;
            }
        }
    }
    match probe_writable(existing) {
        Ok(how) => {
            let created = if existing == parent {
                String::new()
            } else {
                format!(" (the sink creates {} first)", parent.display())
            };
            findings.push(Finding::proved(format!(
                "{} does not exist yet{created}; {} takes new entries ({how}, nothing left behind)",
                path.display(),
                existing.display()
            )));
        }
        Err(error) => findings.push(Finding::problem(
            format!("cannot create files in {}: {error}", existing.display()),
            access_fix(&error, "create files in it"),
        )),
    }
    findings
}

/// Creates nothing that outlives the call; says how it proved it.
fn probe_writable(dir: &Path) -> std::io::Result<&'static str> {
    let unnamed = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir);
    match unnamed {
        Ok(file) => {
            drop(file);
            Ok("an unnamed O_TMPFILE opened and closed")
        }
        // No O_TMPFILE on this file system (or kernel): a named file, removed at once.
        Err(error)
            if matches!(
                error.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            let name = dir.join(format!(
                ".zcc-relay-check.{}.{}",
                std::process::id(),
                rand::random::<u64>()
            ));
            let created: std::io::Result<File> = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&name);
            drop(created?);
            std::fs::remove_file(&name)?;
            Ok("an empty file created and removed")
        }
        Err(error) => Err(error),
    }
}

/// Not there, or a path component is a file (`ENOTDIR`): look further up.
fn is_absent(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

/// The fix for an error of the file system, `need` being what the daemon's
/// user must be able to do.
fn access_fix(error: &std::io::Error, need: &str) -> String {
    match error.kind() {
        ErrorKind::PermissionDenied => format!(
            "let the daemon's user {need} (chown/chmod), or choose another `path`; under systemd \
             (ProtectSystem=strict) a path outside /var/lib/zcc-relay also needs ReadWritePaths="
        ),
        ErrorKind::ReadOnlyFilesystem => "it is on a read-only file system: choose a `path` on a \
             writable one (under systemd, add it to ReadWritePaths=)"
            .to_owned(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
            "free space (or inodes) on that file system, or choose another `path`".to_owned()
        }
        _ => format!("make sure the daemon's user can {need}, or choose another `path`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(findings: &[Finding]) -> Vec<String> {
        findings
            .iter()
            .filter_map(|finding| match finding {
                Finding::Problem { problem, .. } => Some(problem.clone()),
                Finding::Proved { .. } => None,
            })
            .collect()
    }

    fn entries(dir: &Path) -> Vec<std::ffi::OsString> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_file_in_a_writable_directory_is_ready_and_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let findings = check(&dir.path().join("sub/deeper/events.jsonl"));
        assert_eq!(problems(&findings), Vec::<String>::new(), "{findings:?}");
        assert!(
            entries(dir.path()).is_empty(),
            "check left something behind"
        );
        let findings = check(&dir.path().join("events.jsonl"));
        assert!(problems(&findings).is_empty(), "{findings:?}");
        assert!(
            entries(dir.path()).is_empty(),
            "check left something behind"
        );
    }

    #[test]
    fn an_existing_file_opens_for_appending_and_stays_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"a\":1}\n").unwrap();
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        let findings = check(&path);
        assert!(problems(&findings).is_empty(), "{findings:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n");
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
    }

    #[test]
    fn impossible_paths_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        let under_file = problems(&check(&plain.join("sub/events.jsonl")));
        assert_eq!(under_file.len(), 1, "{under_file:?}");
        assert!(
            under_file[0].contains("is not a directory"),
            "{under_file:?}"
        );
        let directory = problems(&check(dir.path()));
        assert_eq!(directory.len(), 1, "{directory:?}");
        assert!(directory[0].contains("is a directory"), "{directory:?}");
    }
}
