//! The file sink: one forwarded record per line (JSONL), synced before the
//! delivery counts.
//!
//! Writes are grouped like the journal's commits: one task takes every line
//! that queued up while the previous `fdatasync` ran, writes them and syncs
//! once (on the blocking pool). A failed write truncates the file back to where the batch started, so
//! a retry never leaves half a line behind. Its keys and their validation are
//! in `config`; what `zcc-relay check` proves without writing is in `check`.

mod check;
mod config;

pub use config::{FileSinkConfig, FileSinkSettings};

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::config::SinkCheck;
use crate::deliver::Envelope;
use crate::failure::Failure;
use crate::service::Heartbeat;
use crate::sink::{BuildContext, Finding, Kind, Reload};

type Line = (Arc<[u8]>, oneshot::Sender<Result<(), Failure>>);

pub struct FileSink {
    lines: mpsc::Sender<Line>,
}

impl FileSink {
    /// Opens (creates) the file and starts its writer, watched by nobody.
    pub fn open(path: &Path) -> anyhow::Result<FileSink> {
        FileSink::open_watched(path, Heartbeat::detached())
    }

    /// [`FileSink::open`], the writer beating `heartbeat` while it waits for
    /// lines, never during a write: a write or sync that does not return stops
    /// the watchdog pings.
    pub fn open_watched(path: &Path, heartbeat: Heartbeat) -> anyhow::Result<FileSink> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        drop_torn_tail(&file)
            .map_err(|e| anyhow::anyhow!("cannot repair {}: {e}", path.display()))?;
        let (lines, rx) = mpsc::channel(1024);
        tokio::spawn(write_loop(file, path.to_path_buf(), rx, heartbeat));
        Ok(FileSink { lines })
    }

    pub async fn deliver(&self, envelope: &Envelope) -> Result<(), Failure> {
        let (reply, rx) = oneshot::channel();
        let closed = || Failure::retry("file sink stopped");
        self.lines
            .send((envelope.bytes.clone(), reply))
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }
}

impl Kind for FileSink {
    const TYPE: &'static str = "file";
    const DEFAULT_EVENTS: &'static [&'static str] = &[];
    type Config = FileSinkConfig;
    type Settings = FileSinkSettings;

    fn validate(config: FileSinkConfig, check: &mut SinkCheck<'_, '_>) -> Option<FileSinkSettings> {
        config.validate(check)
    }

    fn reload(running: &FileSinkSettings, loaded: &FileSinkSettings) -> Reload<FileSinkSettings> {
        running.reload(loaded)
    }

    /// Opens the file, its writer watched as `sink <name> writer`.
    async fn build(
        settings: &FileSinkSettings,
        context: &BuildContext<'_>,
    ) -> anyhow::Result<FileSink> {
        let heartbeat = context
            .health
            .register(format!("sink {} writer", context.name));
        FileSink::open_watched(&settings.path, heartbeat)
    }

    /// `build` opened the file: nothing left to prove.
    async fn ready(&self) -> Result<(), Failure> {
        Ok(())
    }

    /// The file opens for appending, or its directory takes new files; nothing
    /// is created (see `check`).
    async fn check(settings: &FileSinkSettings, _: &BuildContext<'_>) -> Vec<Finding> {
        let path = settings.path.clone();
        match tokio::task::spawn_blocking(move || check::check(&path)).await {
            Ok(findings) => findings,
            Err(error) => vec![Finding::problem(
                format!(
                    "the check of {} did not finish: {error}",
                    settings.path.display()
                ),
                "run the check again; report it if it repeats",
            )],
        }
    }

    /// No key of a file sink applies live.
    fn apply(&self, _: &FileSinkSettings) -> anyhow::Result<()> {
        Ok(())
    }

    async fn deliver(&self, envelope: &Envelope) -> Result<(), Failure> {
        FileSink::deliver(self, envelope).await
    }
}

