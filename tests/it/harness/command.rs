//! The real binary's one-shot commands (`validate`, `queue`, `status`,
//! `reconcile`, ...) run to completion off the runtime's threads, with what
//! they said and how they ended.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The real binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_zcc-relay");

/// `zcc-relay ARGS`, to be run with [`Run::output`] or [`Run::json`].
pub struct Run {
    command: Command,
    shown: String,
}

/// How a command ended.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// `zcc-relay ARGS`, with neither `RUST_LOG` nor a journald stream inherited
/// from the test's environment.
pub fn zcc_relay<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Run {
    let mut command = Command::new(BIN);
    let mut shown = String::new();
    for arg in args {
        shown.push(' ');
        shown.push_str(&arg.as_ref().to_string_lossy());
        command.arg(arg);
    }
    command.env_remove("JOURNAL_STREAM").env_remove("RUST_LOG");
    Run { command, shown }
}

impl Run {
    /// Adds `--config PATH`.
    pub fn config(mut self, path: &Path) -> Run {
        self.command.arg("--config").arg(path);
        self
    }

    /// Adds more arguments.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Run {
        for arg in args {
            self.shown.push(' ');
            self.shown.push_str(&arg.as_ref().to_string_lossy());
            self.command.arg(arg);
        }
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Run {
        self.command.env(key, value);
        self
    }

    /// Runs it to the end.
    pub async fn output(mut self) -> Ran {
        let output = tokio::task::spawn_blocking(move || self.command.output())
            .await
            .expect("the command's thread")
            .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
        Ran {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs it to the end; it must exit 0 and print one JSON document.
    pub async fn json(self) -> Value {
        let shown = self.shown.clone();
        let ran = self.output().await;
        assert_eq!(ran.code, Some(0), "zcc-relay{shown}:\n{}", ran.stderr);
        serde_json::from_str(&ran.stdout).unwrap_or_else(|e| {
            panic!(
                "zcc-relay{shown} printed no JSON ({e}):\n{}\n{}",
                ran.stdout, ran.stderr
            )
        })
    }
}
