//! Which of an engagement's stored files go onto its Task as ContentVersions
//! and which only as links in the Description, and reading a file's bytes
//! from the media store (`file://` directly; other stores through the
//! entry's signed link).

use std::pin::Pin;

use futures_util::{Stream, StreamExt};

use super::client::{Client, JSON_FILE_LIMIT};
use crate::failure::Failure;
use crate::interaction::Interaction;
use crate::record::MediaEntry;

/// Salesforce's cap on one ContentVersion (multipart upload).
pub const FILE_LIMIT: u64 = 2 * 1024 * 1024 * 1024;

pub struct Planned {
    /// The object key's last segment: `PathOnClient`.
    pub name: String,
    pub entry: MediaEntry,
}

#[derive(Default)]
pub struct Plan {
    pub attach: Vec<Planned>,
    /// (name, link) of the files the Description lists instead.
    pub linked: Vec<(String, String)>,
}

/// The file's name in the CRM: its object key's last segment.
pub fn name_of(entry: &MediaEntry) -> String {
    entry
        .location
        .rsplit('/')
        .next()
        .unwrap_or(&entry.location)
        .to_owned()
}

fn readable(entry: &MediaEntry) -> bool {
    entry.location.starts_with("file://") || entry.url.is_some()
}

pub fn plan(aggregate: &Interaction, attach_files: bool) -> Plan {
    let mut plan = Plan::default();
    for entry in aggregate.files() {
        let name = name_of(entry);
        if attach_files && entry.size <= FILE_LIMIT && readable(entry) {
            plan.attach.push(Planned {
                name,
                entry: entry.clone(),
            });
        } else {
            let link = entry.url.clone().unwrap_or_else(|| entry.location.clone());
            plan.linked.push((name, link));
        }
    }
    plan
}

/// Transcripts up to this size are also quoted in the Description.
pub const SHORT_TRANSCRIPT: u64 = 8 * 1024;

/// The text of the engagement's short transcripts kept in a `file://`
/// store: (file name, text). One that cannot be read now is left out (the
/// file itself is still attached or linked).
pub async fn short_transcripts(aggregate: &Interaction) -> Vec<(String, String)> {
    let mut texts = Vec::new();
    for entry in aggregate.files() {
        if !entry.kind.ends_with("transcript") || entry.size > SHORT_TRANSCRIPT {
            continue;
        }
        let Some(path) = url::Url::parse(&entry.location)
            .ok()
            .filter(|u| u.scheme() == "file")
            .and_then(|u| u.to_file_path().ok())
        else {
            continue;
        };
        if let Ok(bytes) = tokio::fs::read(&path).await
            && bytes.len() as u64 <= SHORT_TRANSCRIPT
        {
            texts.push((name_of(entry), String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    texts
}

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>>;

/// A file's bytes: in memory when small enough for JSON, else a stream.
pub enum Bytes {
    Small(Vec<u8>),
    Stream { body: ByteStream },
}

/// Reads a stored file; a store that cannot be read now is a retry.
pub async fn read(client: &Client, entry: &MediaEntry) -> Result<Bytes, Failure> {
    if entry.location.starts_with("file://") {
        let path = url::Url::parse(&entry.location)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| Failure::permanent(format!("not a file path: {}", entry.location)))?;
        let size = tokio::fs::metadata(&path)
            .await
            .map_err(|e| Failure::retry(format!("reading stored file {}: {e}", path.display())))?
            .len();
        if size <= JSON_FILE_LIMIT {
            let bytes = tokio::fs::read(&path).await.map_err(|e| {
                Failure::retry(format!("reading stored file {}: {e}", path.display()))
            })?;
            return Ok(Bytes::Small(bytes));
        }
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Failure::retry(format!("reading stored file {}: {e}", path.display())))?;
        let stream = futures_util::stream::unfold(file, |mut file| async move {
            use tokio::io::AsyncReadExt;
            let mut buffer = vec![0u8; 64 * 1024];
            match file.read(&mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    Some((Ok(bytes::Bytes::from(buffer)), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        });
        return Ok(Bytes::Stream {
            body: Box::pin(stream),
        });
    }
    let Some(url) = &entry.url else {
        return Err(Failure::permanent(
            "a stored file with neither a file path nor a link",
        ));
    };
    let response = client.download(url).await?;
    if entry.size <= JSON_FILE_LIMIT {
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Failure::retry(format!("reading a stored file: {}", e.without_url())))?;
        return Ok(Bytes::Small(bytes.to_vec()));
    }
    let stream = response
        .bytes_stream()
        .map(|chunk| chunk.map_err(|e| std::io::Error::other(e.without_url().to_string())));
    Ok(Bytes::Stream {
        body: Box::pin(stream),
    })
}
