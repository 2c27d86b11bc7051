//! Where a file's download URL is when the event does not carry it: the REST
//! listings that name recordings and voicemails (zoom-reference §3.2, §3.8).
//! The media stage asks; only this module reads the listings' item shapes.

use super::api::{ApiError, ZoomApi, zoom_time};

/// `recording_completed` carries no URL: the engagement's recordings list it.
/// `None`: not listed (yet).
pub async fn recording_url(
    api: &ZoomApi,
    engagement_id: &str,
    recording_id: &str,
) -> Result<Option<String>, ApiError> {
    let path = format!("/contact_center/engagements/{engagement_id}/recordings");
    let mut pages = api.pages(&path, &[], "recordings");
    while let Some(items) = pages.next().await? {
        if let Some(url) = find(&items, "recording_id", recording_id) {
            return Ok(Some(url));
        }
    }
    Ok(None)
}

/// `inbox_message_received` carries no URL: the inbox messages list it. The
/// listing filters on `created_at` within at most a month, from a day before
/// the event (`event_ts_ms`) to a day after now (`now_ms`). `None`: not listed
/// (yet).
pub async fn voicemail_url(
    api: &ZoomApi,
    engagement_id: &str,
    message_id: &str,
    event_ts_ms: u64,
    now_ms: u64,
) -> Result<Option<String>, ApiError> {
    let day = 86_400_000u64;
    let from = event_ts_ms.saturating_sub(day);
    let to = (from + 29 * day).min(now_ms + day);
    let query = [
        ("engagement_id", engagement_id.to_owned()),
        ("from", zoom_time(from)),
        ("to", zoom_time(to)),
    ];
    let mut pages = api.pages("/contact_center/inboxes/messages", &query, "messages");
    while let Some(items) = pages.next().await? {
        if let Some(url) = find(&items, "message_id", message_id) {
            return Ok(Some(url));
        }
    }
    Ok(None)
}

/// The non-empty `download_url` of the item whose `field` is `id`.
fn find(items: &[serde_json::Value], field: &str, id: &str) -> Option<String> {
    items
        .iter()
        .find(|item| item[field].as_str() == Some(id))
        .and_then(|item| item["download_url"].as_str())
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_listed_url_of_the_item() {
        let items = [
            json!({"recording_id": "r0", "download_url": "https://a/0"}),
            json!({"recording_id": "r1", "download_url": ""}),
            json!({"recording_id": "r2", "download_url": "https://a/2"}),
        ];
        assert_eq!(
            find(&items, "recording_id", "r2").as_deref(),
            Some("https://a/2")
        );
        assert_eq!(find(&items, "recording_id", "r1"), None);
        assert_eq!(find(&items, "message_id", "r0"), None);
    }
}