/// Takes whatever lines queued up, writes and syncs them on the blocking pool,
/// answers each, repeats. Ends when the sink is dropped.
async fn write_loop(
    file: File,
    path: PathBuf,
    mut rx: mpsc::Receiver<Line>,
    mut heartbeat: Heartbeat,
) {
    let mut file = Some(file);
    loop {
        let first = tokio::select! {
            line = rx.recv() => match line {
                Some(line) => line,
                None => return,
            },
            _ = heartbeat.tick() => continue,
        };
        let mut batch = vec![first];
        while let Ok(line) = rx.try_recv() {
            batch.push(line);
        }
        let Some(mut owned) = file.take() else { return };
        let written = tokio::task::spawn_blocking(move || {
            let result = write_batch(&mut owned, &batch);
            (owned, batch, result)
        })
        .await;
        let Ok((owned, batch, result)) = written else {
            tracing::error!(path = %path.display(), "file sink writer crashed");
            return;
        };
        file = Some(owned);
        for (_, reply) in batch {
            let _ = reply.send(
                result
                    .clone()
                    .map_err(|e| Failure::retry(format!("{}: {e}", path.display()))),
            );
        }
    }
}

/// A crash (kill -9, power loss) in the middle of a write can leave half a line
/// at the end. That line was never acknowledged, so its record is still in the
/// journal and will be written again: cut the fragment off so the file stays
/// valid JSONL.
fn drop_torn_tail(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let buf = &mut chunk[..(end - start) as usize];
        file.read_exact_at(buf, start)?;
        if let Some(pos) = buf.iter().rposition(|&b| b == b'\n') {
            end = start + pos as u64 + 1;
            break;
        }
        end = start;
    }
    if end != len {
        tracing::warn!(
            dropped_bytes = len - end,
            "file sink: removed a partial last line left by a crash"
        );
        file.set_len(end)?;
        file.sync_data()?;
    }
    Ok(())
}

fn write_batch(file: &mut File, batch: &[Line]) -> Result<(), String> {
    let start = file.metadata().map_err(|e| e.to_string())?.len();
    let mut buffer = Vec::with_capacity(batch.iter().map(|(b, _)| b.len() + 1).sum());
    for (bytes, _) in batch {
        // JSON never needs a raw newline (inside strings they are escaped), so a
        // pretty-printed payload can be folded onto one line without changing it.
        buffer.extend(
            bytes
                .iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
        buffer.push(b'\n');
    }
    let written = file.write_all(&buffer).and_then(|()| file.sync_data());
    if let Err(error) = written {
        let _ = file.set_len(start);
        return Err(error.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Health;
    use std::time::{Duration, Instant};

    /// A FIFO nobody reads takes one pipe buffer (64 KiB) and then blocks the
    /// writer's `write` for good: the wedge of a hung disk. Real time, because
    /// a blocking-pool task in progress keeps a paused clock from advancing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_never_returns_stops_the_heartbeat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let limit = Duration::from_millis(500);
        let health = Health::watched(Duration::from_millis(20));
        let sink = FileSink::open_watched(&path, health.register("sink archive writer")).unwrap();
        tokio::time::sleep(2 * limit).await;
        assert!(health.stalled(limit).is_empty(), "an idle writer beats");

        let envelope = Envelope {
            seq: 1,
            bytes: Arc::from(vec![b'x'; 1 << 20]),
            webhook_id: "x".into(),
            lane: None,
            view: Default::default(),
        };
        let delivering = tokio::spawn(async move { sink.deliver(&envelope).await });
        let deadline = Instant::now() + Duration::from_secs(30);
        while health.stalled(limit).is_empty() {
            assert!(Instant::now() < deadline, "the wedged writer still beats");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(health.stalled(limit), ["sink archive writer"]);
        assert!(!delivering.is_finished());

        // Read the pipe dry so the blocked write ends (the runtime waits for it).
        let mut reader = File::open(&path).unwrap();
        let drained =
            tokio::task::spawn_blocking(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let _ = delivering.await.unwrap();
        assert!(drained.await.unwrap().unwrap() >= 1 << 20);
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        for (content, expected) in [
            ("", ""),
            ("{\"a\":1}\n", "{\"a\":1}\n"),
            ("{\"a\":1}\n{\"b\":", "{\"a\":1}\n"),
            ("{\"b\":", ""),
        ] {
            let path = dir.path().join("f.jsonl");
            std::fs::write(&path, content).unwrap();
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .unwrap();
            drop_torn_tail(&file).unwrap();
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                expected,
                "from {content:?}"
            );
        }
    }
}
