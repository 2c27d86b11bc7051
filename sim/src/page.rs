//! The query rules shared by the simulated REST listings (docs/zoom.md §4.1):
//! `from`/`to` windows, `page_size`, and `next_page_token`.
//!
//! Owns the parsing and checking of those parameters and the token format. A
//! token is opaque to clients: URL-safe base64 of the offset of the next page,
//! a fingerprint of the query it belongs to (path and every parameter but the
//! token) and the tokio time it was issued, so a token outlives nothing but its
//! 15 minutes and works only with the query that produced it. Offsets mean that
//! items listed while a client pages can shift pages, as on any offset cursor.
//! Pure: callers pass the clock in. It knows nothing of items or HTTP; `rest`
//! does.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use super::item;

/// How long a `next_page_token` stays usable after it was issued.
pub(super) const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Longest `from`..`to` accepted ("a month"; Zoom's exact limit is unconfirmed).
pub(super) const MAX_WINDOW: Duration = Duration::from_secs(31 * 86_400);
pub(super) const DEFAULT_PAGE_SIZE: usize = 30;
pub(super) const MAX_PAGE_SIZE: usize = 300;

/// A parameter the listing cannot work with; the text is the error `message`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Invalid(pub String);

/// A request's query string, decoded.
#[derive(Debug)]
pub(super) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: &str) -> Query {
        let pairs = url::form_urlencoded::parse(raw.as_bytes())
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        Query { pairs }
    }

    /// The first value of `key`; an empty value counts as absent, so a client
    /// that always sends `next_page_token=` starts at the first page.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(name, value)| name == key && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }

    /// Identifies "the same query parameters" on `path`: every non-empty
    /// parameter except the token, in any order.
    pub fn fingerprint(&self, path: &str) -> u64 {
        let mut pairs: Vec<&(String, String)> = self
            .pairs
            .iter()
            .filter(|(key, value)| key != "next_page_token" && !value.is_empty())
            .collect();
        pairs.sort();
        let mut hasher = Sha256::new();
        hasher.update(path.as_bytes());
        for (key, value) in pairs {
            // Lengths first, so no choice of keys and values can collide.
            hasher.update((key.len() as u64).to_be_bytes());
            hasher.update(key.as_bytes());
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(value.as_bytes());
        }
        let digest = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }
}

/// An inclusive window of listed times, and how to echo it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
    /// `from` and `to` as the client sent them, or the defaults in `...Z` form.
    pub from: String,
    pub to: String,
}

impl Window {
    pub fn contains(&self, millis: i64) -> bool {
        (self.from_ms..=self.to_ms).contains(&millis)
    }
}

/// The window of `from`/`to`: both or neither. Neither gives `default_span`
/// back from `now_ms`, or no window at all when there is no default.
pub(super) fn window(
    query: &Query,
    default_span: Option<Duration>,
    now_ms: i64,
) -> Result<Option<Window>, Invalid> {
    match (query.get("from"), query.get("to")) {
        (None, None) => Ok(default_span.map(|span| {
            let from_ms = now_ms.saturating_sub(millis(span));
            Window {
                from_ms,
                to_ms: now_ms,
                from: item::iso_seconds(from_ms),
                to: item::iso_seconds(now_ms),
            }
        })),
        (Some(from), Some(to)) => {
            let from_ms = time(from, "from")?;
            let to_ms = time(to, "to")?;
            if to_ms < from_ms {
                return Err(Invalid("`to` must not be earlier than `from`.".to_owned()));
            }
            if to_ms - from_ms > millis(MAX_WINDOW) {
                return Err(Invalid(
                    "The date range from `from` to `to` must not exceed 31 days.".to_owned(),
                ));
            }
            Ok(Some(Window {
                from_ms,
                to_ms,
                from: from.to_owned(),
                to: to.to_owned(),
            }))
        }
        (Some(_), None) => Err(Invalid("`to` is required when `from` is given.".to_owned())),
        (None, Some(_)) => Err(Invalid("`from` is required when `to` is given.".to_owned())),
    }
}

