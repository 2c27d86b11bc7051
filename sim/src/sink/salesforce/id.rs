//! Salesforce record ids: minting 18-character ids with the documented case-safe suffix, and
//! telling a well-formed 15/18-character id from a malformed one. Owns nothing else.
//!
//! The suffix algorithm is the one Salesforce documents for the 18-character form (each
//! 5-character chunk of the 15-character id gives 5 bits, one per upper-case letter, read
//! least significant first, indexing `A–Z0–5`): SOAP API Developer Guide, "Field Types › ID".

const SUFFIX_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Key prefixes of the objects the fake knows (the first three characters of an id).
pub mod prefix {
    pub const TASK: &str = "00T";
    pub const CONTACT: &str = "003";
    pub const LEAD: &str = "00Q";
    pub const ACCOUNT: &str = "001";
    pub const USER: &str = "005";
    pub const ORG: &str = "00D";
    pub const CONTENT_VERSION: &str = "068";
    pub const CONTENT_DOCUMENT: &str = "069";
    pub const CONTENT_DOCUMENT_LINK: &str = "06A";
}

/// The 18-character id for key prefix `prefix` and serial number `serial`.
pub fn mint(prefix: &str, serial: u64) -> String {
    // 3 prefix + "Fk" (a fixed pod-like marker) + 10 base-62 digits = 15 characters.
    let mut body = String::with_capacity(18);
    body.push_str(prefix);
    body.push_str("Fk");
    let mut digits = [b'0'; 10];
    let mut rest = serial;
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(rest % 62) as usize];
        rest /= 62;
    }
    body.extend(digits.iter().map(|&b| b as char));
    let suffix = suffix(&body);
    body.push_str(&suffix);
    body
}

fn suffix(id15: &str) -> String {
    id15.as_bytes()
        .chunks(5)
        .map(|chunk| {
            let bits = chunk
                .iter()
                .enumerate()
                .filter(|(_, b)| b.is_ascii_uppercase())
                .fold(0usize, |acc, (i, _)| acc | (1 << i));
            SUFFIX_ALPHABET[bits] as char
        })
        .collect()
}

/// The canonical 18-character form of a well-formed id, or `None` when `raw` is not one
/// (wrong length, a character outside `[0-9A-Za-z]`, or an 18-character id whose suffix
/// does not match its body; the suffix is compared ignoring case, as Salesforce does).
pub fn canonical(raw: &str) -> Option<String> {
    if !raw.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match raw.len() {
        15 => Some(format!("{raw}{}", suffix(raw))),
        18 => {
            let (body, given) = raw.split_at(15);
            let expected = suffix(body);
            given
                .eq_ignore_ascii_case(&expected)
                .then(|| format!("{body}{expected}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_are_18_characters_and_round_trip() {
        let id = mint(prefix::TASK, 12345);
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("00T"));
        assert_eq!(canonical(&id).as_deref(), Some(id.as_str()));
        assert_eq!(canonical(&id[..15]).as_deref(), Some(id.as_str()));
    }

    #[test]
    fn known_suffix_matches_salesforce() {
        // A documented example pair: 001A0000006Vm9r → 001A0000006Vm9rIAC.
        assert_eq!(
            canonical("001A0000006Vm9r").as_deref(),
            Some("001A0000006Vm9rIAC")
        );
    }

    #[test]
    fn malformed_ids_are_refused() {
        assert_eq!(canonical("abc"), None);
        assert_eq!(canonical("001A0000006Vm9rIAB"), None);
        assert_eq!(canonical("001A0000006Vm9-IAC"), None);
    }
}
