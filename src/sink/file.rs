//! The file sink: one forwarded record per line (JSONL), synced before the
//! delivery counts.
//!
//! Writes are grouped like the journal's commits: one thread takes every line
//! that queued up while the previous `fdatasync` ran, writes them and syncs
//! once. A failed write truncates the file back to where the batch started, so
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
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("file-sink".into())
            .spawn(move || write_loop(file, path, rx))?;
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

fn write_loop(mut file: File, path: PathBuf, mut rx: mpsc::Receiver<Line>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while let Ok(line) = rx.try_recv() {
            batch.push(line);
        }
        let result = write_batch(&mut file, &batch);
        for (_, reply) in batch.drain(..) {
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