fn time(text: &str, name: &str) -> Result<i64, Invalid> {
    item::parse_millis(text).ok_or_else(|| {
        Invalid(format!(
            "Invalid `{name}` {text:?}: expected yyyy-MM-dd'T'HH:mm:ss'Z' or \
             yyyy-MM-dd'T'HH:mm:ss±HH:mm (a '+' must be sent as %2B)."
        ))
    })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// `page_size`: 30 when absent, at most 300 (larger asks get 300).
pub(super) fn page_size(query: &Query) -> Result<usize, Invalid> {
    let Some(text) = query.get("page_size") else {
        return Ok(DEFAULT_PAGE_SIZE);
    };
    match text.parse::<usize>() {
        Ok(0) | Err(_) => Err(Invalid(format!(
            "Invalid `page_size` {text:?}: expected a number from 1 to {MAX_PAGE_SIZE}."
        ))),
        Ok(size) => Ok(size.min(MAX_PAGE_SIZE)),
    }
}

/// Where the next page starts, what it belongs to and when it was promised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cursor {
    pub offset: u64,
    pub fingerprint: u64,
    /// Milliseconds of tokio time since the simulator started.
    pub issued_ms: u64,
}

impl Cursor {
    pub fn encode(self) -> String {
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&self.offset.to_be_bytes());
        bytes[8..16].copy_from_slice(&self.fingerprint.to_be_bytes());
        bytes[16..].copy_from_slice(&self.issued_ms.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode(token: &str) -> Option<Cursor> {
        let bytes: [u8; 24] = URL_SAFE_NO_PAD.decode(token).ok()?.try_into().ok()?;
        let word = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(word)
        };
        Some(Cursor {
            offset: word(0),
            fingerprint: word(8),
            issued_ms: word(16),
        })
    }
}

