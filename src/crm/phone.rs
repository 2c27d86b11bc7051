//! Phone numbers for customer lookup (DESIGN.md §3.5 "Matching a number"):
//! both sides normalised to E.164 by the relay, equal E.164 is a match. CRMs
//! store phones as free text ("(415) 555-1212", "+1 415-555-1212"), Zoom
//! sends `consumer_number` as it has it; a number without a country code is
//! read in the sink's `default_region`.
//!
//! Pure: parsing and formatting with the `phonenumber` crate (libphonenumber's
//! metadata), no lookup and no cache (those are the sink's).

use std::str::FromStr;

use phonenumber::Mode;
use phonenumber::country::Id;

/// The region a number without a country code is read in (ISO 3166-1
/// alpha-2, e.g. `US`, `GB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region(Id);

impl Region {
    /// `None` for a code libphonenumber does not know.
    pub fn parse(code: &str) -> Option<Region> {
        Id::from_str(&code.trim().to_ascii_uppercase())
            .ok()
            .map(Region)
    }
}

/// A CRM sink's `default_region` key: `US` when absent, upper case; an
/// unknown code is reported on `check`.
pub fn default_region_key(
    check: &mut crate::config::SinkCheck<'_, '_>,
    value: Option<String>,
) -> Option<String> {
    let region = value.unwrap_or_else(|| "US".to_owned());
    if Region::parse(&region).is_some() {
        Some(region.trim().to_ascii_uppercase())
    } else {
        check.error(
            "default_region",
            "must be a region code such as \"US\" or \"GB\"",
        );
        None
    }
}

/// `text` as E.164 (`+14155551212`), or `None` when it is not a valid
/// number: garbage, too short, or a national number without a region.
pub fn normalise(text: &str, default_region: Option<Region>) -> Option<String> {
    let text = text.trim();
    if text.is_empty() || !text.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    // "+44 (0)20 …": the national trunk prefix in brackets after the country
    // code, common in free text, which the parser does not drop itself.
    let cleaned;
    let text = if text.starts_with('+') && text.contains("(0)") {
        cleaned = text.replacen("(0)", "", 1);
        cleaned.as_str()
    } else {
        text
    };
    let number = phonenumber::parse(default_region.map(|r| r.0), text).ok()?;
    number
        .is_valid()
        .then(|| number.format().mode(Mode::E164).to_string())
}

/// Whether two free-text numbers are the same phone: both valid and equal in
/// E.164.
pub fn matches(a: &str, b: &str, default_region: Option<Region>) -> bool {
    match (normalise(a, default_region), normalise(b, default_region)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, region: Option<&str>, expected: Option<&str>) {
        let region = region.map(|code| Region::parse(code).expect("a known region"));
        assert_eq!(
            normalise(text, region).as_deref(),
            expected,
            "{text:?} in {region:?}"
        );
    }

    #[test]
    fn free_text_formats_normalise_to_e164() {
        let us = Some("US");
        check("(415) 555-1212", us, Some("+14155551212"));
        check("+1 415-555-1212", us, Some("+14155551212"));
        check("+1 415-555-1212", None, Some("+14155551212"));
        check("415.555.1212", us, Some("+14155551212"));
        check(" 4155551212 ", us, Some("+14155551212"));
        check("011 44 20 7946 0958", us, Some("+442079460958"));
        // 00 is the international prefix outside North America.
        check("001 415 555 1212", Some("GB"), Some("+14155551212"));
        check("001 415 555 1212", Some("de"), Some("+14155551212"));
        // A UK number, national and international.
        check("020 7946 0958", Some("GB"), Some("+442079460958"));
        check("+44 (0)20 7946 0958", us, Some("+442079460958"));
        check("+44 20 7946 0958", None, Some("+442079460958"));
        check("07911 123456", Some("GB"), Some("+447911123456"));
    }

    #[test]
    fn what_is_not_a_number_is_none() {
        for garbage in [
            "",
            "   ",
            "n/a",
            "anonymous",
            "12",
            "+",
            "+1 555",
            "not a phone 1",
        ] {
            check(garbage, Some("US"), None);
        }
        // A national number with no region to read it in.
        check("(415) 555-1212", None, None);
        assert_eq!(Region::parse("XX"), None);
        assert_eq!(Region::parse(" gb "), Region::parse("GB"));
    }

    #[test]
    fn numbers_match_when_their_e164_is_equal() {
        let us = Region::parse("US");
        assert!(matches("(415) 555-1212", "+1 415 555 1212", us));
        assert!(matches("415.555.1212", "+14155551212", us));
        assert!(!matches("(415) 555-1212", "(415) 555-1213", us));
        assert!(!matches("garbage", "garbage", us));
        assert!(!matches(
            "020 7946 0958",
            "+1 415 555 1212",
            Region::parse("GB")
        ));
    }
}
