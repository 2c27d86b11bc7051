//! `multipart/form-data` bodies (RFC 7578), pure: the parts of an upload.

pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub data: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

fn param(disposition: &str, key: &str) -> Option<String> {
    disposition.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The parts, or `None` when the body is not well-formed multipart.
pub fn parse(content_type: &str, body: &[u8]) -> Option<Vec<Part>> {
    if !content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return None;
    }
    let boundary = param(content_type, "boundary")?;
    let delimiter = format!("--{boundary}").into_bytes();
    let mut at = find(body, &delimiter, 0)? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return Some(parts);
        }
        at += 2; // CRLF after the delimiter
        let head_end = find(body, b"\r\n\r\n", at)?;
        let head = String::from_utf8_lossy(&body[at..head_end]).into_owned();
        let data_start = head_end + 4;
        let mut next = delimiter.clone();
        next.splice(0..0, *b"\r\n");
        let data_end = find(body, &next, data_start)?;
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?
            .split_once(':')?
            .1
            .to_owned();
        parts.push(Part {
            name: param(&disposition, "name")?,
            filename: param(&disposition, "filename"),
            data: body[data_start..data_end].to_vec(),
        });
        at = data_end + next.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_a_file() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"folderPath\"\r\n\r\n/x\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n\x00\x01\r\n--b--\r\n";
        let parts = parse("multipart/form-data; boundary=b", body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].data, b"/x");
        assert_eq!(parts[1].filename.as_deref(), Some("a.mp3"));
        assert_eq!(parts[1].data, b"\x00\x01");
        assert!(parse("application/json", body).is_none());
        assert!(parse("multipart/form-data; boundary=b", b"--b\r\nbroken").is_none());
    }
}
