//! [`Secret`]: a string that never shows itself in `Debug` or `Display`.
//!
//! Owns redaction only. Where a secret comes from (files, systemd credentials,
//! environment) is decided in `validate.rs`; what it is used for is the caller's business.

use std::fmt;

/// A credential held in memory. `Debug` and `Display` print `***`, so a secret inside
/// [`Settings`](super::Settings) or an error can be logged without leaking; the only way
/// to the value is [`Secret::expose`], which makes every use greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("hunter2".to_owned());
        for rendered in [
            format!("{secret}"),
            format!("{secret:?}"),
            format!("{secret:#?}"),
            format!("{:?}", Some(secret.clone())),
            format!("{:>20}", secret),
        ] {
            assert!(!rendered.contains("hunter2"), "leaked in {rendered:?}");
            assert!(rendered.contains("***"), "{rendered:?}");
        }
        assert_eq!(secret.expose(), "hunter2");
    }
}
