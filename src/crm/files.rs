//! An engagement's stored files as a CRM sink attaches them (DESIGN.md §3.5
//! "Files are attached once", "File names"): the name a file has in the CRM
//! (its object key's last segment), whether it can be read, and reading it
//! whole — from a `file://` store directly, from other stores through the
//! entry's signed link. Streaming uploads are the CRM client's business.

use crate::failure::Failure;
use crate::record::MediaEntry;

/// The file's name in the CRM: its object key's last segment.
pub fn name_of(entry: &MediaEntry) -> String {
    entry
        .location
        .rsplit('/')
        .next()
        .unwrap_or(&entry.location)
        .to_owned()
}

/// Whether the relay can read the file back: a `file://` store, or a link.
pub fn readable(entry: &MediaEntry) -> bool {
    entry.location.starts_with("file://") || entry.url.is_some()
}

/// The link a CRM's text shows for a file it does not hold: the signed
/// link, else the object's location.
pub fn link_of(entry: &MediaEntry) -> String {
    entry.url.clone().unwrap_or_else(|| entry.location.clone())
}

fn file_path(entry: &MediaEntry) -> Option<std::path::PathBuf> {
    url::Url::parse(&entry.location)
        .ok()
        .filter(|u| u.scheme() == "file")
        .and_then(|u| u.to_file_path().ok())
}

/// The whole file, at most `limit` bytes (more is a permanent failure of
/// this file: the caller links files above its CRM's cap instead). A store
/// that cannot be read now is a retry.
pub async fn read_whole(
    http: &reqwest::Client,
    entry: &MediaEntry,
    limit: u64,
) -> Result<Vec<u8>, Failure> {
    if let Some(path) = file_path(entry) {
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| Failure::retry(format!("reading stored file {}: {e}", path.display())))?;
        if bytes.len() as u64 > limit {
            return Err(Failure::permanent(format!(
                "stored file {} is larger than {limit} bytes",
                path.display()
            )));
        }
        return Ok(bytes);
    }
    let Some(url) = &entry.url else {
        return Err(Failure::permanent(
            "a stored file with neither a file path nor a link",
        ));
    };
    let response = http.get(url).send().await.map_err(|e| {
        Failure::retry(format!(
            "reading a stored file: {}",
            crate::failure::describe_request(&e)
        ))
    })?;
    if !response.status().is_success() {
        return Err(Failure::retry(format!(
            "reading a stored file: HTTP {}",
            response.status().as_u16()
        )));
    }
    match crate::body::read_capped(response, limit as usize).await {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(Failure::permanent(format!(
            "a stored file is larger than {limit} bytes"
        ))),
        Err(e) => Err(Failure::retry(format!(
            "reading a stored file: {}",
            e.without_url()
        ))),
    }
}

/// The text of a transcript kept in a `file://` store, when it is at most
/// `limit` bytes; `None` otherwise or when it cannot be read now (the file
/// itself is still attached or linked).
pub async fn short_text(entry: &MediaEntry, limit: u64) -> Option<String> {
    if !entry.kind.ends_with("transcript") || entry.size > limit {
        return None;
    }
    let bytes = tokio::fs::read(file_path(entry)?).await.ok()?;
    (bytes.len() as u64 <= limit).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(location: &str, url: Option<&str>) -> MediaEntry {
        MediaEntry {
            kind: "recording".into(),
            location: location.into(),
            url: url.map(str::to_owned),
            content_type: "audio/mpeg".into(),
            size: 3,
            sha256: String::new(),
        }
    }

    #[tokio::test]
    async fn names_links_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recording-r1.mp3");
        std::fs::write(&path, b"abc").unwrap();
        let stored = entry(url::Url::from_file_path(&path).unwrap().as_str(), None);
        assert_eq!(name_of(&stored), "recording-r1.mp3");
        assert!(readable(&stored));
        let tls = crate::tls::client_config().unwrap();
        let http = crate::tls::http_client(&tls, std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(read_whole(&http, &stored, 3).await.unwrap(), b"abc");
        let too_big = read_whole(&http, &stored, 2).await.unwrap_err();
        assert_eq!(too_big.class, crate::failure::Class::Permanent);
        let remote = entry("s3://bucket/a/b/voicemail-v.mp3", None);
        assert!(!readable(&remote));
        assert_eq!(link_of(&remote), "s3://bucket/a/b/voicemail-v.mp3");
    }
}
