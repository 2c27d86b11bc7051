//! How an operator command (`queue`, `status`) gets at the journal: as its
//! owner when no daemon runs (the daemon's own `Journal::open`, directory lock
//! included), or as a read-only view beside the daemon that owns it. Owns that choice, the
//! "stop it first" refusal for commands that change the journal, and the
//! line saying which mode was used.
//!
//! Knows nothing of what the commands read or print beyond that line.

use std::path::Path;

use anyhow::{Context as _, bail};
use redb::{ReadOnlyDatabase, ReadTransaction, ReadableDatabase};

use crate::config::Settings;
use crate::journal::{self, Journal, JournalError, SinkRoute};

/// The journal opened by this process alone; closed cleanly on drop (which
/// blocks, so it must not be dropped inside an async runtime).
pub struct Owned {
    journal: Journal,
    /// The journal's changes and its close are async; a command needs only a
    /// small runtime to wait for them.
    runtime: tokio::runtime::Runtime,
}

impl Owned {
    /// Opens the journal as the daemon does, or reports who owns it.
    fn open(settings: &Settings) -> anyhow::Result<Result<Owned, Owner>> {
        let dir = &settings.journal.dir;
        require_database(dir)?;
        let routes = SinkRoute::for_sinks(&settings.sinks);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        // The journal's writer is a task on this runtime.
        let opened = {
            let _entered = runtime.enter();
            // With the daemon's media filter: opened without it, the journal
            // would hand records waiting for their media to the sinks bare.
            let media = settings.media.enabled.then(crate::media::media_events);
            Journal::open_with_media(dir, routes, media)
        };
        let journal = match opened {
            Ok(journal) => journal,
            Err(JournalError::Locked { holder, .. }) => return Ok(Err(Owner { pid: holder })),
            Err(e) => return Err(e).context("cannot open the journal"),
        };
        Ok(Ok(Owned { journal, runtime }))
    }

    /// For commands that change the journal: only with no daemon running.
    pub fn open_to_change(settings: &Settings) -> anyhow::Result<Owned> {
        match Owned::open(settings)? {
            Ok(owned) => Ok(owned),
            Err(owner) => bail!(
                "the journal is in use by {}; stop it first (systemctl stop zcc-relay), then run this again",
                owner.describe()
            ),
        }
    }

    pub fn begin_read(&self) -> anyhow::Result<ReadTransaction> {
        self.journal.begin_read().context("cannot read the journal")
    }

    /// See [`Journal::redrive`].
    pub fn redrive(&self, sink: &str, seq: Option<u64>) -> anyhow::Result<u64> {
        self.runtime
            .block_on(self.journal.redrive(sink, seq))
            .context("redrive failed")
    }

    /// See [`Journal::purge_dead`].
    pub fn purge_dead(&self, sink: &str) -> anyhow::Result<u64> {
        self.runtime
            .block_on(self.journal.purge_dead(sink))
            .context("purge failed")
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // Waits for the writer's last commit and a clean close of the file, so
        // the daemon's next start needs no repair.
        self.runtime.block_on(self.journal.close());
    }
}

/// The process holding the journal's directory lock.
pub struct Owner {
    /// As written in the lock file; "unknown" when it could not be read.
    pid: String,
}

impl Owner {
    fn describe(&self) -> String {
        match self.pid() {
            Some(pid) => format!("zcc-relay pid {pid}"),
            None => "another zcc-relay process (pid unknown)".to_string(),
        }
    }

    fn pid(&self) -> Option<u32> {
        self.pid.parse().ok()
    }
}

/// What the read-only commands read from.
pub enum View {
    Owned(Owned),
    ReadOnly { db: ReadOnlyDatabase, owner: Owner },
}

/// How the journal was opened, as `--json` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Mode {
    pub mode: Access,
    /// The owner's pid in read-only mode.
    pub owner_pid: Option<u32>,
}

impl Mode {
    /// What a command that changed the journal reports: it had it to itself.
    pub fn exclusive() -> Mode {
        Mode {
            mode: Access::Exclusive,
            owner_pid: None,
        }
    }

    /// Whether a daemon owns the journal (so this is a read-only view beside it).
    pub fn daemon_running(&self) -> bool {
        self.mode == Access::ReadOnly
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No daemon runs; this command owned the journal.
    Exclusive,
    /// Beside the daemon that owns it.
    ReadOnly,
}

impl Access {
    /// As the text reports and `--json` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Access::Exclusive => "exclusive",
            Access::ReadOnly => "read-only",
        }
    }
}

impl serde::Serialize for Access {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl View {
    /// Owns the journal when nobody else does, else opens a read-only view
    /// that sees the owner's latest commit.
    pub fn open(settings: &Settings) -> anyhow::Result<View> {
        let owner = match Owned::open(settings)? {
            Ok(owned) => return Ok(View::Owned(owned)),
            Err(owner) => owner,
        };
        let dir = &settings.journal.dir;
        match journal::open_read_only(dir) {
            Ok(db) => Ok(View::ReadOnly { db, owner }),
            Err(JournalError::Storage(redb::Error::DatabaseAlreadyOpen)) => bail!(
                "{} holds {} exclusively, so it cannot be read beside it (that zcc-relay predates \
                 read-only views: restart it with this version, or stop it and run this again)",
                owner.describe(),
                dir.join(journal::DB_FILE).display()
            ),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "cannot open a read-only view of the journal beside {}",
                    owner.describe()
                )
            }),
        }
    }

    pub fn begin_read(&self) -> anyhow::Result<ReadTransaction> {
        match self {
            View::Owned(owned) => owned.begin_read(),
            View::ReadOnly { db, .. } => db.begin_read().context("cannot read the journal"),
        }
    }

    pub fn mode(&self) -> Mode {
        match self {
            View::Owned(_) => Mode::exclusive(),
            View::ReadOnly { owner, .. } => Mode {
                mode: Access::ReadOnly,
                owner_pid: owner.pid(),
            },
        }
    }

    /// The line telling the operator which mode was used.
    pub fn describe(&self) -> String {
        match self {
            View::Owned(_) => {
                "(no zcc-relay is running on this journal; opened it directly)".into()
            }
            View::ReadOnly { owner, .. } => {
                format!("(read-only view: {} owns this journal)", owner.describe())
            }
        }
    }
}

/// A command on a journal that was never created must not create one (a
/// mistyped `journal.dir` would otherwise look like an empty queue).
fn require_database(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(journal::DB_FILE);
    match std::fs::metadata(&path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no journal at {} ({} does not exist; zcc-relay creates it when it first starts)",
            dir.display(),
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}
