//! The single-owner lock on a journal directory, and the rule for every file the
//! journal creates there: never through a symlink, always private (0600).
//!
//! Zoom lets only one connection hold a subscription (a second one evicts the
//! first), so two daemons on one journal would fight over the socket and the
//! outboxes. An advisory `flock`-style lock on `zcc-relay.lock` makes the second
//! process fail at start with a message naming the holder's pid. The kernel
//! drops the lock when the process dies, so a kill -9 never leaves it stale.
//!
//! `status` and `queue` take this lock too, and operators run them as root: a
//! lock file that is a symlink (to `/etc/passwd`, say), a hard link or not a
//! regular file is refused, and a file is only rewritten with the pid when it
//! holds nothing but a pid (so this code never truncates a file it did not
//! create).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::JournalError;

pub const LOCK_FILE: &str = "zcc-relay.lock";

/// Longest pid text a lock file of ours holds (`u32::MAX` has 10 digits).
const MAX_PID_TEXT: u64 = 10;

#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock, JournalError> {
        let path: PathBuf = dir.join(LOCK_FILE);
        let mut file = open_private(&path, true).map_err(|e| JournalError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = Read::by_ref(&mut file)
                    .take(MAX_PID_TEXT)
                    .read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(JournalError::Locked {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() || !holder.bytes().all(|b| b.is_ascii_digit()) {
                        "unknown".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(JournalError::io(&path, e)),
        }
        let mut previous = Vec::new();
        let holds_only_a_pid = Read::by_ref(&mut file)
            .take(MAX_PID_TEXT + 2)
            .read_to_end(&mut previous)
            .is_ok()
            && previous.len() as u64 <= MAX_PID_TEXT
            && previous.iter().all(u8::is_ascii_digit);
        if !holds_only_a_pid {
            return Err(JournalError::io(
                &path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "holds something other than a pid; not a zcc-relay lock file (left unchanged; \
                     remove it if it is stale)",
                ),
            ));
        }
        // Best effort: the pid only makes the "in use" message more helpful.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(DirLock { _file: file })
    }
}

/// Opens (with `create`, creating mode 0600 whatever the umask) a file of the
/// journal directory for reading and writing. Refuses a symlink (`O_NOFOLLOW`:
/// the open itself fails, so there is no window between a check and the use),
/// anything that is not a regular file, and a file with other hard links.
pub(super) fn open_private(path: &Path, create: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "is a symbolic link; refusing to follow it",
                )
            } else {
                e
            }
        })?;
    let metadata = file.metadata()?;
    if !metadata.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a regular file",
        ));
    }
    if metadata.nlink() > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "has other hard links; refusing to write to it",
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn refused(dir: &Path) -> String {
        match DirLock::acquire(dir) {
            Ok(_) => panic!("acquired a lock through {}", dir.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn never_writes_through_a_symlink_or_into_a_foreign_file() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("passwd");
        std::fs::write(&victim, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        let journal = dir.path().join("journal");
        std::fs::create_dir(&journal).unwrap();

        std::os::unix::fs::symlink(&victim, journal.join(LOCK_FILE)).unwrap();
        assert!(refused(&journal).contains("symbolic link"));

        std::fs::remove_file(journal.join(LOCK_FILE)).unwrap();
        std::fs::hard_link(&victim, journal.join(LOCK_FILE)).unwrap();
        assert!(refused(&journal).contains("hard links"));

        std::fs::remove_file(journal.join(LOCK_FILE)).unwrap();
        std::fs::copy(&victim, journal.join(LOCK_FILE)).unwrap();
        assert!(refused(&journal).contains("not a zcc-relay lock file"));
        assert_eq!(
            std::fs::read_to_string(journal.join(LOCK_FILE)).unwrap(),
            "root:x:0:0:root:/root:/bin/bash\n"
        );
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "root:x:0:0:root:/root:/bin/bash\n"
        );
    }

    #[test]
    fn a_lock_file_of_ours_is_reused_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        drop(lock);
        let path = dir.path().join(LOCK_FILE);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            std::process::id().to_string()
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A pid from an earlier run is ours to replace.
        std::fs::write(&path, "4242").unwrap();
        let _lock = DirLock::acquire(dir.path()).unwrap();
    }
}
