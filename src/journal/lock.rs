//! The single-owner lock on a journal directory.
//!
//! Zoom lets only one connection hold a subscription (a second one evicts the
//! first), so two daemons on one journal would fight over the socket and the
//! outboxes. An advisory `flock`-style lock on `zcc-relay.lock` makes the second
//! process fail at start with a message naming the holder's pid. The kernel
//! drops the lock when the process dies, so a kill -9 never leaves it stale.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::JournalError;

pub const LOCK_FILE: &str = "zcc-relay.lock";

#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock, JournalError> {
        let path: PathBuf = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| JournalError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(JournalError::Locked {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "unknown".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(JournalError::io(&path, e)),
        }
        // Best effort: the pid only makes the "in use" message more helpful.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(DirLock { _file: file })
    }
}
