//! Bounded reading of HTTP response bodies: every answer the daemon reads
//! (Zoom's listings and tokens, a CRM's token endpoint) has a size it can
//! never sensibly exceed, and a larger one is a failed request, never
//! buffered whole. Owns the reading only; each caller picks its cap.

/// How much of an error answer is kept for the message.
const MAX_ERROR_BODY_BYTES: usize = 4 * 1024;

/// The body, or `None` when it is longer than `limit` (read no further).
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|announced| announced > limit as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The start of an error answer's body, for a message.
pub async fn error_text(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY_BYTES {
            body.truncate(MAX_ERROR_BODY_BYTES);
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}
