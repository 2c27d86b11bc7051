//! The file sink: one forwarded record per line (JSONL), synced before the
//! delivery counts.
//!
//! Writes are grouped like the journal's commits: one task takes every line
//! that queued up while the previous `fdatasync` ran, writes them and syncs
//! once (on the blocking pool). A failed write truncates the file back to where the batch started, so
//! a retry never leaves half a line behind.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::SinkError;

type Line = (Arc<[u8]>, oneshot::Sender<Result<(), SinkError>>);

pub struct FileSink {
    lines: mpsc::Sender<Line>,
}

impl FileSink {
    pub fn open(path: &Path) -> anyhow::Result<FileSink> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        let (lines, rx) = mpsc::channel(1024);
        tokio::spawn(write_loop(file, path.to_path_buf(), rx));
        Ok(FileSink { lines })
    }

    pub async fn deliver(&self, bytes: &[u8]) -> Result<(), SinkError> {
        let (reply, rx) = oneshot::channel();
        let closed = || SinkError::Retryable {
            reason: "file sink stopped".into(),
            status: None,
            after: None,
        };
        self.lines
            .send((Arc::from(bytes), reply))
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }
}

/// Takes whatever lines queued up, writes and syncs them on the blocking pool,
/// answers each, repeats. Ends when the sink is dropped.
async fn write_loop(file: File, path: PathBuf, mut rx: mpsc::Receiver<Line>) {
    let mut file = Some(file);
    while let Some(first) = rx.recv().await {
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
            let _ = reply.send(result.clone().map_err(|e| SinkError::Retryable {
                reason: format!("{}: {e}", path.display()),
                status: None,
                after: None,
            }));
        }
    }
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