/// The offset a request starts at: 0 without a token, else the token's, if it
/// was issued for this query (`fingerprint`) less than [`TOKEN_LIFETIME`] ago.
pub(super) fn resume(token: Option<&str>, fingerprint: u64, now_ms: u64) -> Result<usize, Invalid> {
    let Some(token) = token else {
        return Ok(0);
    };
    let cursor =
        Cursor::decode(token).ok_or_else(|| Invalid("Invalid `next_page_token`.".to_owned()))?;
    if cursor.fingerprint != fingerprint {
        return Err(Invalid(
            "`next_page_token` was issued for other query parameters; \
             repeat the same query parameters with it."
                .to_owned(),
        ));
    }
    let age = now_ms.saturating_sub(cursor.issued_ms);
    if age >= TOKEN_LIFETIME.as_millis() as u64 {
        return Err(Invalid(
            "`next_page_token` has expired (tokens last 15 minutes); \
             start the listing again without it."
                .to_owned(),
        ));
    }
    usize::try_from(cursor.offset).map_err(|_| Invalid("Invalid `next_page_token`.".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(raw: &str) -> Query {
        Query::parse(raw)
    }

    const FROM: i64 = 1_700_000_000_000;

    #[test]
    fn windows_accept_z_and_offsets_and_reject_more_than_31_days() {
        let check = |raw: &str, expected: Result<Option<(i64, i64)>, &str>| {
            let actual = window(&query(raw), None, 0)
                .map(|window| window.map(|w| (w.from_ms, w.to_ms)))
                .map_err(|Invalid(message)| message);
            match (&actual, &expected) {
                (Ok(actual), Ok(expected)) => assert_eq!(actual, expected, "{raw}"),
                (Err(message), Err(fragment)) => {
                    assert!(message.contains(fragment), "{raw}: {message}")
                }
                _ => panic!("{raw}: {actual:?}, expected {expected:?}"),
            }
        };
        let day = 86_400_000;
        check("", Ok(None));
        check(
            "from=2023-11-14T22:13:20Z&to=2023-11-15T22:13:20Z",
            Ok(Some((FROM, FROM + day))),
        );
        check(
            "from=2023-11-14T14:13:20-08:00&to=2023-11-16T07:13:20%2B09:00",
            Ok(Some((FROM, FROM + day))),
        );
        check(
            "from=2023-11-14T22:13:20Z&to=2023-12-15T22:13:20Z",
            Ok(Some((FROM, FROM + 31 * day))),
        );
        check(
            "from=2023-11-14T22:13:20Z&to=2023-12-15T22:13:21Z",
            Err("must not exceed 31 days"),
        );
        check(
            "from=2023-11-15T22:13:20Z&to=2023-11-14T22:13:20Z",
            Err("earlier"),
        );
        check("from=2023-11-14T22:13:20Z", Err("`to` is required"));
        check("to=2023-11-14T22:13:20Z", Err("`from` is required"));
        check("from=2023-11-14&to=2023-11-15", Err("Invalid `from`"));
        // An unencoded '+' decodes to a space.
        check(
            "from=2023-11-14T22:13:20+00:00&to=2023-11-15T22:13:20Z",
            Err("%2B"),
        );
    }

    #[test]
    fn default_window_ends_now() {
        let window = window(
            &query("page_size=5"),
            Some(Duration::from_secs(86_400)),
            FROM,
        )
        .expect("valid")
        .expect("a default");
        assert_eq!(window.to_ms, FROM);
        assert_eq!(window.from_ms, FROM - 86_400_000);
        assert_eq!(window.to, "2023-11-14T22:13:20Z");
        assert!(window.contains(FROM) && window.contains(FROM - 86_400_000));
        assert!(!window.contains(FROM + 1));
    }

    #[test]
    fn page_size_defaults_to_30_and_caps_at_300() {
        assert_eq!(page_size(&query("")), Ok(30));
        assert_eq!(page_size(&query("page_size=")), Ok(30));
        assert_eq!(page_size(&query("page_size=50")), Ok(50));
        assert_eq!(page_size(&query("page_size=1000")), Ok(300));
        assert!(page_size(&query("page_size=0")).is_err());
        assert!(page_size(&query("page_size=ten")).is_err());
    }

    #[test]
    fn fingerprint_ignores_order_empty_values_and_the_token() {
        let path = "/v2/contact_center/recordings";
        let base = query("from=a&to=b&page_size=50").fingerprint(path);
        assert_eq!(query("page_size=50&to=b&from=a").fingerprint(path), base);
        assert_eq!(
            query("from=a&to=b&page_size=50&next_page_token=xyz&channel=").fingerprint(path),
            base
        );
        assert_ne!(query("from=a&to=b&page_size=51").fingerprint(path), base);
        assert_ne!(
            query("from=a&to=b&page_size=50").fingerprint("/v2/contact_center/engagements"),
            base
        );
        // Lengths are hashed, so moving a boundary changes the fingerprint.
        assert_ne!(
            query("ab=c").fingerprint(path),
            query("a=bc").fingerprint(path)
        );
    }

    #[test]
    fn tokens_resume_their_own_query_for_15_minutes() {
        let cursor = Cursor {
            offset: 50,
            fingerprint: 7,
            issued_ms: 1_000,
        };
        let token = cursor.encode();
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let lifetime = TOKEN_LIFETIME.as_millis() as u64;
        assert_eq!(resume(None, 7, 0), Ok(0));
        assert_eq!(resume(Some(&token), 7, 1_000), Ok(50));
        assert_eq!(resume(Some(&token), 7, 1_000 + lifetime - 1), Ok(50));
        let expired = resume(Some(&token), 7, 1_000 + lifetime).expect_err("expired");
        assert!(expired.0.contains("expired"), "{expired:?}");
        let other = resume(Some(&token), 8, 1_000).expect_err("other query");
        assert!(other.0.contains("same query parameters"), "{other:?}");
        let garbage = resume(Some("not a token"), 7, 1_000).expect_err("garbage");
        assert!(garbage.0.contains("Invalid"), "{garbage:?}");
    }
}
