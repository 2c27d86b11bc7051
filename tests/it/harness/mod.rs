//! The one test harness: a simulated Zoom, a scratch directory and a typed
//! config pointing at both ([`Harness`]); the daemon started from that config
//! in this process ([`Harness::start`], a `support::Daemon`); the real binary's
//! commands ([`command`]). Fake sinks come from `zcc_sim::sink` and are added
//! to the config as `[[sinks]]` tables.
//!
//! Tests see the daemon from outside: through its public config contract
//! ([`config`]), its command line, its Stats and what the fakes received.

pub mod command;
pub mod config;

use std::path::PathBuf;

use zcc_sim::{SimConfig, Simulator};

use self::config::{SinkTable, TestConfig};
use crate::support::Daemon;

/// A simulator, a scratch directory (removed on drop) and a config for them.
pub struct Harness {
    pub sim: Simulator,
    pub dir: tempfile::TempDir,
    /// What [`start`](Self::start) and [`write_config`](Self::write_config)
    /// use; edit it in between.
    pub config: TestConfig,
}

impl Harness {
    /// The default simulated account, its journal at `DIR/journal`, no sinks.
    pub async fn new() -> Harness {
        let sim = Simulator::start(SimConfig::default())
            .await
            .expect("the simulator starts");
        let dir = tempfile::tempdir().expect("a scratch directory");
        let config = TestConfig::new(&sim, &dir.path().join("journal"));
        Harness { sim, dir, config }
    }

    /// As [`new`](Self::new), with `sinks`.
    pub async fn with_sinks(sinks: impl IntoIterator<Item = SinkTable>) -> Harness {
        let mut harness = Harness::new().await;
        harness.config.sinks.extend(sinks);
        harness
    }

    /// `DIR/name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The journal directory the config names.
    pub fn journal(&self) -> PathBuf {
        self.config.journal.dir.clone()
    }

    /// The daemon, in this process, on the current config.
    pub fn start(&self) -> Daemon {
        Daemon::start(self.config.settings())
    }

    /// [`start`](Self::start), then wait until its socket is live and its
    /// first start's reconciliation sweep has run, so that what a test emits
    /// next reaches it on the socket first (so not with reconciliation off).
    pub async fn start_live(&self) -> Daemon {
        let daemon = self.start();
        self.sim.wait_live().await;
        daemon.wait_first_sweep().await;
        daemon
    }

    /// The current config written to `DIR/config.toml`, for the real binary.
    pub fn write_config(&self) -> PathBuf {
        self.config.write(&self.path("config.toml"))
    }

    /// Stops the simulator and waits for its connections (the directory goes
    /// when the harness is dropped).
    pub async fn shutdown(self) {
        self.sim.shutdown().await;
    }
}
